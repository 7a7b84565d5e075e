// The daemon double at the real daemon's edges (daemon-protocol.md section 10), over real
// sockets with the generated stub: what a bot's test against the double must catch because
// production would.
#include "double_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <future>
#include <thread>

namespace test_double_edges {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace double_test;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

namespace {

constexpr std::size_t kDaemonLimit = 4'194'304;

std::string too_large_text(std::size_t size) {
  return "grpc: received message larger than max (" + std::to_string(size) + " vs. 4194304)";
}

// A Subscribe call read on a thread of its own. The daemon sends headers with the first
// event only, so `sync()` injects node chats until one arrives: from then on the
// subscription is known to be in place.
class Subscription {
 public:
  explicit Subscription(api::EnsembleService::Stub& stub) {
    reader_ = stub.Subscribe(&ctx_, api::SubscribeRequest{});
    thread_ = std::thread([this] {
      api::DaemonEvent ev;
      while (reader_->Read(&ev)) {
        std::lock_guard lock(mu_);
        events_.push_back(ev);
        cv_.notify_all();
      }
      status_ = reader_->Finish();
    });
  }
  ~Subscription() {
    ctx_.TryCancel();
    thread_.join();
  }

  void sync(DaemonDouble& daemon) {
    const std::string peer = synthetic_address();
    for (int i = 0; i < 100 && count("chat_message") == 0; ++i) {
      daemon.inject_node_chat(peer, "sync");
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, 50ms, [&] { return !events_.empty(); });
    }
    REQUIRE(count("chat_message") > 0);
  }

  std::size_t count(const std::string& type) {
    std::lock_guard lock(mu_);
    return static_cast<std::size_t>(
        std::count_if(events_.begin(), events_.end(), [&](const auto& e) { return e.type() == type; }));
  }
  bool wait_for(const std::string& type, std::size_t n, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (count(type) < n) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, 20ms);
    }
    return true;
  }
  std::vector<api::DaemonEvent> of_type(const std::string& type) {
    std::lock_guard lock(mu_);
    std::vector<api::DaemonEvent> out;
    for (const auto& e : events_) {
      if (e.type() == type) out.push_back(e);
    }
    return out;
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<api::DaemonEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<api::DaemonEvent> events_;
  grpc::Status status_;
};

}  // namespace

TEST_CASE("edges: a stream message over 4 MiB ends the stream as grpc-go does and unregisters") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s);
  REQUIRE(!stream.register_as(manifest("big")).empty());
  const auto action = send_message(synthetic_address(), std::string(5 << 20, 'x'));
  REQUIRE(action.ByteSizeLong() > kDaemonLimit);
  stream.write(action);
  const grpc::Status st = stream.end();
  CHECK(st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(st.error_message() == too_large_text(action.ByteSizeLong()));
  CHECK(daemon.wait_unregistered("big", 2s));
  CHECK(daemon.action_count("big") == 0);

  SECTION("a message of exactly the limit passes") {
    Stream fits(*s);
    REQUIRE(!fits.register_as(manifest("fits")).empty());
    auto exact = send_message(synthetic_address(), std::string(kDaemonLimit - 100, 'y'));
    // Length prefixes grow with the text, so settle the size in a few steps.
    for (int i = 0; i < 4 && exact.ByteSizeLong() != kDaemonLimit; ++i) {
      auto* text = exact.mutable_send_message()->mutable_text();
      text->resize(text->size() + kDaemonLimit - exact.ByteSizeLong(), 'y');
    }
    REQUIRE(exact.ByteSizeLong() == kDaemonLimit);
    fits.write(exact);
    CHECK(daemon.wait_for_actions("fits", 1, 5s));
  }
}

TEST_CASE("edges: invalid UTF-8 in a stream action ends the stream INTERNAL and unregisters") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s);
  REQUIRE(!stream.register_as(manifest("utf")).empty());
  // C++ protobuf serializes the bad string anyway; the daemon is the first to notice.
  stream.write(send_message(synthetic_address(), "caf\xe9"));
  const grpc::Status st = stream.end();
  CHECK(st.error_code() == grpc::StatusCode::INTERNAL);
  CHECK(st.error_message() ==
        "grpc: failed to unmarshal the received message: string field contains invalid UTF-8");
  CHECK(daemon.wait_unregistered("utf", 2s));
}

TEST_CASE("edges: a unary request over 4 MiB fails RESOURCE_EXHAUSTED with grpc-go's text") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  api::SendMessageRequest request;
  request.set_address(synthetic_address());
  request.set_text(std::string(5 << 20, 'x'));
  api::SendMessageResponse response;
  grpc::ClientContext ctx;
  const grpc::Status st = s->SendMessage(&ctx, request, &response);
  CHECK(st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(st.error_message() == too_large_text(request.ByteSizeLong()));
  CHECK(daemon.peer_inbox_count(request.address()) == 0);
}

TEST_CASE("edges: Subscribe sends its headers with the first event, not before") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  grpc::ClientContext ctx;
  auto reader = s->Subscribe(&ctx, api::SubscribeRequest{});
  auto headers = std::async(std::launch::async, [&] { reader->WaitForInitialMetadata(); });
  CHECK(headers.wait_for(500ms) == std::future_status::timeout);
  const std::string peer = synthetic_address();
  // The first event may be published before the call is in place; keep offering one.
  for (int i = 0; i < 100 && headers.wait_for(50ms) != std::future_status::ready; ++i) {
    daemon.inject_node_chat(peer, "first");
  }
  CHECK(headers.wait_for(0ms) == std::future_status::ready);
  ctx.TryCancel();
  api::DaemonEvent ev;
  while (reader->Read(&ev)) {
  }
  reader->Finish();
}

TEST_CASE("edges: SendFile success is one message, complete, with no name, sizes or percent") {
  TempDir dir;
  const std::string path = dir.str("payload.bin");
  std::ofstream(path, std::ios::binary) << std::string(300'000, 'f');
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  grpc::ClientContext ctx;
  api::SendFileRequest request;
  request.set_address(synthetic_address());
  request.set_file_path(path);
  auto reader = s->SendFile(&ctx, request);
  std::vector<api::TransferProgress> got;
  api::TransferProgress p;
  while (reader->Read(&p)) got.push_back(p);
  REQUIRE(reader->Finish().ok());
  REQUIRE(got.size() == 1);
  CHECK(got[0].complete());
  CHECK(!got[0].transfer_id().empty());
  CHECK(got[0].filename().empty());
  CHECK(got[0].total_bytes() == 0);
  CHECK(got[0].sent_bytes() == 0);
  CHECK(got[0].percent() == 0.0f);
}

TEST_CASE("edges: the start-up window: no socket, then bootstrapping, then ready") {
  TempDir dir;
  DaemonDoubleOptions options;
  options.unix_socket = dir.str("api.sock");
  options.socket_delay = 600ms;
  options.bootstrap_time = 1500ms;
  DaemonDouble daemon(options);
  auto s = stub(plain_channel("unix:" + options.unix_socket));

  // No socket yet: UNAVAILABLE, as before the daemon has created it.
  {
    grpc::ClientContext ctx;
    api::GetStatusResponse status;
    CHECK(s->GetStatus(&ctx, {}, &status).error_code() == grpc::StatusCode::UNAVAILABLE);
  }
  // Then Tor bootstraps: the API answers, the registry does not.
  api::GetStatusResponse status;
  for (int i = 0; i < 100; ++i) {
    grpc::ClientContext ctx;
    if (s->GetStatus(&ctx, {}, &status).ok()) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(status.tor_state() == "bootstrapping");
  Subscription events(*s);
  {
    Stream early(*s);
    early.write(manifest("early"));
    const grpc::Status st = early.end();
    CHECK(st.error_code() == grpc::StatusCode::UNIMPLEMENTED);
    CHECK(st.error_message() == "service registry not configured on this daemon");
  }
  REQUIRE(events.wait_for("tor_ready", 1, 5s));
  const auto ready = events.of_type("tor_ready");
  CHECK(nlohmann::json::parse(ready[0].payload()) == daemon.node_onion());
  for (const auto& ev : events.of_type("tor_bootstrap")) {
    const auto j = nlohmann::json::parse(ev.payload());
    CHECK(j.at("percent").is_number_integer());
    CHECK(j.at("summary").is_string());
  }
  CHECK(events.count("tor_bootstrap") >= 1);
  {
    grpc::ClientContext ctx;
    REQUIRE(s->GetStatus(&ctx, {}, &status).ok());
    CHECK(status.tor_state() == "ready");
  }
  Stream stream(*s);
  CHECK(!stream.register_as(manifest("late")).empty());
}

TEST_CASE("edges: registration_delay holds `registered` back, as publishing the onion does") {
  DaemonDoubleOptions options;
  options.registration_delay = 700ms;
  DaemonDouble daemon(options);
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s);
  const auto begun = std::chrono::steady_clock::now();
  REQUIRE(!stream.register_as(manifest("slow")).empty());
  CHECK(std::chrono::steady_clock::now() - begun >= 700ms);
}

TEST_CASE("edges: three early keepalive pings get GOAWAY too_many_pings; open streams end UNAVAILABLE") {
  DaemonDouble daemon;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 200);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  auto channel = grpc::CreateCustomChannel(daemon.tcp_target(), grpc::InsecureChannelCredentials(), args);
  auto s = stub(channel);
  Stream stream(*s, 15s);
  REQUIRE(!stream.register_as(manifest("pinger")).empty());
  const grpc::Status st = stream.end();  // nothing is sent to it: only pings flow
  CHECK(st.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(daemon.wait_unregistered("pinger", 2s));
}

TEST_CASE("edges: a successful dial passes through the daemon's connection states in order") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Subscription events(*s);
  events.sync(daemon);
  const std::string peer = synthetic_address();
  grpc::ClientContext ctx;
  api::ConnectRequest request;
  request.set_address(peer);
  api::ConnectResponse response;
  REQUIRE(s->Connect(&ctx, request, &response).ok());
  CHECK(response.accepted());
  REQUIRE(events.wait_for("connection_state", 5, 5s));
  std::vector<int> states;
  for (const auto& ev : events.of_type("connection_state")) {
    const auto j = nlohmann::json::parse(ev.payload());
    if (j.at("PeerAddr") == peer) states.push_back(j.at("State").get<int>());
  }
  // 0 discovering, 1 signaling, 2 exchanging-ips, 3 nat-traversal, 4 connected.
  CHECK(states == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("edges: the node API's words and fields are the daemon's") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  const auto call = [&](auto method, const auto& request, auto& response) {
    grpc::ClientContext ctx;
    return ((*s).*method)(&ctx, request, &response);
  };

  SECTION("GetStatus leaves uptime_ms unset") {
    api::GetStatusResponse status;
    REQUIRE(call(&api::EnsembleService::Stub::GetStatus, api::GetStatusRequest{}, status).ok());
    CHECK(status.uptime_ms() == 0);
    CHECK(status.tor_state() == "ready");
  }
  SECTION("AddContact stores any address; ListContacts returns address and alias only") {
    api::AddContactRequest add;
    add.set_address("not-an-ensemble-address");
    add.set_alias("odd");
    add.set_public_key(std::string(32, '\1'));
    api::AddContactResponse added;
    REQUIRE(call(&api::EnsembleService::Stub::AddContact, add, added).ok());
    api::ListContactsResponse list;
    REQUIRE(call(&api::EnsembleService::Stub::ListContacts, api::ListContactsRequest{}, list).ok());
    REQUIRE(list.contacts_size() == 1);
    CHECK(list.contacts(0).address() == "not-an-ensemble-address");
    CHECK(list.contacts(0).alias() == "odd");
    CHECK(list.contacts(0).public_key().empty());
    CHECK(list.contacts(0).onion_address().empty());
    CHECK(list.contacts(0).added_at() == 0);
  }
  SECTION("AcceptFile / RejectFile of an unknown transfer; AddNode failure") {
    api::AcceptFileRequest accept;
    accept.set_transfer_id("abc");
    api::AcceptFileResponse accepted;
    grpc::Status st = call(&api::EnsembleService::Stub::AcceptFile, accept, accepted);
    CHECK(st.error_code() == grpc::StatusCode::INTERNAL);
    CHECK(st.error_message() == "accepting file: no pending offer with ID abc");
    api::RejectFileRequest reject;
    reject.set_transfer_id("abc");
    api::RejectFileResponse rejected;
    st = call(&api::EnsembleService::Stub::RejectFile, reject, rejected);
    CHECK(st.error_code() == grpc::StatusCode::INTERNAL);
    CHECK(st.error_message() == "rejecting file: no pending offer with ID abc");
    api::AddNodeRequest node;
    node.set_onion_address("nowhere");
    api::AddNodeResponse found;
    st = call(&api::EnsembleService::Stub::AddNode, node, found);
    CHECK(st.error_code() == grpc::StatusCode::INTERNAL);
    CHECK(st.error_message().rfind("adding node: ", 0) == 0);
  }
  SECTION("RejectConnection's dialer hears \"rejected by user\"") {
    const std::string peer = synthetic_address();
    daemon.inject_node_connection_request(peer);
    api::RejectConnectionRequest reject;
    reject.set_address(peer);
    api::RejectConnectionResponse rejected;
    for (int i = 0; i < 50; ++i) {
      if (call(&api::EnsembleService::Stub::RejectConnection, reject, rejected).ok()) break;
      std::this_thread::sleep_for(20ms);
    }
    CHECK(daemon.wait_decision(peer, 2s) == "rejected: rejected by user");
  }
}

TEST_CASE("edges: an invalid service name is refused in the daemon's words") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s);
  stream.write(manifest("Bad Name"));
  std::vector<api::ServiceServerMessage> got;
  const grpc::Status st = stream.end(&got);
  const std::string text =
      "registering service: loading identity for \"Bad Name\": identity: invalid service name "
      "\"Bad Name\" (lowercase alphanumeric, '-' and '_' only)";
  CHECK(st.error_code() == grpc::StatusCode::INTERNAL);
  CHECK(st.error_message() == text);
  REQUIRE(got.size() == 1);
  CHECK(got[0].error().message() == text);
}

TEST_CASE("edges: a pending connection request has no time limit unless the test sets one") {
  CHECK(DaemonDoubleOptions{}.request_timeout == 0ms);
  DaemonDoubleOptions options;
  options.request_timeout = 300ms;
  DaemonDouble daemon(options);
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s);
  REQUIRE(!stream.register_as(manifest("slowpoke")).empty());
  const std::string id = daemon.inject_connection_request("slowpoke", synthetic_address());
  REQUIRE(!id.empty());
  CHECK(daemon.wait_decision(id, 3s) == "rejected: connection request timed out");
}

}  // namespace test_double_edges
