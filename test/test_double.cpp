// The daemon double (ensemble::testing, compiled from src/testing/), over real sockets with the generated stub.
#include "double_support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

// test/double_second_tu.cpp
namespace double_test {
std::string second_tu_node_address(const ensemble::testing::DaemonDouble& daemon);
}

namespace test_double {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace double_test;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

TEST_CASE("double: register and chat both ways over Unix and TCP") {
  TempDir dir;
  DaemonDouble daemon({.unix_socket = dir.str("api.sock"), .tcp_address = "127.0.0.1:0"});
  REQUIRE(daemon.tcp_port() > 0);
  REQUIRE(daemon.unix_target() == "unix://" + dir.str("api.sock"));

  for (const auto& target : {daemon.unix_target(), daemon.tcp_target()}) {
    INFO(target);
    auto s = stub(plain_channel(target));
    Stream stream(*s);
    const std::string address = stream.register_as(manifest("echo"));
    REQUIRE(ensemble::is_valid_address(address));
    CHECK(ensemble::is_onion_address(stream.onion()));
    REQUIRE(daemon.wait_registered("echo", 2s));
    CHECK(daemon.service_address("echo") == address);

    const std::string peer = synthetic_address();
    REQUIRE(daemon.inject_chat("echo", peer, "hello"));
    auto ev = stream.read();
    REQUIRE(ev);
    REQUIRE(ev->has_event());
    CHECK(ev->event().type() == "chat_message");
    const auto chat = decode<api::ServiceChatMessageEvent>(*ev);
    CHECK(chat.from_addr() == peer);
    CHECK(chat.text() == "hello");
    CHECK(chat.ts() > 0);

    REQUIRE(stream.write(send_message(peer, "echo: hello")));
    REQUIRE(daemon.wait_peer_inbox(peer, 1, 2s));
    const auto inbox = daemon.peer_inbox(peer);
    REQUIRE(inbox.size() == 1);
    CHECK(inbox[0].kind == "chat");
    CHECK(inbox[0].from_addr == address);
    CHECK(inbox[0].text == "echo: hello");

    REQUIRE(stream.finish().ok());
    REQUIRE(daemon.wait_unregistered("echo", 2s));
  }
}

namespace {

std::array<std::uint8_t, 32> public_key_of(const ensemble::Seed& seed) {
  return ensemble::Signer(seed).public_key();
}

template <typename Call>
grpc::Status unary_status(Call&& call) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  return call(ctx);
}

grpc::Status get_identity(api::EnsembleService::Stub& s, api::GetIdentityResponse* out = nullptr) {
  api::GetIdentityResponse reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto st = s.GetIdentity(&ctx, {}, &reply);
  if (out) *out = reply;
  return st;
}

}  // namespace

TEST_CASE("double: section 4 auth on every call, Unix and TCP") {
  TempDir dir;
  const auto admin = ensemble::Seed::generate();
  const auto stranger = ensemble::Seed::generate();
  DaemonDouble daemon({.unix_socket = dir.str("api.sock"),
                       .tcp_address = "127.0.0.1:0",
                       .admin_key = public_key_of(admin)});

  for (const auto& target : {daemon.unix_target(), daemon.tcp_target()}) {
    INFO(target);
    auto good = stub(signed_channel(target, admin));
    api::GetIdentityResponse id;
    REQUIRE(get_identity(*good, &id).ok());
    CHECK(id.address() == daemon.node_address());

    auto unsigned_stub = stub(plain_channel(target));
    auto st = get_identity(*unsigned_stub);
    CHECK(st.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK((st.error_message() == "missing auth headers" || st.error_message() == "missing metadata"));

    auto wrong = stub(signed_channel(target, stranger));
    st = get_identity(*wrong);
    CHECK(st.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(st.error_message() == "unauthorized public key");

    // Streams are checked too: status only, no ServiceError.
    Stream refused(*unsigned_stub);
    refused.write(manifest("x"));
    std::vector<api::ServiceServerMessage> rest;
    st = refused.end(&rest);
    CHECK(st.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(rest.empty());

    Stream ok(*good);
    CHECK(!ok.register_as(manifest("signed")).empty());
    CHECK(ok.finish().ok());
    REQUIRE(daemon.wait_unregistered("signed", 2s));
  }
}

TEST_CASE("double: a skewed clock is refused with timestamp too old") {
  const auto admin = ensemble::Seed::generate();
  DaemonDouble daemon({.admin_key = public_key_of(admin),
                       .clock = [] { return std::chrono::system_clock::now() + 10min; }});
  auto s = stub(signed_channel(daemon.tcp_target(), admin));
  auto st = get_identity(*s);
  CHECK(st.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(st.error_message() == "timestamp too old");
}

TEST_CASE("double: supervised-service token") {
  const auto admin = ensemble::Seed::generate();
  DaemonDouble daemon({.admin_key = public_key_of(admin)});
  const std::string token = daemon.mint_token("bot");
  auto s = stub(plain_channel(daemon.tcp_target()));  // no signature at all

  SECTION("bound name registers without a signature") {
    Stream stream(*s, 20s, token);
    CHECK(ensemble::is_valid_address(stream.register_as(manifest("bot"))));
  }
  SECTION("another name is refused") {
    Stream stream(*s, 20s, token);
    stream.write(manifest("other"));
    std::vector<api::ServiceServerMessage> rest;
    auto st = stream.end(&rest);
    CHECK(st.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    REQUIRE(rest.size() == 1);
    CHECK(rest[0].error().message() == "registering service: " + st.error_message());
  }
  SECTION("an unknown token is refused") {
    Stream stream(*s, 20s, "not-a-token");
    stream.write(manifest("bot"));
    auto st = stream.end();
    CHECK(st.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(st.error_message() == "invalid service token");
  }
  SECTION("the token does not open other calls") {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-service-token", token);
    api::GetIdentityResponse reply;
    CHECK(s->GetIdentity(&ctx, {}, &reply).error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
}

namespace {

// The ServiceError and status a refused registration produces.
std::pair<std::string, grpc::Status> refused_with(api::EnsembleService::Stub& s,
                                                  const api::ServiceClientMessage& first) {
  Stream stream(s);
  stream.write(first);
  std::vector<api::ServiceServerMessage> rest;
  auto st = stream.end(&rest);
  std::string error = rest.empty() ? "<none>" : rest[0].error().message();
  if (rest.size() > 1) error += " <and more>";
  return {error, st};
}

}  // namespace

TEST_CASE("double: section 5a registration errors, word for word") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));

  api::ServiceClientMessage not_manifest = send_message(synthetic_address(), "hi");
  auto [e1, s1] = refused_with(*s, not_manifest);
  CHECK(e1 == "first message must be a ServiceManifest");
  CHECK(s1.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s1.error_message() == "first message must be a ServiceManifest");

  auto [e2, s2] = refused_with(*s, manifest(""));
  CHECK(e2 == "manifest.name is empty");
  CHECK(s2.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s2.error_message() == "manifest.name is empty");

  auto bad_acl = manifest("x");
  bad_acl.mutable_manifest()->set_acl(static_cast<api::ACL>(99));
  auto [e3, s3] = refused_with(*s, bad_acl);
  CHECK(e3 == "manifest.acl invalid: 99");
  CHECK(s3.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  auto bad_list = manifest("x", api::ACL_ALLOWLIST);
  bad_list.mutable_manifest()->add_allowlist("not-an-address");
  auto [e4, s4] = refused_with(*s, bad_list);
  CHECK(e4 == "manifest.allowlist[0] \"not-an-address\" is not a valid ensemble address");
  CHECK(s4.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  // The allowlist is only checked with ACL_ALLOWLIST.
  auto ignored_list = manifest("ignored", api::ACL_PUBLIC);
  ignored_list.mutable_manifest()->add_allowlist("not-an-address");
  {
    Stream stream(*s);
    CHECK(!stream.register_as(ignored_list).empty());
  }

  auto [e5, s5] = refused_with(*s, manifest("node"));
  CHECK(e5 == "registering service: services: service already registered");
  CHECK(s5.error_code() == grpc::StatusCode::ALREADY_EXISTS);
  CHECK(s5.error_message() == "services: service already registered");

  {
    Stream holder(*s);
    REQUIRE(!holder.register_as(manifest("taken")).empty());
    auto [e6, s6] = refused_with(*s, manifest("taken"));
    CHECK(e6 == "registering service: services: service already registered");
    CHECK(s6.error_code() == grpc::StatusCode::ALREADY_EXISTS);
    // The loser did not unregister the holder.
    CHECK(!daemon.service_address("taken").empty());
  }

  auto [e7, s7] = refused_with(*s, manifest("Bad Name"));
  CHECK(e7.rfind("registering service: ", 0) == 0);
  CHECK(s7.error_code() == grpc::StatusCode::INTERNAL);

  auto http = manifest("web");
  http.mutable_manifest()->set_transport(api::TRANSPORT_HTTP);
  auto [e8, s8] = refused_with(*s, http);
  CHECK(e8.rfind("registering service: ", 0) == 0);
  CHECK(s8.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_CASE("double: a daemon without a registry") {
  DaemonDouble daemon({.registry_enabled = false});
  auto s = stub(plain_channel(daemon.tcp_target()));
  auto [error, st] = refused_with(*s, manifest("x"));
  CHECK(error == "<none>");
  CHECK(st.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  CHECK(st.error_message() == "service registry not configured on this daemon");
}

TEST_CASE("double: recoverable errors keep the stream open") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s);
  REQUIRE(!stream.register_as(manifest("svc")).empty());

  auto expect_error = [&](const api::ServiceClientMessage& m, const std::string& text) {
    REQUIRE(stream.write(m));
    auto reply = stream.read();
    REQUIRE(reply);
    REQUIRE(reply->has_error());
    CHECK(reply->error().message() == text);
    CHECK(reply->error().code().empty());
  };
  expect_error(manifest("svc"), "manifest may only be sent once, at the start of the stream");
  expect_error(api::ServiceClientMessage{}, "unknown ServiceClientMessage variant");
  expect_error(send_message("", "x"), "send_message requires to_addr and text");
  expect_error(send_message(synthetic_address(), ""), "send_message requires to_addr and text");
  expect_error(send_message("nope", "x"), "send_message: invalid address \"nope\"");
  api::ServiceClientMessage accept;
  accept.mutable_accept();
  expect_error(accept, "accept requires request_id");
  api::ServiceClientMessage reject;
  reject.mutable_reject();
  expect_error(reject, "reject requires request_id");
  accept.mutable_accept()->set_request_id("E1-1");
  expect_error(accept, "no pending connection request \"E1-1\"");
  api::ServiceClientMessage bytes;
  bytes.mutable_send_bytes()->set_to_addr(synthetic_address());
  expect_error(bytes, "send_bytes requires a service registered with transport rpc");

  const std::string unreachable = synthetic_address();
  daemon.set_peer_unreachable(unreachable);
  expect_error(send_message(unreachable, "x"), "send_message: peer " + unreachable + " is unreachable");

  // Still open: events still flow and the actions were all recorded, in order.
  REQUIRE(daemon.inject_chat("svc", synthetic_address(), "still here"));
  auto ev = stream.read();
  REQUIRE(ev);
  CHECK(decode<api::ServiceChatMessageEvent>(*ev).text() == "still here");
  const auto actions = daemon.actions("svc");
  REQUIRE(actions.size() == 10);
  CHECK(actions[0].has_manifest());
  CHECK(actions[9].send_message().to_addr() == unreachable);
}

TEST_CASE("double: connection requests, ids and decisions") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  std::string first_id, second_id, third_id;
  const std::string peer = synthetic_address();
  {
    Stream stream(*s);
    REQUIRE(!stream.register_as(manifest("gate")).empty());
    first_id = daemon.inject_connection_request("gate", peer);
    second_id = daemon.inject_connection_request("gate", peer);
    third_id = daemon.inject_connection_request("gate", peer);
    CHECK(first_id == peer + "-1");
    CHECK(second_id == peer + "-2");
    for (const auto& id : {first_id, second_id, third_id}) {
      auto ev = stream.read();
      REQUIRE(ev);
      CHECK(ev->event().type() == "connection_request");
      const auto req = decode<api::ServiceConnectionRequestEvent>(*ev);
      CHECK(req.request_id() == id);
      CHECK(req.from_addr() == peer);
    }
    api::ServiceClientMessage accept;
    accept.mutable_accept()->set_request_id(first_id);
    REQUIRE(stream.write(accept));
    api::ServiceClientMessage reject;
    reject.mutable_reject()->set_request_id(second_id);
    reject.mutable_reject()->set_reason("busy");
    REQUIRE(stream.write(reject));
    CHECK(daemon.wait_decision(first_id, 2s) == "accepted");
    CHECK(daemon.wait_decision(second_id, 2s) == "rejected: busy");
    CHECK(!daemon.decision(third_id));
    // A request already decided is no longer pending.
    REQUIRE(stream.write(accept));
    auto again = stream.read();
    REQUIRE(again);
    CHECK(again->error().message() == "no pending connection request \"" + first_id + "\"");
  }
  // The stream ended with the third still pending.
  CHECK(daemon.wait_decision(third_id, 2s) == "rejected: service stream closed");
  REQUIRE(daemon.wait_unregistered("gate", 2s));

  // Ids count from 1 again on a new stream.
  Stream stream(*s);
  REQUIRE(!stream.register_as(manifest("gate")).empty());
  CHECK(daemon.inject_connection_request("gate", peer) == peer + "-1");
}

TEST_CASE("double: ACLs gate every inbound envelope") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  const std::string friend_addr = synthetic_address();
  const std::string stranger = synthetic_address();

  SECTION("allowlist") {
    auto m = manifest("allow", api::ACL_ALLOWLIST);
    m.mutable_manifest()->add_allowlist(friend_addr);
    Stream stream(*s);
    REQUIRE(!stream.register_as(m).empty());
    CHECK_FALSE(daemon.inject_chat("allow", stranger, "hi"));
    CHECK(daemon.inject_connection_request("allow", stranger).empty());
    CHECK(daemon.inject_chat("allow", friend_addr, "hi"));
    auto ev = stream.read();
    REQUIRE(ev);
    CHECK(decode<api::ServiceChatMessageEvent>(*ev).from_addr() == friend_addr);

    // A node-level dial from a stranger is refused with the gate's reason.
    api::ConnectRequest req;
    req.set_address(daemon.service_address("allow"));
    api::ConnectResponse reply;
    grpc::ClientContext ctx;
    REQUIRE(s->Connect(&ctx, req, &reply).ok());
    CHECK_FALSE(reply.accepted());
    CHECK(reply.message() == "not on allowlist");
  }
  SECTION("contacts") {
    Stream stream(*s);
    REQUIRE(!stream.register_as(manifest("friends", api::ACL_CONTACTS)).empty());
    CHECK_FALSE(daemon.inject_chat("friends", friend_addr, "hi"));
    api::AddContactRequest add;
    add.set_address(friend_addr);
    add.set_alias("pal");
    api::AddContactResponse added;
    grpc::ClientContext ctx;
    REQUIRE(s->AddContact(&ctx, add, &added).ok());
    CHECK(daemon.inject_chat("friends", friend_addr, "hi"));
    CHECK_FALSE(daemon.inject_chat("friends", stranger, "hi"));
    auto ev = stream.read();
    REQUIRE(ev);
    CHECK(decode<api::ServiceChatMessageEvent>(*ev).from_addr() == friend_addr);
  }
}

TEST_CASE("double: inbound payload cap and rate limit reach the receiving service") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  auto m = manifest("capped");
  m.mutable_manifest()->set_transport(api::TRANSPORT_RPC);
  m.mutable_manifest()->set_max_payload_bytes(10);
  m.mutable_manifest()->set_rate_limit_per_minute(60);
  m.mutable_manifest()->set_rate_limit_burst(2);
  Stream stream(*s);
  REQUIRE(!stream.register_as(m).empty());
  const std::string peer = synthetic_address();

  CHECK_FALSE(daemon.inject_bytes("capped", peer, "01234567890"));  // 11 > 10
  auto err = stream.read();
  REQUIRE(err);
  REQUIRE(err->has_error());
  CHECK(err->error().code() == "payload_too_large");
  CHECK(err->error().limit_bytes() == 10);
  CHECK(err->error().from_addr() == peer);

  CHECK(daemon.inject_bytes("capped", peer, "0123456789"));  // exactly the cap passes
  CHECK(daemon.inject_chat("capped", peer, "two"));
  CHECK_FALSE(daemon.inject_chat("capped", peer, "three"));  // burst of 2 spent
  CHECK(daemon.inject_chat("capped", synthetic_address(), "own bucket"));

  std::vector<api::ServiceServerMessage> got;
  for (int i = 0; i < 4; ++i) {
    auto msg = stream.read();
    REQUIRE(msg);
    got.push_back(*msg);
  }
  bool saw_rate = false;
  int events = 0;
  for (const auto& g : got) {
    if (g.has_error()) {
      CHECK(g.error().code() == "rate_limited");
      CHECK(g.error().retry_after_ms() > 0);
      CHECK(g.error().retry_after_ms() <= 1001);
      CHECK(g.error().from_addr() == peer);
      saw_rate = true;
    } else {
      ++events;
    }
  }
  CHECK(saw_rate);
  CHECK(events == 3);
  // Events keep their order (an error may overtake them).
  for (const auto& g : got) {
    if (g.has_event()) {
      CHECK(g.event().type() == "rpc_message");
      break;
    }
  }
}

// The stream's lock was taken inside the core's (dropped_events() reading a live stream's
// count) and the core's inside the stream's (a delivery recording its connection): two
// threads doing both deadlocked, and ThreadSanitizer reports the inversion on any run.
TEST_CASE("double: dropped_events() polled on a live service under traffic") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s, 60s);
  REQUIRE(!stream.register_as(manifest("busy")).empty());
  constexpr int kSenders = 2;
  constexpr int kPerSender = 1000;
  const std::string text(16 * 1024, 'x');  // the client reads nothing: the queue fills, drops
  std::atomic<int> senders_left{kSenders};
  std::atomic<int> refused{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&, peer = synthetic_address()] {
      for (int i = 0; i < kPerSender; ++i) {
        if (!daemon.inject_chat("busy", peer, text)) ++refused;
      }
      --senders_left;
    });
  }
  // Results are checked here, on the test's thread (Catch2's assertions are not thread-safe).
  std::uint64_t last = 0;
  bool monotonic = true;
  do {
    const std::uint64_t now = daemon.dropped_events("busy");
    monotonic = monotonic && now >= last;
    last = now;
  } while (senders_left.load() > 0);
  for (auto& t : senders) t.join();
  CHECK(refused == 0);
  CHECK(monotonic);
  CHECK(daemon.dropped_events("busy") >= last);
  CHECK(daemon.dropped_events("busy") > 0);
}

TEST_CASE("double: the 256-deep queue drops the oldest; errors overtake") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s, 60s);
  REQUIRE(!stream.register_as(manifest("slow")).empty());
  const std::string peer = synthetic_address();
  const std::string filler(16 * 1024, 'x');
  constexpr int kTotal = 1000;
  // The client reads nothing meanwhile: transport buffers fill, then the queue.
  for (int i = 1; i <= kTotal; ++i) {
    REQUIRE(daemon.inject_chat("slow", peer, std::to_string(i) + ":" + filler));
  }
  const auto dropped = daemon.dropped_events("slow");
  CHECK(dropped > 0);
  REQUIRE(stream.write(send_message("", "")));  // a bad action while events are queued
  REQUIRE(daemon.wait_for_actions("slow", 1, 5s));
  // The observer hook fires as the action arrives, just before it is handled; give the
  // handling (queueing the ServiceError) a moment before the client starts draining.
  std::this_thread::sleep_for(300ms);

  std::vector<int> seen;
  int error_at = -1;
  while (seen.size() + dropped < kTotal) {
    auto m = stream.read();
    REQUIRE(m);
    if (m->has_error()) {
      error_at = static_cast<int>(seen.size());
      continue;
    }
    const auto text = decode<api::ServiceChatMessageEvent>(*m).text();
    seen.push_back(std::stoi(text.substr(0, text.find(':'))));
  }
  if (error_at < 0) {
    auto m = stream.read();
    REQUIRE(m);
    REQUIRE(m->has_error());
    error_at = static_cast<int>(seen.size());
  }
  CHECK(seen.size() + dropped == kTotal);
  CHECK(seen.back() == kTotal);              // the newest survived
  CHECK(std::is_sorted(seen.begin(), seen.end()));
  CHECK(seen.size() >= 256);
  // The ServiceError was queued after every event and still did not come last: it went
  // past the event queue (how far ahead depends on how much the transport had buffered).
  CHECK(error_at < static_cast<int>(seen.size()));
}

TEST_CASE("double: services on one double reach each other") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  auto rpc = [](const std::string& name) {
    auto m = manifest(name);
    m.mutable_manifest()->set_transport(api::TRANSPORT_RPC);
    return m;
  };
  Stream a(*s), b(*s);
  const std::string a_addr = a.register_as(rpc("alpha"));
  const std::string b_addr = b.register_as(rpc("beta"));
  REQUIRE(!a_addr.empty());
  REQUIRE(!b_addr.empty());

  // chat
  REQUIRE(a.write(send_message(b_addr, "hi beta")));
  auto ev = b.read();
  REQUIRE(ev);
  CHECK(ev->event().type() == "chat_message");
  CHECK(decode<api::ServiceChatMessageEvent>(*ev).from_addr() == a_addr);

  // bytes
  api::ServiceClientMessage bytes;
  bytes.mutable_send_bytes()->set_to_addr(a_addr);
  bytes.mutable_send_bytes()->set_payload(std::string("\0\1\2", 3));
  REQUIRE(b.write(bytes));
  ev = a.read();
  REQUIRE(ev);
  CHECK(ev->event().type() == "rpc_message");
  const auto rpc_ev = decode<api::ServiceRpcMessageEvent>(*ev);
  CHECK(rpc_ev.from_addr() == b_addr);
  CHECK(rpc_ev.payload() == std::string("\0\1\2", 3));

  // introduction: from_service_addr is the sender as routed, not a claim
  const std::string other = synthetic_address();
  api::ServiceClientMessage intro;
  auto* i = intro.mutable_introduce_peers();
  i->set_to_addr(b_addr);
  i->set_other_addr(other);
  i->set_session_id("s-1");
  i->set_expires_at_ms(1234);
  i->set_role_hint("host");
  i->set_payload("ctx");
  REQUIRE(a.write(intro));
  ev = b.read();
  REQUIRE(ev);
  CHECK(ev->event().type() == "peer_introduction");
  const auto pi = decode<api::ServicePeerIntroductionEvent>(*ev);
  CHECK(pi.from_service_addr() == a_addr);
  CHECK(pi.peer_addr() == other);
  CHECK(pi.session_id() == "s-1");
  CHECK(pi.expires_at_ms() == 1234);
  CHECK(pi.role_hint() == "host");
  CHECK(pi.payload() == "ctx");

  // ConnectAs dials as alpha; beta decides.
  api::ConnectResponse reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  grpc::Status st;
  std::jthread dial([&] {
    api::ConnectAsRequest req;
    req.set_service("alpha");
    req.set_address(b_addr);
    st = s->ConnectAs(&ctx, req, &reply);
  });
  ev = b.read();
  REQUIRE(ev);
  REQUIRE(ev->event().type() == "connection_request");
  const auto cr = decode<api::ServiceConnectionRequestEvent>(*ev);
  CHECK(cr.from_addr() == a_addr);
  CHECK(cr.request_id() == a_addr + "-1");
  api::ServiceClientMessage accept;
  accept.mutable_accept()->set_request_id(cr.request_id());
  REQUIRE(b.write(accept));
  dial.join();
  REQUIRE(st.ok());
  CHECK(reply.accepted());
  CHECK(reply.message() == "connected");

  // ConnectAs for a name that is not registered.
  grpc::ClientContext ctx2;
  api::ConnectAsRequest req2;
  req2.set_service("ghost");
  req2.set_address(b_addr);
  CHECK(s->ConnectAs(&ctx2, req2, &reply).error_code() == grpc::StatusCode::NOT_FOUND);

  // A chat service takes no bytes.
  Stream c(*s);
  const std::string c_addr = c.register_as(manifest("gamma"));
  bytes.mutable_send_bytes()->set_to_addr(c_addr);
  REQUIRE(a.write(bytes));
  ev = a.read();
  REQUIRE(ev);
  CHECK(ev->error().message().rfind("send_bytes: ", 0) == 0);
}

TEST_CASE("double: addresses are stable per name, in memory and in a data dir") {
  TempDir data;
  std::string first, node_first;
  {
    DaemonDouble daemon({.data_dir = data.path});
    node_first = daemon.node_address();
    auto s = stub(plain_channel(daemon.tcp_target()));
    {
      Stream stream(*s);
      first = stream.register_as(manifest("stable"));
    }
    REQUIRE(daemon.wait_unregistered("stable", 2s));
    Stream again(*s);
    CHECK(again.register_as(manifest("stable")) == first);
  }
  DaemonDouble restarted({.data_dir = data.path});
  CHECK(restarted.node_address() == node_first);
  auto s = stub(plain_channel(restarted.tcp_target()));
  Stream stream(*s);
  CHECK(stream.register_as(manifest("stable")) == first);
}

TEST_CASE("double: addresses come from the real keys (section 7 vector)") {
  TempDir data;
  std::filesystem::create_directories(data.path / "keys");
  {
    std::ofstream seed(data.path / "keys" / "node.seed");
    seed << "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
  }
  DaemonDouble daemon({.data_dir = data.path});
  CHECK(daemon.node_address() == "EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy");
  CHECK(ensemble::detail::hex_encode(daemon.node_public_key()) ==
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
  CHECK(ensemble::is_onion_address(daemon.node_onion()));
  auto s = stub(plain_channel(daemon.tcp_target()));
  api::GetIdentityResponse id;
  REQUIRE(get_identity(*s, &id).ok());
  CHECK(id.address() == "EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy");
  CHECK(id.public_key().size() == 32);
}

TEST_CASE("double: test hooks (raw events, observer, burst)") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  Stream stream(*s, 60s);
  REQUIRE(!stream.register_as(manifest("hooks")).empty());

  REQUIRE(daemon.inject_event("hooks", "mystery_event", std::string("\xff\x00garbage", 9)));
  auto ev = stream.read();
  REQUIRE(ev);
  CHECK(ev->event().type() == "mystery_event");
  CHECK(ev->event().payload() == std::string("\xff\x00garbage", 9));

  std::atomic<int> observed{0};
  daemon.set_action_observer([&](std::string_view service, const api::ServiceClientMessage& m) {
    if (service == "hooks" && m.has_send_message()) ++observed;
  });
  REQUIRE(stream.write(send_message(synthetic_address(), "seen")));
  REQUIRE(daemon.wait_for_actions("hooks", 1, 2s));
  CHECK(observed == 1);
  daemon.set_action_observer({});

  constexpr std::size_t kBurst = 10'000;
  std::uint64_t written = 0;
  std::thread pusher([&] {
    written = daemon.push_chat_burst("hooks", synthetic_address(), kBurst, "b", 30s);
  });
  std::size_t received = 0;
  while (received < kBurst) {
    auto m = stream.read();
    if (!m) break;  // checked below, after the pusher is joined
    if (m->has_event()) ++received;
  }
  if (received < kBurst) stream.cancel();  // lets the burst end early
  pusher.join();
  CHECK(received == kBurst);
  CHECK(written == kBurst);
  CHECK(daemon.dropped_events("hooks") == 0);
}

TEST_CASE("double: a stream that ends unregisters; stop ends open streams") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  {
    Stream vanishing(*s);
    REQUIRE(!vanishing.register_as(manifest("gone")).empty());
    vanishing.cancel();  // the client vanishes mid-stream
  }
  CHECK(daemon.wait_unregistered("gone", 2s));
  // Its address is offline now, not a synthetic peer.
  {
    Stream other(*s);
    REQUIRE(!other.register_as(manifest("other")).empty());
    const std::string gone = [&] {
      Stream again(*s);
      const std::string addr = again.register_as(manifest("gone"));
      return addr;
    }();
    REQUIRE(daemon.wait_unregistered("gone", 2s));
    REQUIRE(other.write(send_message(gone, "hello?")));
    auto err = other.read();
    REQUIRE(err);
    CHECK(err->error().message() == "send_message: peer " + gone + " is not registered");
  }

  Stream open(*s);
  REQUIRE(!open.register_as(manifest("open")).empty());
  daemon.stop();
  auto st = open.end();
  CHECK(st.error_code() == grpc::StatusCode::UNAVAILABLE);
}

TEST_CASE("double: keypair_seed is never read, not even for a new name (section 10)") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  std::string seed(32, '\0');
  for (int i = 0; i < 32; ++i) seed[static_cast<std::size_t>(i)] = static_cast<char>(i);
  auto m = manifest("seeded");
  m.mutable_manifest()->set_keypair_seed(seed);
  std::string first;
  {
    Stream stream(*s);
    first = stream.register_as(m);
    // The address that seed would derive: the daemon does not give it.
    CHECK(first != "EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy");
    CHECK(ensemble::is_valid_address(first));
  }
  REQUIRE(daemon.wait_unregistered("seeded", 2s));
  m.mutable_manifest()->set_keypair_seed(std::string(32, '\7'));
  Stream again(*s);
  CHECK(again.register_as(m) == first);  // the name keeps its keypair
}

TEST_CASE("double: inject_introduction goes through the gate like any envelope") {
  DaemonDouble daemon;
  auto s = stub(plain_channel(daemon.tcp_target()));
  const std::string matchmaker = synthetic_address();
  auto m = manifest("player", api::ACL_ALLOWLIST);
  m.mutable_manifest()->add_allowlist(matchmaker);
  Stream stream(*s);
  REQUIRE(!stream.register_as(m).empty());
  api::ServicePeerIntroductionEvent intro;
  intro.set_from_service_addr(matchmaker);
  intro.set_peer_addr(synthetic_address());
  intro.set_session_id("match-7");
  CHECK(daemon.inject_introduction("player", intro));
  intro.set_from_service_addr(synthetic_address());  // not on the allowlist
  CHECK_FALSE(daemon.inject_introduction("player", intro));
  auto ev = stream.read();
  REQUIRE(ev);
  CHECK(ev->event().type() == "peer_introduction");
  const auto got = decode<api::ServicePeerIntroductionEvent>(*ev);
  CHECK(got.from_service_addr() == matchmaker);
  CHECK(got.session_id() == "match-7");
}

TEST_CASE("double: the headers link from two translation units") {
  DaemonDouble daemon;
  CHECK(double_test::second_tu_node_address(daemon) == daemon.node_address());
}

}  // namespace test_double
