// Stopping a service (issue 21): drain() in handler and pull mode, and close(), cancel() and
// stop tokens ending every blocking call promptly at any moment (registering, waiting for a
// daemon that is not there, blocked in next_event() or wait()). Real Client, daemon double,
// Unix socket. A future's wait_for(…) only guards against a hang; no test asserts on time.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/polling.hpp"
#include "support/tempdir.hpp"
#include "support/thrown.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <future>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test_stopping {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

using test_support::eventually;
using test_support::peer_address;
using test_support::thrown;

namespace {

struct Fixture {
  test_support::TempDir dir;
  DaemonDouble daemon;
  explicit Fixture(DaemonDoubleOptions o = {}) : daemon(with_socket(std::move(o), dir)) {}
  static DaemonDoubleOptions with_socket(DaemonDoubleOptions o, const test_support::TempDir& dir) {
    o.unix_socket = (dir / "api.sock").string();
    return o;
  }
  ensemble::ClientOptions client_options() const { return {.socket_path = (dir / "api.sock").string()}; }
};

// Holds handlers until released (and releases them if the test fails first).
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> waiting{0};
  void wait() {
    ++waiting;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void release() {
    {
      std::lock_guard lock(mu);
      open = true;
    }
    cv.notify_all();
  }
  ~Gate() { release(); }
};

std::vector<std::string> replies_sent(const DaemonDouble& daemon, const std::string& service) {
  std::vector<std::string> out;
  for (const auto& a : daemon.actions(service)) {
    if (a.has_send_message()) out.push_back(a.send_message().text());
  }
  return out;
}

void check_counts_add_up(const ensemble::ServiceStats& s) {
  CAPTURE(s.events_received, s.events_delivered, s.events_dropped, s.events_discarded, s.events_queued);
  CHECK(s.events_received == s.events_delivered + s.events_dropped + s.events_discarded + s.events_queued);
}

// Runs `f` on a thread of its own; the future says how it ended.
template <class F>
auto on_thread(F f) {
  return std::async(std::launch::async, std::move(f));
}

}  // namespace

TEST_CASE("drain, handlers: turns in flight finish and reply, queued ones run, new ones are refused") {
  Fixture f;
  ensemble::ThreadPool pool(4);
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.executor = pool.executor();
  options.max_turns_in_flight = 4;
  auto svc = client.service("drainer", options);
  Gate gate;
  svc->on_chat([&](ensemble::ChatService& self, const ensemble::ChatMessage& m) {
    gate.wait();
    self.send_message(m.from_addr, "re: " + m.text);
  });
  svc->start();
  for (int p = 0; p < 4; ++p) REQUIRE(f.daemon.inject_chat("drainer", peer_address(static_cast<std::uint8_t>(20 + p)), "first"));
  for (int p = 0; p < 4; ++p) REQUIRE(f.daemon.inject_chat("drainer", peer_address(static_cast<std::uint8_t>(20 + p)), "second"));
  REQUIRE(eventually([&] { return gate.waiting.load() == 4 && svc->events_queued() == 4; }));

  svc->drain(30s);
  // Taken no more: counted, and a connection request is answered as the daemon would.
  REQUIRE(f.daemon.inject_chat("drainer", peer_address(30), "late"));
  const auto request = f.daemon.inject_connection_request("drainer", peer_address(31));
  REQUIRE_FALSE(request.empty());
  CHECK(f.daemon.wait_decision(request, 5s) == std::optional<std::string>("rejected: service stream closed"));
  CHECK(svc->state() == ensemble::ServiceState::registered);  // still open for the replies

  gate.release();
  const auto end = svc->wait_for(10s);
  REQUIRE(end.has_value());
  CHECK(end->ok());
  auto replies = replies_sent(f.daemon, "drainer");
  std::sort(replies.begin(), replies.end());
  CHECK(replies == std::vector<std::string>{"re: first", "re: first", "re: first", "re: first",
                                            "re: second", "re: second", "re: second", "re: second"});
  const auto s = svc->stats();
  CHECK(s.events_delivered == 8);
  CHECK(s.events_discarded == 2);
  CHECK(s.actions_unsent == 0);
  check_counts_add_up(s);
}

TEST_CASE("drain, handlers: at the grace's end what is still queued is discarded and answered") {
  Fixture f;
  ensemble::Client client(f.client_options());
  auto svc = client.service("graceful-end");
  std::atomic<int> handled{0};
  svc->on_chat([&](const ensemble::ChatMessage&) {
    std::this_thread::sleep_for(200ms);
    ++handled;
  });
  svc->on_connection_request([](const ensemble::ConnectionRequest&) { FAIL_CHECK("the request was not to be handled"); });
  svc->start();
  const auto peer = peer_address(40);
  for (int i = 0; i < 10; ++i) REQUIRE(f.daemon.inject_chat("graceful-end", peer, std::to_string(i)));
  const auto request = f.daemon.inject_connection_request("graceful-end", peer);
  REQUIRE(eventually([&] { return svc->stats().events_received == 11; }));

  svc->drain(300ms);
  const auto end = svc->wait_for(10s);
  REQUIRE(end.has_value());
  CHECK(end->ok());
  CHECK(f.daemon.wait_decision(request, 5s) == std::optional<std::string>("rejected: service stream closed"));
  const auto s = svc->stats();
  CHECK(s.events_delivered >= 1);  // the turn in flight finished
  CHECK(s.events_delivered < 11);
  CHECK(static_cast<std::uint64_t>(handled.load()) == s.events_delivered);
  CHECK(s.events_discarded == 11 - s.events_delivered);
  check_counts_add_up(s);
}

TEST_CASE("drain, pull mode: the taken turn finishes and replies, the queue is served, then the end") {
  Fixture f;
  ensemble::Client client(f.client_options());
  auto svc = client.service("pull-drain");
  svc->start();
  std::atomic<int> taken{0};
  std::atomic<bool> ended{false};
  auto consumer = on_thread([&] {
    try {
      while (auto event = svc->next_event(30s)) {
        if (auto* chat = std::get_if<ensemble::ChatMessage>(&*event)) {
          ++taken;
          std::this_thread::sleep_for(100ms);  // a slow turn
          svc->send_message(chat->from_addr, "re: " + chat->text);
        }
      }
    } catch (const ensemble::ServiceClosedError&) {
      ended = true;
    }
  });
  const auto peer = peer_address(41);
  for (int i = 0; i < 3; ++i) REQUIRE(f.daemon.inject_chat("pull-drain", peer, std::to_string(i)));
  // All three read (so that the drain serves them) and the first taken.
  REQUIRE(eventually([&] { return svc->stats().events_received == 3 && taken.load() >= 1; }));
  svc->drain(30s);
  REQUIRE(f.daemon.inject_chat("pull-drain", peer, "late"));
  REQUIRE(consumer.wait_for(10s) == std::future_status::ready);
  consumer.get();
  CHECK(ended.load());
  const auto end = svc->wait_for(10s);
  REQUIRE(end.has_value());
  CHECK(end->ok());
  CHECK(replies_sent(f.daemon, "pull-drain") == std::vector<std::string>{"re: 0", "re: 1", "re: 2"});
  const auto s = svc->stats();
  CHECK(s.events_delivered == 3);
  CHECK(s.events_discarded == 1);
  check_counts_add_up(s);
}

TEST_CASE("pull mode: cancel() discards what is queued; next_event() on a service closed before start()") {
  Fixture f;
  ensemble::Client client(f.client_options());
  auto svc = client.service("pull-cancel");
  svc->start();
  for (int i = 0; i < 5; ++i) REQUIRE(f.daemon.inject_chat("pull-cancel", peer_address(42), std::to_string(i)));
  REQUIRE(eventually([&] { return svc->stats().events_received == 5; }));
  svc->cancel();
  CHECK_THROWS_AS(svc->next_event(5s), ensemble::ServiceClosedError);
  CHECK(svc->stats().events_discarded == 5);
  check_counts_add_up(svc->stats());

  auto never = client.service("pull-never");
  never->close();
  CHECK_THAT(thrown<ensemble::ServiceClosedError>([&] { never->next_event(1ms); }),
             Catch::Contains("next_event: service \"pull-never\" was closed before start()"));
}

TEST_CASE("stop at any moment: close(), drain() and cancel() while registering end start() without the daemon") {
  DaemonDoubleOptions slow;
  slow.registration_delay = 10min;  // as a daemon whose Tor takes its time publishing
  Fixture f(slow);
  ensemble::Client client(f.client_options());
  for (const std::string how : {"close", "drain", "cancel"}) {
    CAPTURE(how);
    auto svc = client.service("held-" + how);
    std::atomic<bool> closed_called{false};
    svc->on_closed([&](const grpc::Status&) { closed_called = true; });
    auto start = on_thread([&] { svc->start(); });
    REQUIRE(eventually([&] { return f.daemon.wait_registered("held-" + how, 0ms) || svc->state() == ensemble::ServiceState::registering; }));
    std::this_thread::sleep_for(50ms);  // the manifest is with the daemon, which holds it
    if (how == "close") svc->close();
    if (how == "drain") svc->drain(10s);
    if (how == "cancel") svc->cancel();
    REQUIRE(start.wait_for(10s) == std::future_status::ready);
    try {
      start.get();
      FAIL("start() returned");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::CANCELLED);
      if (how != "cancel") CHECK_THAT(e.what(), Catch::Contains("close() was called before the daemon registered service"));
    }
    const auto end = svc->wait();
    CHECK(end.error_code() == (how == "cancel" ? grpc::StatusCode::CANCELLED : grpc::StatusCode::OK));
    CHECK(closed_called.load());
  }
}

TEST_CASE("stop at any moment: while start() waits for a daemon that is not there") {
  test_support::TempDir dir;
  ensemble::Client client({.socket_path = (dir / "nobody.sock").string()});
  for (const std::string how : {"close", "cancel"}) {
    CAPTURE(how);
    ensemble::ServiceOptions options;
    options.wait_for_daemon = true;
    options.reconnect.initial_backoff = 50ms;
    options.reconnect.max_backoff = 200ms;
    auto svc = client.service("patient-" + how, options);
    auto start = on_thread([&] { svc->start(); });
    REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::reconnecting; }));
    if (how == "close") svc->close();
    else svc->cancel();
    REQUIRE(start.wait_for(10s) == std::future_status::ready);
    const auto said = thrown<ensemble::RegistrationError>([&] { start.get(); });
    CHECK_THAT(said, Catch::Contains("closed while waiting to register service \"patient-" + how + "\" again"));
    CHECK_THAT(said, Catch::Contains("the last attempt: UNAVAILABLE"));
    CHECK(svc->wait().error_code() == (how == "cancel" ? grpc::StatusCode::CANCELLED : grpc::StatusCode::OK));
  }
}

TEST_CASE("stop at any moment: next_event() and wait() blocked on another thread") {
  Fixture f;
  ensemble::Client client(f.client_options());
  for (const std::string how : {"close", "cancel"}) {
    CAPTURE(how);
    auto svc = client.service("blocked-" + how);
    svc->start();
    auto pulling = on_thread([&] {
      try {
        while (svc->next_event(10min)) {
        }
      } catch (const ensemble::ServiceClosedError&) {
        return true;
      }
      return false;
    });
    auto waiting = on_thread([&] { return svc->wait(); });
    std::this_thread::sleep_for(50ms);
    if (how == "close") svc->close();
    else svc->cancel();
    REQUIRE(pulling.wait_for(10s) == std::future_status::ready);
    REQUIRE(waiting.wait_for(10s) == std::future_status::ready);
    CHECK(pulling.get());
    CHECK(waiting.get().error_code() == (how == "cancel" ? grpc::StatusCode::CANCELLED : grpc::StatusCode::OK));
  }
}

TEST_CASE("stop_on: a stop token ends the service wherever it is") {
  SECTION("stopped before start(): start() refuses") {
    Fixture f;
    ensemble::Client client(f.client_options());
    std::stop_source stop;
    auto svc = client.service("token-early");
    svc->stop_on(stop.get_token(), 1s);
    stop.request_stop();
    CHECK_THROWS_AS(svc->start(), ensemble::ServiceClosedError);
    CHECK(svc->wait().ok());
  }
  SECTION("already stopped when given: the same") {
    Fixture f;
    ensemble::Client client(f.client_options());
    std::stop_source stop;
    stop.request_stop();
    auto svc = client.service("token-stopped");
    svc->stop_on(stop.get_token(), 1s);
    CHECK(svc->state() == ensemble::ServiceState::closed);
  }
  SECTION("while registering: start() throws CANCELLED at once") {
    DaemonDoubleOptions slow;
    slow.registration_delay = 10min;
    Fixture f(slow);
    ensemble::Client client(f.client_options());
    std::stop_source stop;
    auto svc = client.service("token-registering");
    svc->stop_on(stop.get_token(), 1s);
    auto start = on_thread([&] { svc->start(); });
    REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::registering; }));
    std::this_thread::sleep_for(50ms);
    stop.request_stop();
    REQUIRE(start.wait_for(10s) == std::future_status::ready);
    CHECK_THROWS_AS(start.get(), ensemble::RegistrationError);
    CHECK(svc->wait().ok());
  }
  SECTION("registered with a turn in flight: it drains") {
    Fixture f;
    ensemble::ThreadPool pool(1);
    ensemble::Client client(f.client_options());
    std::stop_source stop;
    auto svc = client.service("token-drain", {.executor = pool.executor()});
    Gate gate;
    svc->on_chat([&](ensemble::ChatService& self, const ensemble::ChatMessage& m) {
      gate.wait();
      self.send_message(m.from_addr, "done: " + m.text);
    });
    svc->stop_on(stop.get_token(), 10s);
    svc->start();
    REQUIRE(f.daemon.inject_chat("token-drain", peer_address(43), "work"));
    REQUIRE(eventually([&] { return gate.waiting.load() == 1; }));
    stop.request_stop();
    CHECK(svc->state() == ensemble::ServiceState::registered);
    gate.release();
    const auto end = svc->wait_for(10s);
    REQUIRE(end.has_value());
    CHECK(end->ok());
    CHECK(replies_sent(f.daemon, "token-drain") == std::vector<std::string>{"done: work"});
  }
}

TEST_CASE("SignalStop: SIGTERM and SIGINT become a stop request on the watcher thread") {
  for (int sig : {SIGTERM, SIGINT}) {
    CAPTURE(sig);
    ensemble::SignalStop stop;
    CHECK_THROWS_AS(ensemble::SignalStop(), ensemble::Error);  // one per process
    std::atomic<bool> called{false};
    std::thread::id ran_on;
    std::stop_callback on_stop(stop.token(), [&] {
      ran_on = std::this_thread::get_id();
      called = true;
    });
    CHECK(stop.signal() == 0);
    REQUIRE(::kill(::getpid(), sig) == 0);  // to the process, as a supervisor sends it
    REQUIRE(eventually([&] { return called.load(); }, 5s));
    CHECK(stop.token().stop_requested());
    CHECK(stop.signal() == sig);
    CHECK(ran_on != std::this_thread::get_id());
  }
  CHECK_THROWS_AS(ensemble::SignalStop({.signals = {0}}), ensemble::Error);
}

// The fault behind slow_bot ignoring SIGTERM (its pool's threads were older than its
// SignalStop): a signal from another process makes the signalfd readable, the kernel then
// hands it to an older thread's handler, and a blocking read of the signalfd never
// returned. Every round gives that race a chance (before the fix it was lost within 300).
TEST_CASE("SignalStop: threads older than it take signals through the handler, and the watcher stays free") {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::vector<std::thread> older;  // signals unblocked: started before any SignalStop
  for (int i = 0; i < 4; ++i) {
    older.emplace_back([&] {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return done; });
    });
  }
  const pid_t self = ::getpid();
  for (int round = 0; round < 300; ++round) {
    CAPTURE(round);
    ensemble::SignalStop stop({.signals = {SIGUSR1}});
    const pid_t sender = ::fork();  // as a supervisor: the signal comes from another process
    REQUIRE(sender >= 0);
    if (sender == 0) {
      ::kill(self, SIGUSR1);
      ::_exit(0);
    }
    ::waitpid(sender, nullptr, 0);
    REQUIRE(eventually([&] { return stop.token().stop_requested(); }, 5s));
    CHECK(stop.signal() == SIGUSR1);
  }
  {
    std::lock_guard lock(mu);
    done = true;
  }
  cv.notify_all();
  for (auto& t : older) t.join();
}

}  // namespace test_stopping
