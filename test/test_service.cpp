// Service end to end: a real Client registers real services on the daemon double over real
// sockets (Unix and loopback TCP, signed), and every assertion is on what crossed the wire.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/polling.hpp"
#include "support/tempdir.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace test_service {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

using test_support::eventually;
using test_support::peer_address;

namespace {

ensemble::Seed admin_seed() {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i);
  return ensemble::Seed::from_bytes(bytes);
}

// A double that demands signatures, listening on both a Unix socket and loopback TCP.
struct Daemon {
  test_support::TempDir dir;
  DaemonDouble daemon;

  Daemon() : daemon(options(dir)) {}

  static DaemonDoubleOptions options(const test_support::TempDir& dir) {
    DaemonDoubleOptions o;
    o.unix_socket = (dir / "api.sock").string();
    o.tcp_address = "127.0.0.1:0";
    o.admin_key = ensemble::Signer(admin_seed()).public_key();
    return o;
  }

  ensemble::Client unix_client() const {
    return ensemble::Client({.socket_path = (dir / "api.sock").string(), .auth_seed = admin_seed()});
  }
  ensemble::Client tcp_client() const {
    return ensemble::Client({.addr = daemon.tcp_target(), .auth_seed = admin_seed()});
  }
};

}  // namespace

TEST_CASE("a service registers over a signed Unix socket and over signed loopback TCP") {
  Daemon d;
  for (bool use_tcp : {false, true}) {
    CAPTURE(use_tcp);
    auto client = use_tcp ? d.tcp_client() : d.unix_client();
    auto svc = client.service(use_tcp ? "echo-tcp" : "echo-unix");
    CHECK(svc->state() == ensemble::ServiceState::idle);
    svc->start();
    CHECK(svc->state() == ensemble::ServiceState::registered);
    CHECK(ensemble::is_valid_address(svc->address()));
    CHECK(svc->address() == d.daemon.service_address(svc->name()));
    CHECK(ensemble::is_onion_address(svc->onion()));
    svc->close();
    CHECK(svc->wait().ok());
    CHECK(svc->state() == ensemble::ServiceState::closed);
  }
}

TEST_CASE("the address is stable for a name across re-registration") {
  Daemon d;
  auto client = d.unix_client();
  std::string first;
  {
    auto svc = client.service("stable");
    svc->start();
    first = svc->address();
    svc->close();
    svc->wait();
  }
  REQUIRE(d.daemon.wait_unregistered("stable", 2s));
  auto again = client.service("stable");
  again->start();
  CHECK(again->address() == first);
}

TEST_CASE("every event type reaches its handler, decoded") {
  Daemon d;
  auto client = d.unix_client();
  auto chat = client.service("events-chat");
  auto rpc = client.rpc_service("events-rpc");

  std::mutex mu;
  std::condition_variable cv;
  std::vector<ensemble::ChatMessage> chats;
  std::vector<ensemble::ConnectionRequest> requests;
  std::vector<ensemble::RpcMessage> rpcs;
  std::vector<ensemble::PeerIntroduction> intros;
  std::vector<ensemble::UnknownEvent> unknowns;
  auto keep = [&](auto& into) {
    return [&](const auto& e) {
      std::lock_guard lock(mu);
      into.push_back(e);
      cv.notify_all();
    };
  };
  chat->on_chat(keep(chats)).on_connection_request(keep(requests)).on_unknown(keep(unknowns));
  rpc->on_rpc(keep(rpcs));
  rpc->on_peer_introduction(keep(intros));
  chat->start();
  rpc->start();

  const auto peer = peer_address(7);
  d.daemon.inject_chat("events-chat", peer, "hello there", 1700000000123);
  const auto request_id = d.daemon.inject_connection_request("events-chat", peer);
  d.daemon.inject_bytes("events-rpc", peer, std::string("\x00\x01\xff", 3));
  ensemble::api::ServicePeerIntroductionEvent intro;
  intro.set_from_service_addr(peer_address(8));
  intro.set_peer_addr(peer);
  intro.set_session_id("s-1");
  intro.set_expires_at_ms(1800000000000);
  intro.set_role_hint("host");
  intro.set_payload("ticket");
  d.daemon.inject_introduction("events-rpc", intro);
  d.daemon.inject_event("events-chat", "brand_new_type", "raw\x01");
  d.daemon.inject_event("events-chat", "chat_message", "\xff\xff\xff not protobuf");

  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, 5s, [&] {
    return chats.size() == 1 && requests.size() == 1 && rpcs.size() == 1 && intros.size() == 1 &&
           unknowns.size() == 2;
  }));
  CHECK(chats[0].from_addr == peer);
  CHECK(chats[0].text == "hello there");
  CHECK(ensemble::unix_ms(chats[0].ts) == 1700000000123);
  CHECK(requests[0].request_id == request_id);
  CHECK(requests[0].from_addr == peer);
  CHECK(request_id == peer + "-1");
  CHECK(rpcs[0].from_addr == peer);
  CHECK(rpcs[0].payload == std::string("\x00\x01\xff", 3));
  CHECK(intros[0].from_service_addr == peer_address(8));
  CHECK(intros[0].peer_addr == peer);
  CHECK(intros[0].session_id == "s-1");
  CHECK(ensemble::unix_ms(intros[0].expires_at) == 1800000000000);
  CHECK(intros[0].role_hint == "host");
  CHECK(intros[0].payload == "ticket");
  CHECK(unknowns[0].type == "brand_new_type");
  CHECK(unknowns[0].payload == "raw\x01");
  CHECK(unknowns[0].problem.empty());
  CHECK(unknowns[1].type == "chat_message");
  CHECK_FALSE(unknowns[1].problem.empty());
}

TEST_CASE("each action reaches the daemon with the right fields") {
  Daemon d;
  auto client = d.tcp_client();
  auto svc = client.rpc_service("actions");
  svc->start();
  const auto peer = peer_address(3);
  const auto other = peer_address(4);
  const auto req_a = d.daemon.inject_connection_request("actions", peer);
  const auto req_b = d.daemon.inject_connection_request("actions", other);

  svc->send_message(peer, "hi peer");
  svc->accept_connection(req_a);
  svc->reject_connection(req_b, "busy");
  svc->send_bytes(peer, std::string("\x00\x10", 2));
  svc->introduce_peers(peer, other, "sess-9", ensemble::timestamp_from_unix_ms(1900000000000), "guest",
                       "blob");

  REQUIRE(d.daemon.wait_for_actions("actions", 5, 5s));
  auto actions = d.daemon.actions("actions");
  REQUIRE(actions.size() == 5);
  CHECK(actions[0].send_message().to_addr() == peer);
  CHECK(actions[0].send_message().text() == "hi peer");
  CHECK(actions[1].accept().request_id() == req_a);
  CHECK(actions[2].reject().request_id() == req_b);
  CHECK(actions[2].reject().reason() == "busy");
  CHECK(actions[3].send_bytes().to_addr() == peer);
  CHECK(actions[3].send_bytes().payload() == std::string("\x00\x10", 2));
  const auto& intro = actions[4].introduce_peers();
  CHECK(intro.to_addr() == peer);
  CHECK(intro.other_addr() == other);
  CHECK(intro.session_id() == "sess-9");
  CHECK(intro.expires_at_ms() == 1900000000000);
  CHECK(intro.role_hint() == "guest");
  CHECK(intro.payload() == "blob");
  CHECK(eventually([&] { return d.daemon.decision(req_a).has_value(); }));
}

TEST_CASE("registration failures are typed with the daemon's code and words") {
  Daemon d;
  auto client = d.unix_client();

  SECTION("a taken name is ALREADY_EXISTS") {
    auto first = client.service("taken");
    first->start();
    auto second = client.service("taken");
    try {
      second->start();
      FAIL("registered a taken name");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::ALREADY_EXISTS);
      CHECK(e.daemon_message() == "services: service already registered");
      CHECK(e.service_name() == "taken");
    }
    CHECK(second->wait().error_code() == grpc::StatusCode::ALREADY_EXISTS);
    CHECK_THROWS_AS(second->send_message(peer_address(1), "x"), ensemble::ServiceClosedError);
    CHECK(first->state() == ensemble::ServiceState::registered);
  }

  SECTION("the daemon's own name is taken too") {
    auto node = client.service("node");
    CHECK_THROWS_MATCHES(node->start(), ensemble::RegistrationError,
                         Catch::Predicate<ensemble::RegistrationError>(
                             [](const auto& e) { return e.code() == grpc::StatusCode::ALREADY_EXISTS; }));
  }

  SECTION("an unsigned client is UNAUTHENTICATED") {
    ensemble::Client unsigned_client({.socket_path = (d.dir / "api.sock").string()});
    auto svc = unsigned_client.service("nosig");
    try {
      svc->start();
      FAIL("registered without a signature");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::UNAUTHENTICATED);
    }
  }

  SECTION("a key that is not the admin key is PERMISSION_DENIED") {
    ensemble::Client stranger({.socket_path = (d.dir / "api.sock").string(),
                               .auth_seed = ensemble::Seed::generate()});
    auto svc = stranger.service("stranger");
    try {
      svc->start();
      FAIL("registered with a foreign key");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::PERMISSION_DENIED);
      CHECK(e.daemon_message() == "unauthorized public key");
    }
  }

  SECTION("nothing listening is UNAVAILABLE") {
    ensemble::Client nowhere({.socket_path = (d.dir / "nobody-here.sock").string(), .auth_seed = admin_seed()});
    auto svc = nowhere.service("lonely");
    try {
      svc->start();
      FAIL("registered with no daemon");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::UNAVAILABLE);
    }
  }
}

TEST_CASE("a daemon without a registry answers UNIMPLEMENTED") {
  test_support::TempDir dir;
  DaemonDoubleOptions o;
  o.unix_socket = (dir / "api.sock").string();
  o.registry_enabled = false;
  DaemonDouble daemon(o);
  ensemble::Client client({.socket_path = o.unix_socket});
  auto svc = client.service("anything");
  try {
    svc->start();
    FAIL("registered on a daemon without a registry");
  } catch (const ensemble::RegistrationError& e) {
    CHECK(e.code() == grpc::StatusCode::UNIMPLEMENTED);
    CHECK(e.daemon_message() == "service registry not configured on this daemon");
  }
}

TEST_CASE("a bad manifest is refused before any I/O, naming the field") {
  Daemon d;
  auto client = d.unix_client();
  CHECK_THROWS_AS(client.service("Bad Name"), ensemble::ConfigError);
  CHECK_THROWS_AS(client.service(""), ensemble::ConfigError);
  ensemble::ServiceOptions allow;
  allow.acl = ensemble::ACL::allowlist;
  allow.allowlist = {peer_address(1), "not-an-address"};
  CHECK_THROWS_WITH(client.service("allow", allow), Catch::Contains("allowlist[1]") &&
                                                        Catch::Contains("not-an-address"));
}

TEST_CASE("a supervised service registers with its token and no signature") {
  Daemon d;
  const auto token = d.daemon.mint_token("supervised");
  ensemble::Client client({.socket_path = (d.dir / "api.sock").string(), .service_token = token});
  auto svc = client.service("supervised");
  svc->start();
  CHECK(ensemble::is_valid_address(svc->address()));

  auto impostor = client.service("someone-else");
  CHECK_THROWS_AS(impostor->start(), ensemble::RegistrationError);
}

TEST_CASE("actions from 8 threads arrive complete and in per-thread order") {
  Daemon d;
  auto client = d.unix_client();
  auto svc = client.service("many-writers");
  svc->start();
  const auto peer = peer_address(9);
  constexpr int threads = 8;
  constexpr int per_thread = 500;
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) svc->send_message(peer, std::to_string(t) + ":" + std::to_string(i));
    });
  }
  for (auto& w : writers) w.join();
  REQUIRE(d.daemon.wait_for_actions("many-writers", threads * per_thread, 20s));
  std::map<int, int> next;
  for (const auto& a : d.daemon.actions("many-writers")) {
    const auto& text = a.send_message().text();
    const int t = std::stoi(text.substr(0, text.find(':')));
    const int i = std::stoi(text.substr(text.find(':') + 1));
    CHECK(i == next[t]);
    next[t] = i + 1;
  }
  for (int t = 0; t < threads; ++t) CHECK(next[t] == per_thread);
}

TEST_CASE("close() still writes what was queued, then ends the stream cleanly") {
  Daemon d;
  auto client = d.unix_client();
  auto svc = client.service("closer");
  svc->start();
  const auto peer = peer_address(5);
  for (int i = 0; i < 1000; ++i) svc->send_message(peer, "m" + std::to_string(i));
  svc->close();
  CHECK_THROWS_AS(svc->send_message(peer, "too late"), ensemble::ServiceClosedError);
  CHECK(svc->wait().ok());
  auto actions = d.daemon.actions("closer");
  REQUIRE(actions.size() == 1000);
  CHECK(actions.back().send_message().text() == "m999");
  CHECK(d.daemon.wait_unregistered("closer", 2s));
}

TEST_CASE("a burst of 10,000 events loses none while the handler keeps up") {
  Daemon d;
  auto client = d.unix_client();
  auto svc = client.service("burst");
  std::atomic<int> seen{0};
  std::atomic<bool> in_order{true};
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    if (m.text != std::to_string(seen.load())) in_order = false;
    seen.fetch_add(1);
  });
  svc->start();
  const auto peer = peer_address(6);
  // Injected in rounds no larger than the daemon's 256-deep queue, each after the handler
  // caught up: a reader that keeps up must see every one.
  constexpr int total = 10000;
  constexpr int round = 200;
  for (int sent = 0; sent < total; sent += round) {
    for (int i = sent; i < sent + round; ++i) d.daemon.inject_chat("burst", peer, std::to_string(i));
    REQUIRE(eventually([&] { return seen.load() == sent + round; }));
  }
  CHECK(seen.load() == total);
  CHECK(in_order.load());
  CHECK(d.daemon.dropped_events("burst") == 0);
}

TEST_CASE("recoverable daemon errors reach on_error, typed, and the stream stays open") {
  Daemon d;
  auto client = d.unix_client();
  ensemble::ServiceOptions capped;
  capped.max_payload_bytes = 16;
  // Two pass at once; the next token comes a minute later, long after this test.
  capped.rate_limit_per_minute = 1;
  capped.rate_limit_burst = 2;
  std::mutex mu;
  std::vector<ensemble::ServiceError> errors;
  std::atomic<int> delivered{0};
  auto svc = client.rpc_service("capped", capped);
  svc->on_error([&](const ensemble::ServiceError& e) {
    std::lock_guard lock(mu);
    errors.push_back(e);
  });
  svc->on_rpc([&](const ensemble::RpcMessage&) { delivered++; });
  svc->start();
  const auto big = peer_address(10);
  const auto chatty = peer_address(11);
  d.daemon.inject_bytes("capped", big, std::string(17, 'x'));
  for (int i = 0; i < 4; ++i) d.daemon.inject_bytes("capped", chatty, "ok");

  // Errors take the daemon's priority lane and may overtake the two accepted messages: wait
  // for all five outcomes.
  REQUIRE(eventually([&] {
    std::lock_guard lock(mu);
    return errors.size() >= 3 && delivered.load() >= 2;
  }));
  std::lock_guard lock(mu);
  CHECK(errors.size() == 3);
  CHECK(errors[0].kind == ensemble::ServiceError::Kind::payload_too_large);
  CHECK(errors[0].limit_bytes == 16);
  CHECK(errors[0].from_addr == big);
  CHECK(errors[1].kind == ensemble::ServiceError::Kind::rate_limited);
  CHECK(errors[1].retry_after.count() > 0);
  CHECK(errors[1].from_addr == chatty);
  CHECK(delivered.load() == 2);
  CHECK(svc->state() == ensemble::ServiceState::registered);
}

TEST_CASE("a bad action gets a plain recoverable error") {
  Daemon d;
  auto client = d.unix_client();
  std::mutex mu;
  std::vector<ensemble::ServiceError> errors;
  auto svc = client.service("plain-error");
  svc->on_error([&](const ensemble::ServiceError& e) {
    std::lock_guard lock(mu);
    errors.push_back(e);
  });
  svc->start();
  svc->accept_connection("no-such-request");
  REQUIRE(eventually([&] {
    std::lock_guard lock(mu);
    return !errors.empty();
  }));
  std::lock_guard lock(mu);
  CHECK(errors[0].kind == ensemble::ServiceError::Kind::plain);
  CHECK(errors[0].message == "no pending connection request \"no-such-request\"");
}

TEST_CASE("handlers cannot be installed after start, and actions need a registered service") {
  Daemon d;
  auto client = d.unix_client();
  auto svc = client.service("strict");
  CHECK_THROWS_AS(svc->send_message(peer_address(1), "early"), ensemble::ServiceClosedError);
  svc->start();
  CHECK_THROWS_AS(svc->on_chat([](const ensemble::ChatMessage&) {}), ensemble::Error);
  CHECK_THROWS_AS(svc->send_message("garbage", "x"), ensemble::AddressError);
  CHECK_THROWS_AS(svc->send_message(peer_address(1), ""), ensemble::InvalidArgumentError);
  CHECK_THROWS_AS(svc->start(), ensemble::Error);
}

TEST_CASE("many services share one client and one channel") {
  Daemon d;
  auto client = d.unix_client();
  std::vector<std::shared_ptr<ensemble::ChatService>> services;
  for (int i = 0; i < 20; ++i) {
    services.push_back(client.service("svc-" + std::to_string(i)));
    services.back()->start();
  }
  CHECK(client.open_calls() == 20);
  std::set<std::string> addresses;
  for (auto& s : services) addresses.insert(s->address());
  CHECK(addresses.size() == 20);
}

TEST_CASE("destroying the Client ends its streams without hanging") {
  Daemon d;
  std::shared_ptr<ensemble::ChatService> kept;
  std::atomic<int> closed{0};
  {
    auto client = d.unix_client();
    kept = client.service("outlives-client");
    kept->on_closed([&](const grpc::Status&) { closed++; });
    kept->start();
    auto dropped = client.service("dropped-with-client");
    dropped->start();
  }
  CHECK(closed.load() == 1);
  CHECK(kept->state() == ensemble::ServiceState::closed);
  CHECK(kept->wait().error_code() == grpc::StatusCode::CANCELLED);
  CHECK_THROWS_AS(kept->send_message(peer_address(2), "x"), ensemble::ServiceClosedError);
  CHECK(d.daemon.wait_unregistered("outlives-client", 2s));
}

TEST_CASE("releasing a service from inside its own handler is safe") {
  Daemon d;
  auto client = d.unix_client();
  auto svc = client.service("self-release");
  std::atomic<bool> released{false};
  auto* raw = svc.get();
  std::shared_ptr<ensemble::ChatService>* holder = &svc;
  raw->on_chat([&, holder](const ensemble::ChatMessage&) {
    holder->reset();  // the last user reference goes away on a gRPC thread
    released = true;
  });
  svc->start();
  d.daemon.inject_chat("self-release", peer_address(1), "bye");
  REQUIRE(eventually([&] { return released.load(); }));
  CHECK(d.daemon.wait_unregistered("self-release", 2s));
}

TEST_CASE("a queued action that never reached the wire is reported, not dropped") {
  Daemon d;
  auto client = d.unix_client();
  auto svc = client.service("unsent");
  std::atomic<int> unsent{0};
  svc->on_unsent([&](const ensemble::UnsentAction&) { unsent++; });
  svc->start();
  const auto peer = peer_address(12);
  for (int i = 0; i < 2000; ++i) svc->send_message(peer, "x" + std::to_string(i));
  svc->cancel();
  CHECK(svc->wait().error_code() == grpc::StatusCode::CANCELLED);
  // Every action was either handed to the transport or reported unsent; none vanished.
  const auto stats = svc->stats();
  CHECK(stats.actions_written + stats.actions_unsent == 2000);
  CHECK(stats.actions_unsent == static_cast<std::uint64_t>(unsent.load()));
  CHECK(d.daemon.actions("unsent").size() <= stats.actions_written);
}

}  // namespace test_service
