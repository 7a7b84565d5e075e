// Faults a long-running bot meets: the daemon killed mid-stream, a handler that blocks,
// destruction in every state and from every thread, auth mistakes, and a daemon restart
// with the opt-in reconnect policy. Each case asserts on what the library reported.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/polling.hpp"
#include "support/loopbackd_process.hpp"
#include "support/tempdir.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/resource.h>

namespace test_reliability {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;
using test_support::LoopbackdProcess;

using test_support::eventually;
using test_support::peer_address;

namespace {

std::chrono::microseconds process_cpu_time() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto tv = [](timeval t) { return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec); };
  return tv(usage.ru_utime) + tv(usage.ru_stime);
}

// Records every handler call and whether any came after on_closed.
struct EndWatch {
  std::atomic<bool> closed{false};
  std::atomic<int> after_close{0};
  void touch() {
    if (closed.load()) after_close++;
  }
  void install(ensemble::Service& s) {
    s.on_chat([this](const ensemble::ChatMessage&) { touch(); });
    s.on_error([this](const ensemble::ServiceError&) { touch(); });
    s.on_closed([this](const grpc::Status&) { closed = true; });
  }
};

}  // namespace

TEST_CASE("the daemon killed mid-stream with 1,000 actions queued") {
  if (!test_support::have_loopbackd()) {
    WARN("ENSEMBLE_LOOPBACKD not set (run through meson test); skipping");
    return;
  }
  test_support::TempDir dir;
  const auto socket = (dir / "api.sock").string();
  LoopbackdProcess daemon({"--api-socket", socket, "--loopback-dir", (dir / "rdv").string()});

  std::atomic<int> unsent{0};
  std::atomic<int> unsent_other_reason{0};
  EndWatch watch;
  {
    ensemble::Client client({.socket_path = socket});
    auto svc = client.service("doomed");
    watch.install(*svc);
    // Handlers run on gRPC threads and Catch2's assertions are not thread-safe: count here,
    // check on this thread.
    svc->on_unsent([&](const ensemble::UnsentAction& a) {
      if (a.reason.error_code() != grpc::StatusCode::UNAVAILABLE) unsent_other_reason++;
      unsent++;
    });
    svc->start();

    const auto peer = peer_address(1);
    const std::string text(512, 'q');
    for (int i = 0; i < 1000; ++i) svc->send_message(peer, text);
    CHECK(daemon.stop(SIGKILL) == -SIGKILL);

    const auto t0 = std::chrono::steady_clock::now();
    auto status = svc->wait_for(2s);
    REQUIRE(status.has_value());
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);

    const auto stats = svc->stats();
    CHECK(stats.actions_written + stats.actions_unsent == 1000);
    CHECK(stats.actions_unsent == static_cast<std::uint64_t>(unsent.load()));
    CHECK(unsent_other_reason.load() == 0);
    CHECK_THROWS_AS(svc->send_message(peer, "after"), ensemble::ServiceClosedError);
  }
  CHECK(watch.closed.load());
  CHECK(watch.after_close.load() == 0);
}

TEST_CASE("a blocking handler: no deadlock, no spinning, and every drop is counted") {
  test_support::TempDir dir;
  DaemonDoubleOptions o;
  o.unix_socket = (dir / "api.sock").string();
  DaemonDouble daemon(o);
  ensemble::Client client({.socket_path = o.unix_socket});
  auto svc = client.service("slow");

  std::atomic<int> seen{0};
  std::atomic<bool> release{false};
  svc->on_chat([&](const ensemble::ChatMessage&) {
    if (seen.fetch_add(1) == 0) {
      while (!release.load()) std::this_thread::sleep_for(1ms);
    }
  });
  svc->start();

  const auto peer = peer_address(2);
  int injected = 1;
  daemon.inject_chat("slow", peer, "first");
  REQUIRE(eventually([&] { return seen.load() == 1; }));
  // The library reads ahead while the handler is stuck, so the loss happens in its own
  // bounded queue (counted) rather than in the daemon's 256-deep one; keep sending until one
  // of them has overflowed, whatever the transport buffered.
  const std::string text(1024, 'x');
  auto lost = [&] { return daemon.dropped_events("slow") + svc->stats().events_dropped; };
  while (lost() == 0 && injected < 100'000) {
    daemon.inject_chat("slow", peer, text);
    ++injected;
  }
  REQUIRE(lost() > 0);
  for (int i = 0; i < 100; ++i, ++injected) daemon.inject_chat("slow", peer, text);

  // While the handler is stuck, the library must not burn CPU (no busy retry loop): the
  // only work left is the handler's own 1 ms sleep.
  const auto cpu0 = process_cpu_time();
  std::this_thread::sleep_for(500ms);
  const auto cpu_used = process_cpu_time() - cpu0;
  CHECK(cpu_used < 250ms);

  // Other threads can still act on the service while its reader is blocked.
  svc->send_message(peer, "still writable");
  REQUIRE(daemon.wait_for_actions("slow", 1, 2s));

  release = true;
  REQUIRE(eventually([&] { return seen.load() + static_cast<int>(lost()) == injected; }));
  // Every event is accounted for: handled, dropped by the library (counted in stats and
  // reported) or dropped by the daemon, as the README's backpressure section says.
  CHECK(lost() > 0);
  CHECK(seen.load() < injected);
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("services and clients destroyed in every state, from any thread") {
  test_support::TempDir dir;
  DaemonDoubleOptions o;
  o.unix_socket = (dir / "api.sock").string();
  DaemonDouble daemon(o);
  const ensemble::ClientOptions options{.socket_path = o.unix_socket};

  SECTION("a service never started") {
    ensemble::Client client(options);
    auto svc = client.service("never");
    svc.reset();
    CHECK(client.open_calls() == 0);
  }
  SECTION("a service released while registering") {
    ensemble::Client client(options);
    for (int i = 0; i < 20; ++i) {
      auto svc = client.service("racing-" + std::to_string(i));
      auto registered = svc->start_async();
      svc.reset();  // cancels and waits for the end, whatever the registration did
    }
    CHECK(client.open_calls() == 0);
  }
  SECTION("a streaming service released on another thread") {
    ensemble::Client client(options);
    auto svc = client.service("elsewhere");
    svc->start();
    std::thread([s = std::move(svc)]() mutable { s.reset(); }).join();
    CHECK(client.open_calls() == 0);
    CHECK(daemon.wait_unregistered("elsewhere", 2s));
  }
  SECTION("a service released after its end") {
    ensemble::Client client(options);
    auto svc = client.service("ended");
    svc->start();
    svc->close();
    svc->wait();
    svc.reset();
    CHECK(client.open_calls() == 0);
  }
  SECTION("a Client destroyed while a service registers") {
    std::shared_ptr<ensemble::ChatService> svc;
    {
      ensemble::Client client(options);
      svc = client.service("orphan");
      auto registered = svc->start_async();
    }
    CHECK(svc->state() == ensemble::ServiceState::closed);
  }
  SECTION("a Client destroyed on another thread while streaming") {
    auto client = std::make_unique<ensemble::Client>(options);
    auto svc = client->service("cross-thread");
    svc->start();
    std::thread([c = std::move(client)]() mutable { c.reset(); }).join();
    CHECK(svc->wait().error_code() == grpc::StatusCode::CANCELLED);
  }
  SECTION("a Client destroyed from inside a handler") {
    auto client = std::make_unique<ensemble::Client>(options);
    auto svc = client->service("inside");
    std::atomic<bool> done{false};
    svc->on_chat([&](const ensemble::ChatMessage&) {
      client.reset();  // on a gRPC thread: cancels without waiting
      done = true;
    });
    svc->start();
    daemon.inject_chat("inside", peer_address(3), "end it");
    REQUIRE(eventually([&] { return done.load(); }));
    CHECK(svc->wait_for(2s).has_value());
  }
}

TEST_CASE("auth mistakes give typed errors that say what to fix") {
  test_support::TempDir dir;
  const auto admin = ensemble::Seed::generate();
  DaemonDoubleOptions o;
  o.unix_socket = (dir / "api.sock").string();
  o.admin_key = ensemble::Signer(admin).public_key();
  std::atomic<int> skew_minutes{0};
  o.clock = [&] { return std::chrono::system_clock::now() + std::chrono::minutes(skew_minutes.load()); };
  DaemonDouble daemon(o);

  auto failure = [&](std::optional<ensemble::Seed> seed) -> std::pair<grpc::StatusCode, std::string> {
    ensemble::Client client({.socket_path = o.unix_socket, .auth_seed = std::move(seed)});
    try {
      client.connect(peer_address(4));
    } catch (const ensemble::RpcError& e) {
      return {e.code(), e.what()};
    }
    return {grpc::StatusCode::OK, ""};
  };

  auto [unsigned_code, unsigned_text] = failure(std::nullopt);
  CHECK(unsigned_code == grpc::StatusCode::UNAUTHENTICATED);
  CHECK_THAT(unsigned_text, Catch::Contains("auth_seed"));

  auto [wrong_code, wrong_text] = failure(ensemble::Seed::generate());
  CHECK(wrong_code == grpc::StatusCode::PERMISSION_DENIED);
  CHECK_THAT(wrong_text, Catch::Contains("not the daemon's admin key"));

  skew_minutes = 10;
  auto [skew_code, skew_text] = failure(admin);
  CHECK(skew_code == grpc::StatusCode::UNAUTHENTICATED);
  CHECK_THAT(skew_text, Catch::Contains("timestamp too old") && Catch::Contains("clock"));

  skew_minutes = 0;
  CHECK(failure(admin).first == grpc::StatusCode::OK);
}

TEST_CASE("reconnect: a restarted daemon gets the service back, same address, events flowing") {
  if (!test_support::have_loopbackd()) {
    WARN("ENSEMBLE_LOOPBACKD not set (run through meson test); skipping");
    return;
  }
  test_support::TempDir dir;
  const auto socket = (dir / "api.sock").string();
  const auto args = test_support::restartable_daemon_args(dir.path());
  auto daemon = std::make_unique<LoopbackdProcess>(args);

  ensemble::Client client({.socket_path = socket});
  ensemble::ServiceOptions options;
  options.reconnect.enabled = true;
  options.reconnect.initial_backoff = 50ms;
  options.reconnect.max_backoff = 400ms;
  std::mutex mu;
  std::vector<ensemble::ServiceState> states;
  std::vector<std::string> chats;
  auto svc = client.service("phoenix", options);
  svc->on_state([&](ensemble::ServiceState s) {
    std::lock_guard lock(mu);
    states.push_back(s);
  });
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    std::lock_guard lock(mu);
    chats.push_back(m.text);
  });
  svc->start();
  const auto address = svc->address();

  daemon->stop(SIGKILL);
  REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::reconnecting; }, 3s));
  // While the daemon is down, actions fail loudly instead of queueing forever.
  CHECK_THROWS_AS(svc->send_message(peer_address(5), "into the void"), ensemble::ServiceClosedError);

  daemon = std::make_unique<LoopbackdProcess>(args);
  REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::registered; }, 10s));
  CHECK(svc->address() == address);

  // Events reach the reconnected stream: a peer service on the new daemon chats to it.
  auto peer = client.service("peer");
  peer->start();
  peer->send_message(address, "welcome back");
  REQUIRE(eventually([&] {
    std::lock_guard lock(mu);
    return !chats.empty();
  }));
  {
    std::lock_guard lock(mu);
    CHECK(chats.front() == "welcome back");
    CHECK(std::find(states.begin(), states.end(), ensemble::ServiceState::reconnecting) != states.end());
    CHECK(states.back() == ensemble::ServiceState::registered);
  }
  svc->send_message(peer->address(), "thanks");
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("reconnect gives up after max_attempts and says so") {
  if (!test_support::have_loopbackd()) {
    WARN("ENSEMBLE_LOOPBACKD not set (run through meson test); skipping");
    return;
  }
  test_support::TempDir dir;
  const auto socket = (dir / "api.sock").string();
  LoopbackdProcess daemon({"--api-socket", socket, "--loopback-dir", (dir / "rdv").string()});
  ensemble::Client client({.socket_path = socket});
  ensemble::ServiceOptions options;
  options.reconnect.enabled = true;
  options.reconnect.initial_backoff = 20ms;
  options.reconnect.max_backoff = 40ms;
  options.reconnect.max_attempts = 3;
  auto svc = client.service("mortal", options);
  std::atomic<int> reconnecting{0};
  svc->on_state([&](ensemble::ServiceState s) {
    if (s == ensemble::ServiceState::reconnecting) reconnecting++;
  });
  svc->start();
  daemon.stop(SIGKILL);
  auto status = svc->wait_for(5s);
  REQUIRE(status.has_value());
  CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(svc->state() == ensemble::ServiceState::closed);
  CHECK(reconnecting.load() == 3);
}

}  // namespace test_reliability
