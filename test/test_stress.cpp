// Stress that ThreadSanitizer can judge (scripts/sanitize.sh tsan): the concurrency the
// library promises, exercised from many threads at once, with deterministic ends. Each case
// runs until an end condition (a count reached, an exception every thread must see), never
// for a fixed time, and asserts on the library's own accounting: every accepted action
// written or reported unsent, every event read delivered, dropped or discarded, no handler
// after an ending call returned. Under the sanitizers a handler that ran too late, or state
// shared without ordering, is a report as well as a failed check.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/loopbackd_process.hpp"
#include "support/polling.hpp"
#include "support/tempdir.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace test_stress {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;
using test_support::eventually;
using test_support::peer_address;

namespace {

// The user's executor as a pool of two threads, so consecutive drain tasks of one service
// may land on different threads. Runs what is left when destroyed; declared before the
// Client, it outlives every service.
class Pool {
 public:
  Pool() {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { run(); });
  }
  ~Pool() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  std::function<void(std::function<void()>)> executor() {
    return [this](std::function<void()> task) {
      {
        std::lock_guard lock(mu_);
        tasks_.push_back(std::move(task));
      }
      cv_.notify_one();
    };
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !tasks_.empty() || stopping_; });
      if (tasks_.empty()) return;
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

struct Daemon {
  test_support::TempDir dir;
  DaemonDouble daemon{DaemonDoubleOptions{.unix_socket = (dir / "api.sock").string()}};
  ensemble::ClientOptions client_options() const { return {.socket_path = daemon.unix_socket_path()}; }
};

// Threads that inject chats from distinct peers into `service` until stopped.
class Injectors {
 public:
  Injectors(DaemonDouble& daemon, std::string service, int count) {
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, &daemon, service, from = peer_address(static_cast<std::uint8_t>(40 + i))] {
        while (!stop_.load()) {
          if (daemon.inject_chat(service, from, "load")) ++injected_;
        }
      });
    }
  }
  ~Injectors() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::uint64_t injected() const { return injected_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> injected_{0};
  std::vector<std::thread> threads_;
};

enum class End { close, cancel, daemon_stops };

}  // namespace

TEST_CASE("stress: sends from many threads while the stream ends") {
  const End end = GENERATE(End::close, End::cancel, End::daemon_stops);
  const int end_kind = static_cast<int>(end);
  CAPTURE(end_kind);
  Daemon d;
  std::atomic<std::uint64_t> unsent_reports{0};
  ensemble::Client client(d.client_options());
  auto sink = client.service("sink");  // pull mode: takes whatever arrives, never read
  sink->start();
  auto svc = client.service("sender");
  svc->on_unsent([&](const ensemble::UnsentAction&) { ++unsent_reports; });
  svc->start();

  // Every sender sends until the end makes send_message throw, so each one is still
  // sending when the stream ends, however fast the machine.
  constexpr int kSenders = 4;
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<int> stopped_by_close{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&, to = sink->address()] {
      for (;;) {
        try {
          svc->send_message(to, "burst");
          ++accepted;
        } catch (const ensemble::ServiceClosedError&) {
          ++stopped_by_close;
          return;
        }
        // Bounded memory: the queue waits for the writer past a few hundred actions.
        while (svc->queued() > 256 && svc->state() == ensemble::ServiceState::registered) {
          std::this_thread::yield();
        }
      }
    });
  }
  REQUIRE(eventually([&] { return svc->stats().actions_written >= 200; }, 20s));
  switch (end) {
    case End::close: svc->close(); break;
    case End::cancel: svc->cancel(); break;
    case End::daemon_stops: d.daemon.stop(); break;
  }
  for (auto& t : senders) t.join();
  const grpc::Status status = svc->wait();
  const ensemble::ServiceStats stats = svc->stats();

  CHECK(stopped_by_close == kSenders);
  // Each accepted action was written or reported unsent, once.
  CHECK(stats.actions_written + stats.actions_unsent == accepted.load());
  CHECK(unsent_reports.load() == stats.actions_unsent);
  switch (end) {
    case End::close:
      // Graceful: everything accepted before close() went out first.
      CHECK(status.ok());
      CHECK(stats.actions_unsent == 0);
      break;
    case End::cancel: CHECK(status.error_code() == grpc::StatusCode::CANCELLED); break;
    case End::daemon_stops: CHECK_FALSE(status.ok()); break;
  }
}

namespace {
enum class Ending { release, close, cancel, client_destroyed };
}  // namespace

TEST_CASE("stress: release, close(), cancel() and ~Client racing handlers") {
  const Ending ending = GENERATE(Ending::release, Ending::close, Ending::cancel, Ending::client_destroyed);
  const bool on_executor = GENERATE(false, true);
  const int ending_kind = static_cast<int>(ending);
  CAPTURE(ending_kind, on_executor);
  Daemon d;
  Pool pool;
  // What the handlers touch lives on the heap and is freed as soon as the ending call
  // returns: a handler that ran after that would be a use after free under ASan and a race
  // under TSan, besides the count below. Handlers of one service never overlap, so the
  // vector needs no lock of its own; TSan checks that promise too.
  auto seen = std::make_unique<std::vector<std::string>>();
  std::atomic<bool> ended{false};
  std::atomic<int> after_end{0};
  std::atomic<std::uint64_t> handled{0};
  std::optional<ensemble::Client> client;
  client.emplace(d.client_options());
  ensemble::ServiceOptions options;
  if (on_executor) options.executor = pool.executor();
  auto svc = client->service("racer", options);
  ensemble::Service* raw = svc.get();  // not the shared_ptr: that would be a cycle
  auto* log = seen.get();
  svc->on_chat([&, raw, log](const ensemble::ChatMessage& m) {
    if (ended.load()) ++after_end;
    log->push_back(m.text);
    ++handled;
    // An action from inside the handler, racing the end as well.
    try {
      raw->send_message(m.from_addr, "echo");
    } catch (const ensemble::ServiceClosedError&) {
    }
  });
  svc->on_error([&](const ensemble::ServiceError&) {
    if (ended.load()) ++after_end;
    ++handled;
  });
  svc->start();

  Injectors injectors(d.daemon, "racer", 2);
  REQUIRE(eventually([&] { return handled.load() >= 100; }, 20s));
  std::optional<ensemble::ServiceStats> stats;
  switch (ending) {
    case Ending::release: svc.reset(); break;
    case Ending::close:
      svc->close();
      CHECK(svc->wait().ok());
      stats = svc->stats();
      break;
    case Ending::cancel:
      svc->cancel();
      CHECK(svc->wait().error_code() == grpc::StatusCode::CANCELLED);
      stats = svc->stats();
      break;
    case Ending::client_destroyed:
      client.reset();
      stats = svc->stats();
      break;
  }
  ended = true;
  const std::uint64_t handled_at_end = handled.load();
  seen.reset();
  injectors.stop();

  CHECK(after_end == 0);
  CHECK(handled.load() == handled_at_end);
  if (stats) {
    // Every event read is accounted for, none is still queued, and each delivered one ran.
    CHECK(stats->events_queued == 0);
    CHECK(stats->events_received ==
          stats->events_delivered + stats->events_dropped + stats->events_discarded);
    CHECK(stats->events_delivered == handled_at_end);
  }
}

TEST_CASE("stress: next_event() from several threads while the service ends") {
  const End end = GENERATE(End::close, End::cancel, End::daemon_stops);
  const int end_kind = static_cast<int>(end);
  CAPTURE(end_kind);
  Daemon d;
  ensemble::Client client(d.client_options());
  auto svc = client.service("puller");  // no event handler: pull mode
  svc->start();
  Injectors injectors(d.daemon, "puller", 2);

  // Each puller takes events until the service has ended and its queue is empty.
  constexpr int kPullers = 3;
  std::atomic<std::uint64_t> chats{0};
  std::atomic<std::uint64_t> pulled{0};  // every event next_event() returned, not loss reports
  std::atomic<int> saw_end{0};
  std::vector<std::thread> pullers;
  for (int t = 0; t < kPullers; ++t) {
    pullers.emplace_back([&] {
      for (;;) {
        try {
          auto event = svc->next_event(20ms);
          if (!event || std::holds_alternative<ensemble::EventsDropped>(*event)) continue;
          ++pulled;
          if (std::holds_alternative<ensemble::ChatMessage>(*event)) ++chats;
        } catch (const ensemble::ServiceClosedError&) {
          ++saw_end;
          return;
        }
      }
    });
  }
  REQUIRE(eventually([&] { return chats.load() >= 200; }, 20s));
  switch (end) {
    case End::close: svc->close(); break;
    case End::cancel: svc->cancel(); break;
    case End::daemon_stops: d.daemon.stop(); break;
  }
  svc->wait();
  for (auto& t : pullers) t.join();
  injectors.stop();
  const auto stats = svc->stats();

  CHECK(saw_end == kPullers);
  CHECK(svc->events_queued() == 0);
  CHECK(stats.events_queued == 0);
  CHECK(stats.events_received ==
        stats.events_delivered + stats.events_dropped + stats.events_discarded);
  CHECK(stats.events_delivered == pulled.load());
}

TEST_CASE("stress: reconnect under traffic, the daemon killed and restarted twice") {
  if (!test_support::have_loopbackd()) {
    WARN("ENSEMBLE_LOOPBACKD not set (run through meson test); skipping");
    return;
  }
  test_support::TempDir dir;
  const auto socket = (dir / "api.sock").string();
  const auto args = test_support::restartable_daemon_args(dir.path());
  auto daemon = std::make_unique<test_support::LoopbackdProcess>(args);

  // Two services chat to each other from two threads each, through every kill and restart.
  struct Side {
    std::shared_ptr<ensemble::Service> svc;
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> received{0};
    std::atomic<std::uint64_t> unsent_reports{0};
  };
  Side alpha, beta;  // before the Client: the handlers count into them
  ensemble::Client client({.socket_path = socket});
  ensemble::ServiceOptions options;
  options.reconnect.enabled = true;
  options.reconnect.initial_backoff = 20ms;
  options.reconnect.max_backoff = 100ms;
  for (Side* side : {&alpha, &beta}) {
    side->svc = client.service(side == &alpha ? "alpha" : "beta", options);
    side->svc->on_chat([side](const ensemble::ChatMessage&) { ++side->received; });
    side->svc->on_unsent([side](const ensemble::UnsentAction&) { ++side->unsent_reports; });
    side->svc->start();
  }
  const std::string to_beta = beta.svc->address();
  const std::string to_alpha = alpha.svc->address();

  std::atomic<bool> stop{false};
  std::vector<std::thread> senders;
  for (int i = 0; i < 4; ++i) {
    Side& from = i % 2 == 0 ? alpha : beta;
    const std::string to = i % 2 == 0 ? to_beta : to_alpha;
    senders.emplace_back([&stop, &from, to] {
      while (!stop.load()) {
        if (from.svc->queued() > 64) {  // bounded memory while the daemon is away
          std::this_thread::sleep_for(1ms);
          continue;
        }
        try {
          from.svc->send_message(to, "traffic");
          ++from.accepted;
        } catch (const ensemble::ServiceClosedError&) {
          std::this_thread::sleep_for(1ms);  // reconnecting: actions are refused meanwhile
        }
      }
    });
  }
  auto traffic_flows = [&] {
    const auto a = alpha.received.load(), b = beta.received.load();
    return eventually([&] { return alpha.received.load() >= a + 20 && beta.received.load() >= b + 20; }, 20s);
  };
  auto both_registered = [&] {
    return eventually([&] {
      return alpha.svc->state() == ensemble::ServiceState::registered &&
             beta.svc->state() == ensemble::ServiceState::registered;
    }, 20s);
  };
  REQUIRE(traffic_flows());
  for (int round = 0; round < 2; ++round) {
    CAPTURE(round);
    daemon->stop(SIGKILL);
    daemon = std::make_unique<test_support::LoopbackdProcess>(args);
    REQUIRE(both_registered());
    REQUIRE(traffic_flows());
  }
  stop = true;
  for (auto& t : senders) t.join();
  for (Side* side : {&alpha, &beta}) {
    side->svc->close();
    CHECK(side->svc->wait().ok());
    const auto stats = side->svc->stats();
    CHECK(stats.actions_written + stats.actions_unsent == side->accepted.load());
    CHECK(side->unsent_reports.load() == stats.actions_unsent);
  }
  CHECK(alpha.svc->address() == to_alpha);  // the same identity after every restart
  CHECK(beta.svc->address() == to_beta);
}

}  // namespace test_stress
