// The library at the real daemon's edges (issue 12; daemon-protocol.md section 10), over
// real sockets: what the daemon would end a call for is refused before it is sent (invalid
// UTF-8, oversized messages), connection states and Tor events decode by the daemon's own
// numbering, start() waits through a daemon that is not ready, registration_timeout holds
// for every attempt, and keepalive notices a frozen daemon.
//
// Against the daemon double, a ScriptedDaemon (support/scripted_daemon.hpp) where the
// double cannot play an edge yet, and ensemble-loopbackd processes that can be frozen.
#include <catch2/catch.hpp>

#include <ensemble/detail/wire_check.hpp>
#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/polling.hpp"
#include "support/freezable_proxy.hpp"
#include "support/loopbackd_process.hpp"
#include "support/scripted_daemon.hpp"
#include "support/tempdir.hpp"
#include "support/thrown.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace test_daemon_edges {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

using test_support::eventually;
using test_support::peer_address;
using test_support::thrown;

namespace {

// An unauthenticated double on a Unix socket, and a registered chat and rpc service.
struct Registered {
  test_support::TempDir dir;
  DaemonDouble daemon{DaemonDoubleOptions{.unix_socket = (dir / "api.sock").string()}};
  ensemble::Client client{{.socket_path = daemon.unix_socket_path()}};
  std::shared_ptr<ensemble::ChatService> chat = client.service("edges");
  std::shared_ptr<ensemble::RpcService> rpc = client.rpc_service("edges-rpc");

  Registered() {
    chat->start();
    rpc->start();
  }
};

const std::string kBad = "caf\xe9";  // Latin-1 é: byte 3 starts no valid UTF-8 sequence

}  // namespace

// ---- 1. invalid UTF-8 never reaches the wire ------------------------------------------

TEST_CASE("first_invalid_utf8 follows Go's utf8.Valid, the rule the daemon applies") {
  using ensemble::detail::first_invalid_utf8;
  CHECK_FALSE(first_invalid_utf8(""));
  CHECK_FALSE(first_invalid_utf8("plain ascii, long enough to take the 8-byte path"));
  CHECK_FALSE(first_invalid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"));  // é € 😀 U+10FFFF
  CHECK(first_invalid_utf8(kBad) == 3u);
  CHECK(first_invalid_utf8("abcdefghij\x80") == 10u);        // a lone continuation byte
  CHECK(first_invalid_utf8("\xc0\xaf") == 0u);               // overlong '/'
  CHECK(first_invalid_utf8("x\xe0\x80\xaf") == 1u);          // overlong, 3 bytes
  CHECK(first_invalid_utf8("\xed\xa0\x80") == 0u);           // a surrogate (U+D800)
  CHECK(first_invalid_utf8("\xf4\x90\x80\x80") == 0u);       // above U+10FFFF
  CHECK(first_invalid_utf8("ok\xe2\x82") == 2u);             // truncated at the end
  CHECK(first_invalid_utf8("\xff") == 0u);
}

TEST_CASE("the check finds a bad string at any depth: repeated, nested, inside a oneof") {
  using ensemble::detail::find_bad_utf8;
  using ensemble::detail::string_plan_for;
  ensemble::api::GetDebugInfoResponse debug;  // repeated messages holding strings
  debug.add_rt_peers()->set_address("E1");
  debug.add_rt_peers()->set_onion_addr("ab\xff" "cd.onion");
  auto bad = find_bad_utf8(debug, string_plan_for<ensemble::api::GetDebugInfoResponse>());
  REQUIRE(bad);
  CHECK(bad->path == "rt_peers[1].onion_addr");
  CHECK(bad->offset == 2);
  CHECK(bad->byte == 0xff);
  debug.mutable_rt_peers(1)->set_onion_addr("abcd.onion");
  CHECK_FALSE(find_bad_utf8(debug, string_plan_for<ensemble::api::GetDebugInfoResponse>()));

  ensemble::api::ServiceClientMessage action;  // a oneof member
  action.mutable_introduce_peers()->set_session_id("s\x80");
  action.mutable_introduce_peers()->set_payload("\xff\xff");  // bytes: never looked at
  bad = find_bad_utf8(action, string_plan_for<ensemble::api::ServiceClientMessage>());
  REQUIRE(bad);
  CHECK(bad->path == "introduce_peers.session_id");
  action.mutable_manifest()->add_allowlist("ok");  // switches the oneof to the manifest
  action.mutable_manifest()->add_allowlist("\xc3");
  bad = find_bad_utf8(action, string_plan_for<ensemble::api::ServiceClientMessage>());
  REQUIRE(bad);
  CHECK(bad->path == "manifest.allowlist[1]");
}

TEST_CASE("an action with invalid UTF-8 throws before it is queued; the stream lives on") {
  Registered r;
  const std::string peer = peer_address(1);

  const std::string what =
      thrown<ensemble::InvalidArgumentError>([&] { r.chat->send_message(peer, kBad); });
  CHECK_THAT(what, Contains("send_message on service \"edges\""));
  CHECK_THAT(what, Contains("field ServiceClientMessage.send_message.text is not valid UTF-8"));
  CHECK_THAT(what, Contains("byte 0xe9 at offset 3"));

  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { r.chat->reject_connection("req-1", "no \xff"); }),
             Contains("ServiceClientMessage.reject.reason") && Contains("offset 3"));
  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { r.chat->accept_connection("\xc0\xaf"); }),
             Contains("accept on service \"edges\"") && Contains("accept.request_id"));
  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] {
               r.chat->introduce_peers(peer, peer_address(2), "s1", std::chrono::time_point_cast<std::chrono::milliseconds>(
                                                                       std::chrono::system_clock::now() + 1min),
                                       "host\xed\xa0\x80");
             }),
             Contains("introduce_peers.role_hint") && Contains("offset 4"));
  CHECK(r.chat->stats().actions_written == 0);
  CHECK(r.daemon.action_count("edges") == 0);

  // Bytes fields are free: binary payloads go out as they are.
  r.chat->introduce_peers(peer, peer_address(2), "s1",
                          std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now() + 1min),
                          "host", std::string("\xff\xfe\x00\x80", 4));
  r.rpc->send_bytes(peer, std::string("\xff\xfe\x00\x80", 4));
  // And the stream is still registered and writable.
  r.chat->send_message(peer, "caf\xc3\xa9");
  REQUIRE(r.daemon.wait_for_actions("edges", 2, 5s));
  REQUIRE(r.daemon.wait_for_actions("edges-rpc", 1, 5s));
  CHECK(r.chat->state() == ensemble::ServiceState::registered);
  CHECK(r.daemon.service_address("edges") == r.chat->address());
}

TEST_CASE("a manifest with invalid UTF-8 throws at Client::service, naming the field") {
  Registered r;
  ensemble::ServiceOptions bad_description;
  bad_description.description = "r\xe9sum\xe9 bot";
  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { (void)r.client.service("cv", bad_description); }),
             Contains("the manifest of service \"cv\"") &&
                 Contains("ServiceClientMessage.manifest.description") && Contains("offset 1"));

  ensemble::ServiceOptions bad_allowlist;  // acl public: entries are not checked as addresses
  bad_allowlist.allowlist = {peer_address(1), "x\xff"};
  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { (void)r.client.service("al", bad_allowlist); }),
             Contains("manifest.allowlist[1]") && Contains("offset 1"));
  CHECK(r.daemon.service_address("cv").empty());
}

TEST_CASE("a unary request or a stream request with invalid UTF-8 throws, naming the call") {
  Registered r;
  const std::string peer = peer_address(3);
  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { r.client.send(peer, kBad); }),
             Contains("SendMessage: field SendMessageRequest.text is not valid UTF-8") && Contains("offset 3"));
  // The callback form throws too, before a callback could run.
  std::atomic<bool> called{false};
  CHECK_THROWS_AS(r.client.send(peer, kBad, [&](ensemble::Result<std::string>) { called = true; }),
                  ensemble::InvalidArgumentError);
  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { r.client.add_contact({.address = peer, .alias = kBad}); }),
             Contains("AddContact: field AddContactRequest.alias"));
  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { (void)r.client.send_file(peer, "/tmp/" + kBad); }),
             Contains("SendFile: field SendFileRequest.file_path") && Contains("offset 8"));
  CHECK(r.client.open_calls() == 2);  // only the two services
  CHECK_FALSE(called);
  // The operator's own path still works with valid text (dialled first, as the daemon
  // wants an established connection before a chat).
  REQUIRE(r.client.connect(peer).accepted);
  CHECK_FALSE(r.client.send(peer, "caf\xc3\xa9").empty());
}

// ---- 2. nothing larger than the daemon accepts ----------------------------------------

TEST_CASE("an action over the daemon's 4 MiB limit throws with the size and the limit") {
  Registered r;
  const std::string peer = peer_address(4);
  const std::string what = thrown<ensemble::InvalidArgumentError>(
      [&] { r.rpc->send_bytes(peer, std::string(5u << 20, 'x')); });
  CHECK_THAT(what, Contains("send_bytes on service \"edges-rpc\""));
  CHECK_THAT(what, Contains("the message is 524")); // 5 MiB plus the envelope
  CHECK_THAT(what, Contains("limit of 4194304 bytes (ClientOptions::max_message_bytes)"));
  CHECK(r.rpc->stats().actions_written == 0);
  CHECK(r.rpc->queued() == 0);

  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { r.client.send(peer, std::string(5u << 20, 'y')); }),
             Contains("SendMessage: the message is") && Contains("4194304"));

  // Just under the limit is sent, and the stream lives on.
  r.rpc->send_bytes(peer, std::string(4u << 20, 'z').substr(100));
  REQUIRE(r.daemon.wait_for_actions("edges-rpc", 1, 10s));
  CHECK(r.rpc->state() == ensemble::ServiceState::registered);
}

TEST_CASE("ClientOptions::max_message_bytes sets the limit exactly, for a daemon configured otherwise") {
  test_support::TempDir dir;
  DaemonDouble daemon{DaemonDoubleOptions{.unix_socket = (dir / "api.sock").string()}};
  ensemble::Client client({.socket_path = daemon.unix_socket_path(), .max_message_bytes = 1000});
  auto svc = client.service("small");
  svc->start();
  const std::string peer = peer_address(5);

  // A send_message's ServiceClientMessage is its text plus a fixed envelope; find the text
  // length that lands exactly on the limit.
  ensemble::api::ServiceClientMessage probe;
  probe.mutable_send_message()->set_to_addr(peer);
  probe.mutable_send_message()->set_text(std::string(900, 'a'));
  const std::size_t at_limit = 900 + (1000 - probe.ByteSizeLong());
  probe.mutable_send_message()->set_text(std::string(at_limit, 'a'));
  REQUIRE(probe.ByteSizeLong() == 1000);

  svc->send_message(peer, std::string(at_limit, 'a'));  // exactly the limit: allowed
  CHECK_THAT(thrown<ensemble::InvalidArgumentError>([&] { svc->send_message(peer, std::string(at_limit + 1, 'a')); }),
             Contains("the message is 1001 bytes serialized, over the daemon's limit of 1000 bytes"));
  REQUIRE(daemon.wait_for_actions("small", 1, 5s));

  // 0 turns the check off (the UTF-8 check stays).
  ensemble::Client unlimited({.socket_path = daemon.unix_socket_path(), .max_message_bytes = 0});
  auto big = unlimited.rpc_service("big");
  big->start();
  CHECK_NOTHROW(big->send_bytes(peer, std::string(5u << 20, 'x')));
  CHECK_THROWS_AS(unlimited.send(peer, kBad), ensemble::InvalidArgumentError);
}

// ---- 4. connection states and Tor events, by the daemon's numbering --------------------

TEST_CASE("connection_state decodes the daemon's numbering; an unknown number stays unknown") {
  using ensemble::ConnectionState;
  using ensemble::DaemonConnectionState;
  const std::vector<std::pair<int, std::string>> names = {
      {0, "discovering"}, {1, "signaling"}, {2, "exchanging-ips"}, {3, "nat-traversal"}, {4, "connected"},
      {5, "connected-tor"}, {6, "disconnected"}, {7, "failed"}, {8, "reconnecting"}};

  test_support::TempDir dir;
  test_support::ScriptedDaemon daemon((dir / "api.sock").string());
  for (const auto& [n, name] : names) {
    daemon.publish("connection_state", R"({"PeerAddr":"Epeer","State":)" + std::to_string(n) + R"(,"Error":""})");
  }
  daemon.publish("connection_state", R"({"PeerAddr":"Epeer","State":9,"Error":"from the future"})");
  daemon.publish("connection_state", R"({"peer_addr":"Esnake","state":7,"error":"dial timeout"})");
  daemon.publish("tor_bootstrap", R"({"percent":45,"summary":"Loading relay descriptors"})");
  daemon.publish("tor_ready", R"("abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion")");
  daemon.publish("tor_ready", "null");

  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  std::mutex mu;
  std::vector<ensemble::DaemonEvent> seen;
  auto sub = client.events([&](const ensemble::DaemonEvent& ev) {
    std::lock_guard lock(mu);
    seen.push_back(ev);
  });
  // The handler's copies, not events_received(): the count goes up before the handler runs.
  REQUIRE(eventually([&] {
    std::lock_guard lock(mu);
    return seen.size() == names.size() + 5;
  }));
  CHECK(sub->events_received() == names.size() + 5);
  std::lock_guard lock(mu);

  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto s = DaemonConnectionState::from_event(seen[i]);
    REQUIRE(s);
    CHECK(s->peer_addr == "Epeer");
    CHECK(s->raw_state == names[i].first);
    REQUIRE(s->state);
    CHECK(static_cast<int>(*s->state) == names[i].first);
    CHECK(s->state_name() == names[i].second);
    CHECK(s->connected() == (names[i].first == 4 || names[i].first == 5));
  }
  const auto future = DaemonConnectionState::from_event(seen[9]);
  REQUIRE(future);
  CHECK_FALSE(future->state);
  CHECK(future->raw_state == 9);
  CHECK(future->state_name() == "unknown state 9");
  CHECK(future->error == "from the future");
  const auto snake = DaemonConnectionState::from_event(seen[10]);
  REQUIRE(snake);
  CHECK(snake->state == ConnectionState::failed);
  CHECK(snake->peer_addr == "Esnake");
  CHECK(snake->error == "dial timeout");

  const auto boot = ensemble::TorBootstrap::from_event(seen[11]);
  REQUIRE(boot);
  CHECK(boot->percent == 45);
  CHECK(boot->summary == "Loading relay descriptors");
  const auto ready = ensemble::TorReady::from_event(seen[12]);
  REQUIRE(ready);
  CHECK(ready->onion == "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion");
  const auto ready_null = ensemble::TorReady::from_event(seen[13]);
  REQUIRE(ready_null);
  CHECK_FALSE(ready_null->onion);

  // Other types and unreadable payloads are not mistaken for these.
  CHECK_FALSE(DaemonConnectionState::from_event(seen[11]));
  CHECK_FALSE(ensemble::TorBootstrap::from_event(seen[0]));
  CHECK_FALSE(DaemonConnectionState::from_event(ensemble::DaemonEvent::from_wire("connection_state", "garbage")));
  CHECK_FALSE(DaemonConnectionState::from_event(
      ensemble::DaemonEvent::from_wire("connection_state", R"({"PeerAddr":"E","State":"connected"})")));
  CHECK_FALSE(ensemble::TorReady::from_event(ensemble::DaemonEvent::from_wire("tor_ready", "not json")));
  CHECK_FALSE(ensemble::TorBootstrap::from_event(ensemble::DaemonEvent::from_wire("tor_bootstrap", R"({"summary":"x"})")));
}

// ---- 3. nothing depends on Subscribe headers before the first event -------------------

// wait_started() promised a confirmation the daemon never gives before its first event; the
// promise is gone from the API rather than kept false.
template <class S>
concept HasWaitStarted = requires(S& s) { s.wait_started(std::chrono::milliseconds(1)); };
static_assert(!HasWaitStarted<ensemble::EventSubscription>);

TEST_CASE("a subscription on a daemon that holds its headers until the first event works") {
  test_support::TempDir dir;
  test_support::ScriptedDaemon daemon((dir / "api.sock").string());
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  std::atomic<int> events{0};
  auto sub = client.events([&](const ensemble::DaemonEvent&) { ++events; });
  // No event yet, so nothing has come back on the stream; that is not a failure.
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(sub->done());
  CHECK(sub->events_received() == 0);
  daemon.publish("peer_online", R"({"Address":"E1","Online":true})");
  REQUIRE(eventually([&] { return events == 1; }));
  sub->cancel();
  CHECK(sub->wait().error_code() == grpc::StatusCode::CANCELLED);
}

// ---- 5. start() waits through a daemon that is not ready -------------------------------

namespace {
ensemble::ServiceOptions waiting_options() { return test_support::waiting_options(50ms, 200ms); }
}  // namespace

TEST_CASE("wait_for_daemon: start() waits for a socket that appears later (UNAVAILABLE, then ready)") {
  test_support::TempDir dir;
  const std::string socket = (dir / "api.sock").string();
  ensemble::Client client({.socket_path = socket});

  SECTION("without the option start() fails at once, UNAVAILABLE") {
    auto svc = client.service("early");
    try {
      svc->start();
      FAIL("start() should have thrown");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::UNAVAILABLE);
    }
  }
  SECTION("with it start() registers once the daemon is up") {
    // Declared before the service, so they outlive it: its handler may run until the
    // service is released (the daemon's end below makes it report reconnecting).
    std::vector<ensemble::ServiceState> states;
    std::mutex mu;
    auto svc = client.service("early", waiting_options());
    svc->on_state([&](ensemble::ServiceState s) {
      std::lock_guard lock(mu);
      states.push_back(s);
    });
    std::unique_ptr<DaemonDouble> daemon;
    std::thread late([&] {
      std::this_thread::sleep_for(700ms);
      daemon = std::make_unique<DaemonDouble>(DaemonDoubleOptions{.unix_socket = socket});
    });
    const auto t0 = std::chrono::steady_clock::now();
    svc->start();
    late.join();
    CHECK(std::chrono::steady_clock::now() - t0 >= 600ms);
    CHECK(svc->state() == ensemble::ServiceState::registered);
    CHECK(daemon->service_address("early") == svc->address());
    std::lock_guard lock(mu);
    CHECK(std::count(states.begin(), states.end(), ensemble::ServiceState::reconnecting) >= 1);
  }
}

TEST_CASE("wait_for_daemon: start() waits through UNIMPLEMENTED while Tor bootstraps") {
  test_support::TempDir dir;
  test_support::ScriptedDaemon daemon((dir / "api.sock").string());
  daemon.registry_ready = false;
  daemon.set_tor_state("bootstrapping");
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});

  SECTION("without the option: RegistrationError UNIMPLEMENTED with the daemon's text") {
    auto svc = client.service("bot");
    try {
      svc->start();
      FAIL("start() should have thrown");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::UNIMPLEMENTED);
      CHECK(e.daemon_message() == "service registry not configured on this daemon");
    }
  }
  SECTION("with it: registered once the registry is up") {
    auto svc = client.service("bot", waiting_options());
    std::thread ready([&] {
      std::this_thread::sleep_for(600ms);
      daemon.registry_ready = true;
      daemon.set_tor_state("ready");
    });
    svc->start();
    ready.join();
    CHECK(svc->state() == ensemble::ServiceState::registered);
    CHECK(daemon.register_calls >= 3);
  }
  SECTION("cancel() from another thread ends the wait with CANCELLED") {
    auto svc = client.service("bot", waiting_options());
    std::thread stop([&] {
      std::this_thread::sleep_for(300ms);
      svc->cancel();
    });
    try {
      svc->start();
      FAIL("start() should have thrown");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::CANCELLED);
    }
    stop.join();
    CHECK(svc->state() == ensemble::ServiceState::closed);
  }
  SECTION("reconnect.max_attempts bounds the wait") {
    auto options = waiting_options();
    options.reconnect.max_attempts = 3;
    auto svc = client.service("bot", options);
    CHECK_THROWS_AS(svc->start(), ensemble::RegistrationError);
    CHECK(daemon.register_calls == 3);
  }
}

TEST_CASE("wait_for_daemon retries the daemon double's UNIMPLEMENTED registry, within max_attempts") {
  test_support::TempDir dir;
  DaemonDouble daemon{DaemonDoubleOptions{.unix_socket = (dir / "api.sock").string(), .registry_enabled = false}};
  ensemble::Client client({.socket_path = daemon.unix_socket_path()});
  auto options = waiting_options();
  options.reconnect.max_attempts = 3;
  std::atomic<int> waits{0};  // before the service: its handler captures it
  auto svc = client.service("bot", options);
  svc->on_state([&](ensemble::ServiceState s) {
    if (s == ensemble::ServiceState::reconnecting) ++waits;
  });
  try {
    svc->start();
    FAIL("start() should have thrown");
  } catch (const ensemble::RegistrationError& e) {
    CHECK(e.code() == grpc::StatusCode::UNIMPLEMENTED);
    CHECK(e.daemon_message() == "service registry not configured on this daemon");
  }
  CHECK(waits == 2);  // three attempts, two waits between them
}

TEST_CASE("against the double's start-up window (socket late, then Tor bootstrapping)") {
  test_support::TempDir dir;
  DaemonDouble daemon{DaemonDoubleOptions{.unix_socket = (dir / "api.sock").string(),
                                          .socket_delay = 400ms,
                                          .bootstrap_time = 800ms}};
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});

  SECTION("a service started at once registers once the daemon is ready") {
    auto svc = client.service("sidecar", waiting_options());
    svc->start();
    CHECK(svc->state() == ensemble::ServiceState::registered);
    CHECK(daemon.service_address("sidecar") == svc->address());
  }
  SECTION("wait_until_ready returns once tor_state is \"ready\"; the Tor events decode") {
    std::mutex mu;
    std::vector<int> percents;
    std::optional<ensemble::TorReady> ready_event;
    std::shared_ptr<ensemble::EventSubscription> sub;
    // Subscribe as soon as the socket is there, to see the bootstrap.
    REQUIRE(eventually([&] {
      sub = client.events([&](const ensemble::DaemonEvent& ev) {
        std::lock_guard lock(mu);
        if (auto b = ensemble::TorBootstrap::from_event(ev)) percents.push_back(b->percent);
        if (auto r = ensemble::TorReady::from_event(ev)) ready_event = r;
      });
      std::this_thread::sleep_for(50ms);
      return !sub->done();
    }));
    const ensemble::NodeStatus status = client.wait_until_ready(20s);
    CHECK(status.tor_state == "ready");
    REQUIRE(eventually([&] {
      std::lock_guard lock(mu);
      return ready_event.has_value();
    }));
    std::lock_guard lock(mu);
    CHECK(ready_event->onion == daemon.node_onion());
    for (int p : percents) CHECK((p >= 0 && p <= 100));
  }
}

TEST_CASE("Client::wait_until_ready waits for GetStatus \"ready\", through a missing socket") {
  test_support::TempDir dir;
  const std::string socket = (dir / "api.sock").string();
  ensemble::Client client({.socket_path = socket});

  CHECK_THROWS_AS(client.wait_until_ready(300ms), ensemble::RpcError);  // nothing there yet

  std::unique_ptr<test_support::ScriptedDaemon> daemon;
  std::atomic<bool> up{false};
  std::thread later([&] {
    std::this_thread::sleep_for(300ms);
    daemon = std::make_unique<test_support::ScriptedDaemon>(socket);
    daemon->set_tor_state("bootstrapping");
    up = true;
    std::this_thread::sleep_for(500ms);
    daemon->set_tor_state("ready");
  });
  const ensemble::NodeStatus status = client.wait_until_ready(20s);
  later.join();
  CHECK(status.tor_state == "ready");

  daemon->set_tor_state("disabled");
  try {
    client.wait_until_ready(5s);
    FAIL("should have thrown");
  } catch (const ensemble::RpcError& e) {
    CHECK(e.code() == grpc::StatusCode::FAILED_PRECONDITION);
  }
  daemon->set_tor_state("bootstrapping");
  try {
    // Long enough for a GetStatus to come back on a loaded machine (at 400 ms, under ASan,
    // none did, and the error had no state to name); the daemon stays bootstrapping.
    client.wait_until_ready(2s);
    FAIL("should have thrown");
  } catch (const ensemble::RpcError& e) {
    CHECK(e.code() == grpc::StatusCode::DEADLINE_EXCEEDED);
    CHECK_THAT(std::string(e.what()), Contains("tor_state \"bootstrapping\""));
  }
}

// ---- 6. registration_timeout: long by default, and for every attempt -------------------

TEST_CASE("registration_timeout defaults to minutes, since `registered` waits for Tor") {
  CHECK(ensemble::ServiceOptions{}.registration_timeout >= 5min);
}

TEST_CASE("registration_timeout applies to the first attempt and to every reconnect") {
  test_support::TempDir dir;
  test_support::ScriptedDaemon daemon((dir / "api.sock").string());
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});

  SECTION("the first attempt: DEADLINE_EXCEEDED naming the option") {
    daemon.answer_registration = false;
    ensemble::ServiceOptions o;
    o.registration_timeout = 300ms;
    auto svc = client.service("slow", o);
    try {
      svc->start();
      FAIL("start() should have thrown");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::DEADLINE_EXCEEDED);
      CHECK_THAT(std::string(e.what()), Contains("ServiceOptions::registration_timeout"));
    }
    CHECK(svc->state() == ensemble::ServiceState::closed);
  }
  SECTION("a reconnect attempt that hears nothing is cancelled and retried") {
    ensemble::ServiceOptions o;
    o.registration_timeout = 300ms;
    o.reconnect.enabled = true;
    o.reconnect.initial_backoff = 50ms;
    o.reconnect.max_backoff = 100ms;
    auto svc = client.service("slow", o);
    svc->start();
    daemon.answer_registration = false;
    daemon.end_streams(grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"));
    // Each re-registration now hangs; without a per-attempt timeout the first would hang
    // forever, with it they keep coming.
    REQUIRE(eventually([&] { return daemon.register_calls >= 4; }, 10s));
    CHECK(svc->state() != ensemble::ServiceState::closed);
    daemon.answer_registration = true;
    REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::registered; }, 10s));
  }
}

// ---- 7. a frozen daemon is noticed -----------------------------------------------------

TEST_CASE("keepalive notices a frozen daemon (SIGSTOP): the service leaves registered") {
  if (!test_support::have_loopbackd()) {
    WARN("ENSEMBLE_LOOPBACKD not set; skipped");
    return;
  }
  test_support::TempDir dir;
  const std::string socket = (dir / "api.sock").string();
  test_support::LoopbackdProcess daemon({"--api-socket", socket, "--loopback-dir", (dir / "rdv").string()});

  SECTION("with a short keepalive the stream ends UNAVAILABLE within interval + timeout") {
    ensemble::Client client({.socket_path = socket, .keepalive_interval = 1s, .keepalive_timeout = 1s});
    auto svc = client.service("frozen");
    svc->start();
    REQUIRE(::kill(daemon.pid(), SIGSTOP) == 0);
    const auto status = svc->wait_for(15s);
    ::kill(daemon.pid(), SIGCONT);
    REQUIRE(status);
    CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
    CHECK(svc->state() == ensemble::ServiceState::closed);
  }
  SECTION("with the reconnect policy on, it takes over") {
    ensemble::Client client({.socket_path = socket, .keepalive_interval = 1s, .keepalive_timeout = 1s});
    ensemble::ServiceOptions options;
    options.reconnect.enabled = true;
    std::atomic<bool> reconnecting{false};  // before the service: its handler captures it
    auto svc = client.service("frozen", options);
    svc->on_state([&](ensemble::ServiceState s) {
      if (s == ensemble::ServiceState::reconnecting) reconnecting = true;
    });
    svc->start();
    REQUIRE(::kill(daemon.pid(), SIGSTOP) == 0);
    CHECK(eventually([&] { return reconnecting.load(); }, 15s));
    ::kill(daemon.pid(), SIGCONT);
    svc->cancel();
    svc->wait();
  }
  SECTION("without keepalive nothing notices (what the option is for)") {
    ensemble::Client client({.socket_path = socket, .keepalive_interval = 0ms});
    auto svc = client.service("frozen");
    svc->start();
    REQUIRE(::kill(daemon.pid(), SIGSTOP) == 0);
    CHECK_FALSE(svc->wait_for(3s));
    CHECK(svc->state() == ensemble::ServiceState::registered);
    ::kill(daemon.pid(), SIGCONT);
  }
}

TEST_CASE("keepalive goes on pinging a quiet stream, so a freeze after many pings is noticed too") {
  // A server that takes pings at any rate, behind a proxy the test freezes: gRPC's client
  // stops pinging after 2 pings without data unless told otherwise, and a daemon that froze
  // after that would never be noticed.
  test_support::ScriptedDaemon daemon("127.0.0.1:0", /*permit_pings=*/true);
  test_support::FreezableProxy proxy(daemon.tcp_port());
  ensemble::Client client({.addr = "127.0.0.1:" + std::to_string(proxy.port()),
                           .keepalive_interval = 500ms,
                           .keepalive_timeout = 1s});
  auto svc = client.service("quiet");
  svc->start();
  CHECK_FALSE(svc->wait_for(3500ms));  // about 6 pings, all answered: still registered
  proxy.freeze();
  const auto status = svc->wait_for(10s);
  REQUIRE(status);
  CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
}

}  // namespace test_daemon_edges
