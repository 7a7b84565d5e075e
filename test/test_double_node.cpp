// The daemon double's node API, its robustness, and traffic between doubles that share a
// rendezvous directory: in one process, and as two ensemble-loopbackd processes.
#include "double_support.hpp"
#include "support/loopbackd_process.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test_double_node {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace double_test;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

namespace {

// A Subscribe call that is live on the server before the constructor returns. The daemon
// sends headers with the first event only, so marker events are published until they come.
class Events {
 public:
  Events(api::EnsembleService::Stub& s, DaemonDouble& daemon) {
    ctx_.set_deadline(std::chrono::system_clock::now() + 30s);
    reader_ = s.Subscribe(&ctx_, {});
    auto live = std::async(std::launch::async, [this] { reader_->WaitForInitialMetadata(); });
    while (live.wait_for(20ms) != std::future_status::ready) {
      daemon.publish_node_event("test.subscribed", "{}");
    }
  }
  ~Events() {
    if (finished_) return;
    ctx_.TryCancel();
    api::DaemonEvent ev;
    while (reader_->Read(&ev)) {
    }
    reader_->Finish();
  }
  // The next event of `type` (others are skipped), as parsed JSON.
  nlohmann::json next(const std::string& type) {
    api::DaemonEvent ev;
    while (reader_->Read(&ev)) {
      if (ev.type() == type) return nlohmann::json::parse(ev.payload());
    }
    FAIL("subscription ended while waiting for " << type);
    return {};
  }
  grpc::Status cancel_and_finish() {
    ctx_.TryCancel();
    api::DaemonEvent ev;
    while (reader_->Read(&ev)) {
    }
    finished_ = true;
    return reader_->Finish();
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<api::DaemonEvent>> reader_;
  bool finished_ = false;
};

template <typename Request, typename Reply, typename Method>
grpc::Status call(api::EnsembleService::Stub& s, Method method, const Request& req, Reply* reply) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  return (s.*method)(&ctx, req, reply);
}

// Connect without assertions: for worker threads, since Catch2 2.x assertions are not
// thread-safe (they run on the main thread only, once the worker is joined).
grpc::Status dial(api::EnsembleService::Stub& s, const std::string& address,
                  api::ConnectResponse* reply) {
  api::ConnectRequest req;
  req.set_address(address);
  return call(s, &api::EnsembleService::Stub::Connect, req, reply);
}

api::ConnectResponse connect(api::EnsembleService::Stub& s, const std::string& address) {
  api::ConnectResponse reply;
  REQUIRE(dial(s, address, &reply).ok());
  return reply;
}

grpc::Status send_text(api::EnsembleService::Stub& s, const std::string& to,
                       const std::string& text, std::string* id = nullptr) {
  api::SendMessageRequest req;
  req.set_address(to);
  req.set_text(text);
  api::SendMessageResponse reply;
  auto st = call(s, &api::EnsembleService::Stub::SendMessage, req, &reply);
  if (id) *id = reply.message_id();
  return st;
}

}  // namespace

TEST_CASE("node: identity, status, debug info") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  api::GetStatusResponse status;
  REQUIRE(call(*s, &api::EnsembleService::Stub::GetStatus, api::GetStatusRequest{}, &status).ok());
  CHECK(status.tor_state() == "ready");
  CHECK(status.onion_addr() == daemon.node_onion());
  CHECK(status.uptime_ms() >= 0);

  const std::string peer = synthetic_address();
  auto dial = connect(*s, peer);
  CHECK(dial.accepted());
  CHECK(dial.message() == "connected");
  CHECK_FALSE(connect(*s, "garbage").accepted());
  CHECK(connect(*s, daemon.node_address()).message() == "cannot connect to self");

  api::GetDebugInfoResponse debug;
  REQUIRE(call(*s, &api::EnsembleService::Stub::GetDebugInfo, api::GetDebugInfoRequest{}, &debug).ok());
  CHECK(debug.onion_addr() == daemon.node_onion());
  REQUIRE(debug.connections_size() == 1);
  CHECK(debug.connections(0).address() == peer);
  CHECK(debug.connections(0).state() == "connected");
  REQUIRE(call(*s, &api::EnsembleService::Stub::GetStatus, api::GetStatusRequest{}, &status).ok());
  CHECK(status.peer_count() == 1);

  api::AddNodeRequest add;
  add.set_onion_address("nope.onion");
  api::AddNodeResponse added;
  CHECK(call(*s, &api::EnsembleService::Stub::AddNode, add, &added).error_code() ==
        grpc::StatusCode::INTERNAL);  // "adding node: <cause>" (section 10)
  add.set_onion_address(daemon.node_onion());
  CHECK(call(*s, &api::EnsembleService::Stub::AddNode, add, &added).ok());
}

TEST_CASE("node: contacts, kept in the data dir") {
  TempDir data;
  const std::string a = synthetic_address();
  const std::string b = synthetic_address();
  {
    DaemonDouble daemon({.data_dir = data.path});
    auto s = stub(plain_channel(daemon.tcp_target()));
    api::AddContactRequest add;
    add.set_address(a);
    add.set_alias("first");
    add.set_public_key(std::string(32, '\1'));
    api::AddContactResponse ok;
    REQUIRE(call(*s, &api::EnsembleService::Stub::AddContact, add, &ok).ok());
    add.set_alias("renamed");  // re-adding overwrites alias and key
    REQUIRE(call(*s, &api::EnsembleService::Stub::AddContact, add, &ok).ok());
    add.set_address(b);
    REQUIRE(call(*s, &api::EnsembleService::Stub::AddContact, add, &ok).ok());
    add.set_address("not-an-address");  // stored as given (section 10)
    CHECK(call(*s, &api::EnsembleService::Stub::AddContact, add, &ok).ok());
    api::RemoveContactRequest rm;
    rm.set_address(b);
    api::RemoveContactResponse removed;
    REQUIRE(call(*s, &api::EnsembleService::Stub::RemoveContact, rm, &removed).ok());
    rm.set_address("not-an-address");
    REQUIRE(call(*s, &api::EnsembleService::Stub::RemoveContact, rm, &removed).ok());
  }
  DaemonDouble restarted({.data_dir = data.path});
  auto s = stub(plain_channel(restarted.tcp_target()));
  api::ListContactsResponse list;
  REQUIRE(call(*s, &api::EnsembleService::Stub::ListContacts, api::ListContactsRequest{}, &list).ok());
  REQUIRE(list.contacts_size() == 1);
  CHECK(list.contacts(0).address() == a);
  CHECK(list.contacts(0).alias() == "renamed");
  CHECK(list.contacts(0).public_key().empty());  // address and alias only (section 10)
  CHECK(list.contacts(0).added_at() == 0);

  DaemonDouble no_store({.contacts_enabled = false});
  auto s2 = stub(plain_channel(no_store.tcp_target()));
  api::AddContactRequest add;
  add.set_address(a);
  api::AddContactResponse ok;
  auto st = call(*s2, &api::EnsembleService::Stub::AddContact, add, &ok);
  CHECK(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(st.error_message() == "contacts not initialized");
}

TEST_CASE("node: events, the echo of own sends, operator decisions") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Events events(*s, daemon);
  const std::string peer = synthetic_address();

  std::string id;
  auto refused = send_text(*s, peer, "before any dial");
  CHECK(refused.error_code() == grpc::StatusCode::INTERNAL);
  CHECK(refused.error_message() == "sending message: peer " + peer + " not connected");
  REQUIRE(connect(*s, peer).accepted());
  REQUIRE(send_text(*s, peer, "hello peer", &id).ok());
  CHECK(id.size() == 32);
  auto out = events.next("chat_message");
  CHECK(out["ID"] == id);
  CHECK(out["From"] == daemon.node_address());
  CHECK(out["To"] == peer);
  CHECK(out["Text"] == "hello peer");
  CHECK(out["Direction"] == "outgoing");
  CHECK(out["SentAt"].get<std::string>().back() == 'Z');
  REQUIRE(daemon.wait_peer_inbox(peer, 1, 2s));
  CHECK(daemon.peer_inbox(peer)[0].from_addr == daemon.node_address());

  REQUIRE(daemon.inject_node_chat(peer, "hello node"));
  auto in = events.next("chat_message");
  CHECK(in["From"] == peer);
  CHECK(in["To"] == daemon.node_address());
  CHECK(in["Text"] == "hello node");
  CHECK(in["Direction"] == "incoming");

  auto st = send_text(*s, "bogus", "x");
  CHECK(st.error_code() == grpc::StatusCode::INTERNAL);
  CHECK(st.error_message() == "sending message: invalid address \"bogus\"");

  api::AcceptConnectionRequest acc;
  acc.set_address(peer);
  api::AcceptConnectionResponse acc_reply;
  st = call(*s, &api::EnsembleService::Stub::AcceptConnection, acc, &acc_reply);
  CHECK(st.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(st.error_message() == "no pending request from " + peer);
  api::RejectConnectionRequest rej;
  rej.set_address(peer);
  api::RejectConnectionResponse rej_reply;
  CHECK(call(*s, &api::EnsembleService::Stub::RejectConnection, rej, &rej_reply).error_code() ==
        grpc::StatusCode::NOT_FOUND);

  daemon.inject_node_connection_request(peer);
  CHECK(events.next("connection_request") == peer);  // a bare JSON string
  REQUIRE(call(*s, &api::EnsembleService::Stub::AcceptConnection, acc, &acc_reply).ok());
  CHECK(daemon.wait_decision(peer, 2s) == "accepted");
  auto state = events.next("connection_state");
  CHECK(state["PeerAddr"] == peer);
  CHECK(state["State"] == 4);  // connected (section 10 numbering)

  const std::string other = synthetic_address();
  daemon.inject_node_connection_request(other);
  CHECK(events.next("connection_request") == other);
  rej.set_address(other);
  REQUIRE(call(*s, &api::EnsembleService::Stub::RejectConnection, rej, &rej_reply).ok());
  CHECK(daemon.wait_decision(other, 2s)->rfind("rejected", 0) == 0);

  CHECK(events.cancel_and_finish().error_code() == grpc::StatusCode::CANCELLED);
}

TEST_CASE("node: a full subscriber queue drops the newest") {
  DaemonDouble daemon({.node_event_queue_depth = 16});
  auto s = stub(plain_channel(daemon.tcp_target()));
  Events events(*s, daemon);  // reads nothing until every event is in
  const std::string peer = synthetic_address();
  const std::string filler(16 * 1024, 'x');
  constexpr int kTotal = 600;
  for (int i = 1; i <= kTotal; ++i) {
    REQUIRE(daemon.inject_node_chat(peer, std::to_string(i) + ":" + filler));
  }
  const auto dropped = daemon.dropped_node_events();
  CHECK(dropped > 0);
  std::vector<int> seen;
  for (int i = 1; i <= kTotal - static_cast<int>(dropped); ++i) {
    const auto text = events.next("chat_message")["Text"].get<std::string>();
    seen.push_back(std::stoi(text.substr(0, text.find(':'))));
  }
  CHECK(std::is_sorted(seen.begin(), seen.end()));
  // Unlike a service stream, the oldest all got through (which of the later ones survive
  // depends on when the transport took writes, so only the head is checked).
  for (int i = 0; i < 16; ++i) CHECK(seen[static_cast<std::size_t>(i)] == i + 1);
}

TEST_CASE("robustness: garbage on the sockets, silent clients, 1000 services at once") {
  TempDir dir;
  DaemonDouble daemon({.unix_socket = dir.str("api.sock"), .tcp_address = "127.0.0.1:0"});

  std::mt19937 rng(42);
  std::string junk(64 * 1024, '\0');
  for (auto& c : junk) c = static_cast<char>(rng());
  std::vector<int> silent;
  for (int round = 0; round < 2; ++round) {
    for (bool tcp : {false, true}) {
      int fd = -1;
      if (tcp) {
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<std::uint16_t>(daemon.tcp_port()));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
      } else {
        fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::strcpy(sa.sun_path, daemon.unix_socket_path().c_str());
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
      }
      if (round == 0) {
        const std::string preface = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        (void)!::send(fd, preface.data(), preface.size(), MSG_NOSIGNAL);
        (void)!::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        ::close(fd);
      } else {
        silent.push_back(fd);  // connects and never says anything
      }
    }
  }

  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  auto s = stub(plain_channel(daemon.unix_target()));
  std::vector<std::unique_ptr<Stream>> streams(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int n = t * kPerThread + i;
        streams[n] = std::make_unique<Stream>(*s, 60s);
        streams[n]->write(manifest("svc-" + std::to_string(n)));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> addresses;
  for (auto& st : streams) {
    auto first = st->read();
    REQUIRE(first);
    REQUIRE(first->has_registered());
    addresses.insert(first->registered().address());
  }
  CHECK(addresses.size() == streams.size());
  CHECK(!daemon.service_address("svc-999").empty());
  streams.clear();  // all cancelled at once
  CHECK(daemon.wait_unregistered("svc-0", 5s));
  CHECK(daemon.wait_unregistered("svc-999", 5s));

  // Still answering on both sockets.
  api::GetIdentityResponse id;
  grpc::ClientContext ctx;
  CHECK(stub(plain_channel(daemon.tcp_target()))->GetIdentity(&ctx, {}, &id).ok());
  for (int fd : silent) ::close(fd);
}

TEST_CASE("robustness: a client that never reads does not wedge shutdown") {
  auto daemon = std::make_unique<DaemonDouble>();
  auto s = stub(plain_channel(daemon->tcp_target()));
  Stream stream(*s, 60s);
  REQUIRE(!stream.register_as(manifest("deaf")).empty());
  const std::string big(64 * 1024, 'z');
  for (int i = 0; i < 600; ++i) daemon->inject_chat("deaf", synthetic_address(), big);
  CHECK(daemon->dropped_events("deaf") > 0);
  const auto t0 = std::chrono::steady_clock::now();
  daemon.reset();
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

// ---- two doubles sharing a rendezvous directory ----------------------------------------

TEST_CASE("rendezvous: services and operators on two doubles reach each other") {
  TempDir rdv;
  DaemonDouble a({.loopback_dir = rdv.path});
  DaemonDouble b({.loopback_dir = rdv.path});
  auto sa = stub(plain_channel(a.tcp_target()));
  auto sb = stub(plain_channel(b.tcp_target()));

  Stream alice(*sa), bob(*sb);
  const std::string alice_addr = alice.register_as(manifest("alice"));
  const std::string bob_addr = bob.register_as(manifest("bob"));
  REQUIRE(!alice_addr.empty());
  REQUIRE(!bob_addr.empty());

  // Chat needs a connection: alice dials bob as herself (ConnectAs), bob accepts.
  REQUIRE(alice.write(send_message(bob_addr, "too soon")));
  auto ev = alice.read();
  REQUIRE(ev);
  CHECK(ev->error().message() == "send_message: peer " + bob_addr + " not connected");
  api::ConnectResponse bob_dial;
  std::jthread alice_dials([&] {
    api::ConnectAsRequest req;
    req.set_service("alice");
    req.set_address(bob_addr);
    call(*sa, &api::EnsembleService::Stub::ConnectAs, req, &bob_dial);
  });
  ev = bob.read();
  REQUIRE(ev);
  const auto request = decode<api::ServiceConnectionRequestEvent>(*ev);
  CHECK(request.from_addr() == alice_addr);
  api::ServiceClientMessage accept;
  accept.mutable_accept()->set_request_id(request.request_id());
  REQUIRE(bob.write(accept));
  alice_dials.join();
  CHECK(bob_dial.accepted());

  REQUIRE(alice.write(send_message(bob_addr, "hi bob")));
  ev = bob.read();
  REQUIRE(ev);
  auto chat = decode<api::ServiceChatMessageEvent>(*ev);
  CHECK(chat.from_addr() == alice_addr);
  CHECK(chat.text() == "hi bob");
  REQUIRE(bob.write(send_message(alice_addr, "hi alice")));
  ev = alice.read();
  REQUIRE(ev);
  CHECK(decode<api::ServiceChatMessageEvent>(*ev).from_addr() == bob_addr);
  CHECK(a.peer_inbox_count(bob_addr) == 0);  // a real peer, not a synthetic one

  // Operator to operator, with the receiving operator's decision, then a chat.
  Events b_events(*sb, b);
  api::ConnectResponse dialed;
  grpc::Status dial_status;
  std::jthread dialer([&] { dial_status = dial(*sa, b.node_address(), &dialed); });
  CHECK(b_events.next("connection_request") == a.node_address());
  api::AcceptConnectionRequest acc;
  acc.set_address(a.node_address());
  api::AcceptConnectionResponse acc_reply;
  REQUIRE(call(*sb, &api::EnsembleService::Stub::AcceptConnection, acc, &acc_reply).ok());
  dialer.join();
  REQUIRE(dial_status.ok());
  CHECK(dialed.accepted());
  std::string id;
  REQUIRE(send_text(*sa, b.node_address(), "hello b", &id).ok());
  auto in = b_events.next("chat_message");
  CHECK(in["From"] == a.node_address());
  CHECK(in["Direction"] == "incoming");
  CHECK(in["ID"] == id);

  // The gate sees the real sender: alice (a service) is not on carol's allowlist, the
  // operator of a is.
  auto m = manifest("carol", api::ACL_ALLOWLIST);
  m.mutable_manifest()->add_allowlist(a.node_address());
  Stream carol(*sb);
  const std::string carol_addr = carol.register_as(m);
  {
    api::ConnectAsRequest req;
    req.set_service("alice");
    req.set_address(carol_addr);
    api::ConnectResponse refused_dial;
    REQUIRE(call(*sa, &api::EnsembleService::Stub::ConnectAs, req, &refused_dial).ok());
    CHECK_FALSE(refused_dial.accepted());
    CHECK(refused_dial.message() == "not on allowlist");
  }
  api::ConnectResponse carol_dial;
  grpc::Status carol_dial_status;
  std::jthread operator_dials([&] { carol_dial_status = dial(*sa, carol_addr, &carol_dial); });
  ev = carol.read();
  REQUIRE(ev);
  api::ServiceClientMessage carol_accepts;
  carol_accepts.mutable_accept()->set_request_id(
      decode<api::ServiceConnectionRequestEvent>(*ev).request_id());
  REQUIRE(carol.write(carol_accepts));
  operator_dials.join();
  REQUIRE(carol_dial_status.ok());
  CHECK(carol_dial.accepted());
  REQUIRE(send_text(*sa, carol_addr, "operator is listed").ok());
  ev = carol.read();
  REQUIRE(ev);
  CHECK(decode<api::ServiceChatMessageEvent>(*ev).from_addr() == a.node_address());

  // Discovery.
  api::AddNodeRequest add;
  add.set_onion_address(b.node_onion());
  api::AddNodeResponse found;
  REQUIRE(call(*sa, &api::EnsembleService::Stub::AddNode, add, &found).ok());
  CHECK(found.peers_found() == 1);
  api::GetDebugInfoResponse debug;
  REQUIRE(call(*sa, &api::EnsembleService::Stub::GetDebugInfo, api::GetDebugInfoRequest{}, &debug).ok());
  REQUIRE(debug.rt_size() == 1);
  CHECK(debug.rt_peers(0).address() == b.node_address());
  CHECK(debug.rt_peers(0).onion_addr() == b.node_onion());

  // A service that leaves is offline to its peers, not a synthetic peer.
  bob.finish();
  REQUIRE(b.wait_unregistered("bob", 2s));
  REQUIRE(alice.write(send_message(bob_addr, "still there?")));
  ev = alice.read();
  REQUIRE(ev);
  CHECK(ev->error().message() == "send_message: peer " + bob_addr + " is not registered");
}

namespace {

std::vector<api::TransferProgress> send_file(api::EnsembleService::Stub& s, const std::string& to,
                                             const std::string& path, grpc::Status* status) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  api::SendFileRequest req;
  req.set_address(to);
  req.set_file_path(path);
  auto reader = s.SendFile(&ctx, req);
  std::vector<api::TransferProgress> out;
  api::TransferProgress p;
  while (reader->Read(&p)) out.push_back(p);
  *status = reader->Finish();
  return out;
}

}  // namespace

TEST_CASE("rendezvous: a file of several MiB between two doubles") {
  TempDir rdv, files;
  DaemonDouble a({.loopback_dir = rdv.path});
  DaemonDouble b({.loopback_dir = rdv.path});
  auto sa = stub(plain_channel(a.tcp_target()));
  auto sb = stub(plain_channel(b.tcp_target()));

  const std::string src = files.str("payload.bin");
  std::string content(5 * 1024 * 1024 + 123, '\0');
  std::mt19937 rng(7);
  for (auto& c : content) c = static_cast<char>(rng());
  std::ofstream(src, std::ios::binary).write(content.data(), static_cast<std::streamsize>(content.size()));

  Events b_events(*sb, b);
  grpc::Status status;
  std::vector<api::TransferProgress> progress;
  std::jthread sender([&] { progress = send_file(*sa, b.node_address(), src, &status); });
  auto offer = b_events.next("file_offer");
  CHECK(offer["Filename"] == "payload.bin");
  CHECK(offer["Size"] == content.size());
  CHECK(offer["From"] == a.node_address());
  api::AcceptFileRequest accept;
  accept.set_transfer_id(offer["TransferID"].get<std::string>());
  accept.set_save_path(files.str("received.bin"));
  api::AcceptFileResponse accepted;
  REQUIRE(call(*sb, &api::EnsembleService::Stub::AcceptFile, accept, &accepted).ok());
  sender.join();
  REQUIRE(status.ok());
  // Success is one message, as the daemon sends it (section 10).
  REQUIRE(progress.size() == 1);
  CHECK(progress.back().complete());
  CHECK(progress.back().transfer_id() == accept.transfer_id());
  std::ifstream got(files.str("received.bin"), std::ios::binary);
  const std::string received((std::istreambuf_iterator<char>(got)), std::istreambuf_iterator<char>());
  CHECK(received == content);

  // Rejected, missing, and to a synthetic peer.
  std::jthread rejected([&] { progress = send_file(*sa, b.node_address(), src, &status); });
  offer = b_events.next("file_offer");
  api::RejectFileRequest reject;
  reject.set_transfer_id(offer["TransferID"].get<std::string>());
  api::RejectFileResponse reject_reply;
  REQUIRE(call(*sb, &api::EnsembleService::Stub::RejectFile, reject, &reject_reply).ok());
  rejected.join();
  CHECK(status.error_code() == grpc::StatusCode::INTERNAL);
  CHECK(status.error_message() == "sending file: transfer rejected by peer");
  CHECK(call(*sb, &api::EnsembleService::Stub::RejectFile, reject, &reject_reply).error_code() ==
        grpc::StatusCode::INTERNAL);  // "rejecting file: no pending offer with ID ..."

  send_file(*sa, b.node_address(), files.str("missing.bin"), &status);
  CHECK(status.error_code() == grpc::StatusCode::INTERNAL);
  CHECK(status.error_message().rfind("sending file: open ", 0) == 0);

  const std::string peer = synthetic_address();
  progress = send_file(*sa, peer, src, &status);
  REQUIRE(status.ok());
  CHECK(progress.back().complete());
  REQUIRE(a.wait_peer_inbox(peer, 1, 2s));
  CHECK(a.peer_inbox(peer)[0].size == content.size());
}

// ---- ensemble-loopbackd processes -------------------------------------------------------

using Daemon = test_support::LoopbackdProcess;

// Chat needs a connection (section 10): `service` on `s` dials `to` as itself (ConnectAs);
// the receiving stream accepts the connection request.
bool dial_and_accept(api::EnsembleService::Stub& s, const std::string& service,
                     const std::string& to, Stream& receiver) {
  api::ConnectResponse dial;
  std::jthread dialer([&] {
    api::ConnectAsRequest req;
    req.set_service(service);
    req.set_address(to);
    call(s, &api::EnsembleService::Stub::ConnectAs, req, &dial);
  });
  auto ev = receiver.read();
  if (!ev || ev->event().type() != "connection_request") return false;
  api::ServiceClientMessage accept;
  accept.mutable_accept()->set_request_id(
      decode<api::ServiceConnectionRequestEvent>(*ev).request_id());
  if (!receiver.write(accept)) return false;
  dialer.join();
  return dial.accepted();
}

TEST_CASE("ensemble-loopbackd: two processes sharing a directory chat both ways") {
  if (std::getenv("ENSEMBLE_LOOPBACKD") == nullptr) {
    WARN("ENSEMBLE_LOOPBACKD not set (run through meson test); skipping");
    return;
  }
  TempDir rdv, work;
  Daemon one({"--loopback-dir", rdv.path.string(), "--api-socket", work.str("one.sock"),
              "--data-dir", work.str("one-data"), "--mint-token", "bot"});
  Daemon two({"--loopback-dir", rdv.path.string(), "--api-addr", "127.0.0.1:0"});
  CHECK(one.ready("api-socket") == work.str("one.sock"));
  CHECK(!two.ready("api-addr").empty());
  CHECK(one.ready("loopback-dir") == rdv.path.string());
  CHECK(ensemble::is_valid_address(one.ready("node")));
  CHECK(ensemble::is_onion_address(one.ready("onion")));
  REQUIRE(!one.token("bot").empty());

  auto s1 = stub(plain_channel("unix://" + one.ready("api-socket")));
  auto s2 = stub(plain_channel(two.ready("api-addr")));
  // Loopback mode is through the start-up window by the ready line (section 10). How long
  // the process took to get there is the machine's (a sanitizer's) business, not a check.
  for (auto* s : {s1.get(), s2.get()}) {
    api::GetStatusResponse status;
    REQUIRE(call(*s, &api::EnsembleService::Stub::GetStatus, api::GetStatusRequest{}, &status).ok());
    CHECK(status.tor_state() == "ready");
  }
  Stream bot(*s1, 60s, one.token("bot"));
  Stream peer(*s2);
  const std::string bot_addr = bot.register_as(manifest("bot"));
  const std::string peer_addr = peer.register_as(manifest("peer"));
  REQUIRE(!bot_addr.empty());
  REQUIRE(!peer_addr.empty());

  REQUIRE(dial_and_accept(*s2, "peer", bot_addr, bot));
  REQUIRE(peer.write(send_message(bot_addr, "ping")));
  auto ev = bot.read();
  REQUIRE(ev);
  auto chat = decode<api::ServiceChatMessageEvent>(*ev);
  CHECK(chat.from_addr() == peer_addr);
  CHECK(chat.text() == "ping");
  REQUIRE(bot.write(send_message(peer_addr, "pong")));
  ev = peer.read();
  REQUIRE(ev);
  chat = decode<api::ServiceChatMessageEvent>(*ev);
  CHECK(chat.from_addr() == bot_addr);
  CHECK(chat.text() == "pong");

  CHECK(one.stop(SIGINT) == 0);
  auto st = bot.end();
  CHECK(st.error_code() == grpc::StatusCode::UNAVAILABLE);
  // Its keys live on in its data dir: the bot is unreachable, not a synthetic peer, and
  // the send fails at once rather than hanging.
  REQUIRE(peer.write(send_message(bot_addr, "anyone?")));
  ev = peer.read();
  REQUIRE(ev);
  CHECK(ev->error().message().rfind("send_message: peer unreachable", 0) == 0);
  CHECK(two.stop(SIGTERM) == 0);
}

TEST_CASE("ensemble-loopbackd: --help, bad flags, one daemon per node identity") {
  const char* exe = std::getenv("ENSEMBLE_LOOPBACKD");
  if (exe == nullptr) {
    WARN("ENSEMBLE_LOOPBACKD not set (run through meson test); skipping");
    return;
  }
  auto run = [&](const std::string& args, std::string* out) {
    FILE* p = ::popen((std::string(exe) + " " + args + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
    const int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  std::string help;
  CHECK(run("--help", &help) == 0);
  CHECK(help.find("ready node=ADDR onion=ONION") != std::string::npos);
  std::string bad;
  CHECK(run("--no-such-flag", &bad) == 2);
  CHECK(bad.find("unknown option --no-such-flag") != std::string::npos);
  CHECK(run("--admin-key 1234", &bad) == 2);
  // The start-up window's flags (daemon-protocol.md section 10) are documented and checked.
  for (const char* flag : {"--socket-delay-ms", "--bootstrap-ms", "--registration-delay-ms"}) {
    CHECK(help.find(flag) != std::string::npos);
    std::string refused_value;
    CHECK(run(std::string(flag) + " soon", &refused_value) == 2);
    CHECK(refused_value.find(std::string(flag) + " needs a whole number of milliseconds") !=
          std::string::npos);
  }

  TempDir rdv, data;
  Daemon first({"--loopback-dir", rdv.path.string(), "--data-dir", data.path.string()});
  std::string refused;
  CHECK(run("--loopback-dir " + rdv.path.string() + " --data-dir " + data.path.string(),
            &refused) == 1);
  CHECK(refused.find("already live") != std::string::npos);
  CHECK(first.stop() == 0);
}

}  // namespace test_double_node
