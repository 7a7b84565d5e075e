// Event delivery (issue 15): read-ahead into a bounded queue, the exact count of what that
// queue dropped, handlers on the user's executor, the pull API, and the end of a service
// with events still queued. Real Client, daemon double, Unix socket. Handlers run on gRPC
// or executor threads, so they only record; the test thread asserts.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/polling.hpp"
#include "support/tempdir.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace test_event_delivery {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

using test_support::eventually;
using test_support::peer_address;

namespace {

struct Fixture {
  test_support::TempDir dir;
  DaemonDouble daemon{options(dir)};
  static DaemonDoubleOptions options(const test_support::TempDir& dir) {
    DaemonDoubleOptions o;
    o.unix_socket = (dir / "api.sock").string();
    return o;
  }
  ensemble::ClientOptions client_options() const { return {.socket_path = (dir / "api.sock").string()}; }
};

// What the handlers saw, in order: "chat:<text>", "dropped:<n>", "error:<message>".
struct Log {
  std::mutex mu;
  std::vector<std::string> entries;
  std::atomic<int> chats{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<int> inside{0};       // handlers running right now
  std::atomic<int> max_inside{0};   // most ever at once (must stay 1)
  void add(std::string entry) {
    const int now = ++inside;
    int seen = max_inside.load();
    while (now > seen && !max_inside.compare_exchange_weak(seen, now)) {
    }
    {
      std::lock_guard lock(mu);
      entries.push_back(std::move(entry));
    }
    --inside;
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mu);
    return entries;
  }
};

// A latch a handler can block on.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void wait() {
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
};

// Opens a gate when the test leaves its scope, even on a failed REQUIRE: declared after the
// service, so a handler blocked on the gate cannot keep the service's release waiting.
struct OpenOnExit {
  Gate& gate;
  ~OpenOnExit() { gate.release(); }
};

// Injects chats "from".."to-1" in chunks the reader can take: an in-process injector outruns
// any stream reader, and then the daemon's own queue drops, which these tests are not about.
template <class Service>
void inject_paced(DaemonDouble& daemon, const std::string& name, Service& svc, int from, int to) {
  const auto peer = peer_address(9);
  const auto base = svc.stats().events_received;
  for (int i = from; i < to; i += 50) {
    const int end = std::min(i + 50, to);
    for (int j = i; j < end; ++j) REQUIRE(daemon.inject_chat(name, peer, std::to_string(j)));
    const bool read = eventually(
        [&] { return svc.stats().events_received == base + static_cast<std::uint64_t>(end - from); }, 5s);
    CAPTURE(i, svc.stats().events_received, daemon.dropped_events(name));
    REQUIRE(read);
  }
}

// A plain worker thread as the user's executor. Declared before the Client, so it outlives
// every service and runs (or drops) whatever tasks are left after they have all ended.
struct Worker {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;
  bool stopping = false;
  bool paused = false;
  std::atomic<int> ran{0};
  std::thread thread{[this] { run(); }};

  ~Worker() {
    {
      std::lock_guard lock(mu);
      stopping = true;
      paused = false;
    }
    cv.notify_all();
    thread.join();
  }
  std::function<void(std::function<void()>)> executor() {
    return [this](std::function<void()> task) {
      {
        std::lock_guard lock(mu);
        tasks.push_back(std::move(task));
      }
      cv.notify_all();
    };
  }
  void pause(bool p) {
    {
      std::lock_guard lock(mu);
      paused = p;
    }
    cv.notify_all();
  }
  void run() {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return (!tasks.empty() && !paused) || stopping; });
      if (tasks.empty() && stopping) return;
      if (paused) continue;
      auto task = std::move(tasks.front());
      tasks.pop_front();
      lock.unlock();
      task();
      ++ran;
      lock.lock();
    }
  }
};

std::vector<std::string> chat_texts(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back("chat:" + std::to_string(i));
  return out;
}

}  // namespace

TEST_CASE("read-ahead: the service reads on while a slow handler works, in the daemon's order") {
  Fixture f;
  ensemble::Client client(f.client_options());
  auto svc = client.service("slowpoke");
  Log log;
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    std::this_thread::sleep_for(1ms);  // a database call, say
    log.add("chat:" + m.text);
    ++log.chats;
  });
  svc->start();

  const int n = 1500;
  // Each chunk is read long before the handler (1 ms an event) could have taken it:
  // reading does not wait for the handler.
  inject_paced(f.daemon, "slowpoke", *svc, 0, n);
  CHECK(log.chats.load() < n / 2);
  CHECK(svc->events_queued() > 0);

  REQUIRE(eventually([&] { return log.chats.load() == n; }, 30s));
  CHECK(log.snapshot() == chat_texts(0, n));
  CHECK(log.max_inside.load() == 1);
  CHECK(f.daemon.dropped_events("slowpoke") == 0);
  CHECK(svc->stats().events_dropped == 0);
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("a full read-ahead queue drops the oldest, and says exactly how many") {
  Fixture f;
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.event_queue_capacity = 16;
  auto svc = client.service("flooded", options);
  Log log;
  Gate gate;
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    if (m.text == "0") gate.wait();
    log.add("chat:" + m.text);
    ++log.chats;
  });
  svc->on_events_dropped([&](std::uint64_t n) {
    log.add("dropped:" + std::to_string(n));
    log.dropped += n;
  });
  svc->start();
  OpenOnExit opener{gate};

  const int n = 200;  // under the daemon's 256: only the library's queue can drop
  const auto peer = peer_address(2);
  for (int i = 0; i < n; ++i) REQUIRE(f.daemon.inject_chat("flooded", peer, std::to_string(i)));
  // All read while the handler is stuck on "0": the daemon dropped nothing, the library
  // kept the newest 16.
  REQUIRE(eventually([&] { return svc->stats().events_received == static_cast<std::uint64_t>(n); }));
  CHECK(f.daemon.dropped_events("flooded") == 0);
  CHECK(svc->events_queued() == 16);
  CHECK(svc->stats().events_dropped == static_cast<std::uint64_t>(n - 1 - 16));

  gate.release();
  REQUIRE(eventually([&] { return log.chats.load() == 1 + 16; }));
  std::this_thread::sleep_for(50ms);  // nothing else comes
  std::vector<std::string> expected{"chat:0", "dropped:" + std::to_string(n - 1 - 16)};
  for (auto& s : chat_texts(n - 16, n)) expected.push_back(s);
  CHECK(log.snapshot() == expected);
  // The count reported equals the events lost, exactly.
  CHECK(log.dropped.load() == svc->stats().events_dropped);
  CHECK(log.chats.load() + log.dropped.load() == static_cast<std::uint64_t>(n));
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("the read-ahead queue is bounded in bytes too") {
  Fixture f;
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.event_queue_max_bytes = 20'000;
  auto svc = client.service("heavy", options);
  Gate gate;
  std::atomic<int> chats{0};
  std::atomic<std::uint64_t> reported{0};
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    if (m.text.rfind("0 ", 0) == 0) gate.wait();
    ++chats;
  });
  svc->on_events_dropped([&](std::uint64_t n) { reported += n; });
  svc->start();
  OpenOnExit opener{gate};

  const int n = 50;  // 50 KB of text, under the daemon's 256 events
  for (int i = 0; i < n; ++i) {
    std::string text = std::to_string(i) + " ";
    text.resize(1000, '.');
    REQUIRE(f.daemon.inject_chat("heavy", peer_address(8), text));
  }
  REQUIRE(eventually([&] { return svc->stats().events_received == static_cast<std::uint64_t>(n); }));
  const auto queued = svc->events_queued();
  CHECK(queued >= 10);
  CHECK(queued * 1000 <= 20'000);
  CHECK(svc->stats().events_dropped == n - 1 - queued);
  gate.release();
  REQUIRE(eventually([&] { return chats.load() == static_cast<int>(1 + queued); }));
  CHECK(eventually([&] { return reported.load() == svc->stats().events_dropped; }));
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("event_queue_capacity 0 is a ConfigError") {
  Fixture f;
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.event_queue_capacity = 0;
  CHECK_THROWS_AS(client.service("zero", options), ensemble::ConfigError);
}

TEST_CASE("handlers on the user's executor: its thread, one at a time, in order, and a blocked handler does not stop reading") {
  Fixture f;
  Worker worker;
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.executor = worker.executor();
  auto svc = client.service("delegated", options);
  Log log;
  Gate gate;
  std::atomic<int> elsewhere{0};
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    if (std::this_thread::get_id() != worker.thread.get_id()) ++elsewhere;
    if (m.text == "0") gate.wait();
    log.add("chat:" + m.text);
    ++log.chats;
  });
  svc->start();
  OpenOnExit opener{gate};

  const int n = 2000;
  const auto peer = peer_address(3);
  inject_paced(f.daemon, "delegated", *svc, 0, n);
  CHECK(log.chats.load() == 0);  // still stuck in "0"
  // Actions from another thread still go out.
  svc->send_message(peer, "still here");
  CHECK(f.daemon.wait_for_actions("delegated", 1, 2s));

  gate.release();
  REQUIRE(eventually([&] { return log.chats.load() == n; }));
  CHECK(log.snapshot() == chat_texts(0, n));
  CHECK(log.max_inside.load() == 1);
  CHECK(elsewhere.load() == 0);
  CHECK(svc->stats().events_dropped == 0);
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("an executor that refuses the task: the events are delivered anyway, in order") {
  Fixture f;
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  std::atomic<int> refused{0};
  options.executor = [&](std::function<void()>) {
    ++refused;
    throw std::runtime_error("shutting down");
  };
  auto svc = client.service("refused", options);
  Log log;
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    log.add("chat:" + m.text);
    ++log.chats;
  });
  svc->start();
  inject_paced(f.daemon, "refused", *svc, 0, 100);
  REQUIRE(eventually([&] { return log.chats.load() == 100; }));
  CHECK(log.snapshot() == chat_texts(0, 100));
  CHECK(refused.load() > 0);
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("pull mode: next_event with timeouts, typed events in order, then the end") {
  Fixture f;
  ensemble::Client client(f.client_options());
  auto svc = client.service("puller");
  CHECK_THROWS_AS(svc->next_event(1ms), ensemble::ServiceClosedError);  // not started
  svc->start();

  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(svc->next_event(100ms).has_value());
  CHECK(std::chrono::steady_clock::now() - t0 >= 100ms);

  const auto peer = peer_address(4);
  REQUIRE(f.daemon.inject_chat("puller", peer, "hello"));
  const auto request_id = f.daemon.inject_connection_request("puller", peer);
  REQUIRE_FALSE(request_id.empty());
  REQUIRE(f.daemon.inject_event("puller", "from_the_future", "xyz"));

  auto first = svc->next_event(5s);
  REQUIRE(first.has_value());
  REQUIRE(std::holds_alternative<ensemble::ChatMessage>(*first));
  CHECK(std::get<ensemble::ChatMessage>(*first).text == "hello");
  CHECK(std::get<ensemble::ChatMessage>(*first).from_addr == peer);
  auto second = svc->next_event(5s);
  REQUIRE(second.has_value());
  REQUIRE(std::holds_alternative<ensemble::ConnectionRequest>(*second));
  CHECK(std::get<ensemble::ConnectionRequest>(*second).request_id == request_id);
  svc->accept_connection(request_id);
  auto third = svc->next_event(5s);
  REQUIRE(third.has_value());
  REQUIRE(std::holds_alternative<ensemble::UnknownEvent>(*third));
  CHECK(std::get<ensemble::UnknownEvent>(*third).type == "from_the_future");

  // Events read before the end are still handed out; then the end is an exception.
  REQUIRE(f.daemon.inject_chat("puller", peer, "last words"));
  REQUIRE(eventually([&] { return svc->stats().events_received == 4; }));
  svc->close();
  CHECK(svc->wait().ok());
  auto last = svc->next_event(1s);
  REQUIRE(last.has_value());
  REQUIRE(std::holds_alternative<ensemble::ChatMessage>(*last));
  CHECK(std::get<ensemble::ChatMessage>(*last).text == "last words");
  CHECK_THROWS_AS(svc->next_event(1s), ensemble::ServiceClosedError);
}

TEST_CASE("pull mode reports its losses in the sequence, before the events that were kept") {
  Fixture f;
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.event_queue_capacity = 4;
  auto svc = client.service("lossy-puller", options);
  svc->start();
  const auto peer = peer_address(5);
  for (int i = 0; i < 10; ++i) REQUIRE(f.daemon.inject_chat("lossy-puller", peer, std::to_string(i)));
  REQUIRE(eventually([&] { return svc->stats().events_received == 10; }));
  CHECK(svc->stats().events_dropped == 6);

  auto report = svc->next_event(1s);
  REQUIRE(report.has_value());
  REQUIRE(std::holds_alternative<ensemble::EventsDropped>(*report));
  CHECK(std::get<ensemble::EventsDropped>(*report).count == 6);
  for (int i = 6; i < 10; ++i) {
    auto e = svc->next_event(1s);
    REQUIRE(e.has_value());
    REQUIRE(std::holds_alternative<ensemble::ChatMessage>(*e));
    CHECK(std::get<ensemble::ChatMessage>(*e).text == std::to_string(i));
  }
  CHECK_FALSE(svc->next_event(20ms).has_value());
  svc->close();
  svc->wait();
}

TEST_CASE("next_event on a service with handlers is an error: events never go to two places") {
  Fixture f;
  ensemble::Client client(f.client_options());
  auto svc = client.service("pushed");
  std::atomic<int> chats{0};
  svc->on_chat([&](const ensemble::ChatMessage&) { ++chats; });
  svc->start();
  CHECK_THROWS_AS(svc->next_event(10ms), ensemble::Error);
  REQUIRE(f.daemon.inject_chat("pushed", peer_address(6), "to the handler"));
  CHECK(eventually([&] { return chats.load() == 1; }));
  svc->close();
  svc->wait();
}

TEST_CASE("ending with events still queued: nothing of the user's runs after the end") {
  Fixture f;
  const auto peer = peer_address(7);

  // Records handler calls made after the releasing thread got control back.
  struct After {
    std::atomic<bool> returned{false};
    std::atomic<int> late{0};
    std::atomic<int> calls{0};
    void touch() {
      ++calls;
      if (returned.load()) ++late;
    }
  };

  auto flood = [&](const std::string& name, int n) {
    for (int i = 0; i < n; ++i) REQUIRE(f.daemon.inject_chat(name, peer, std::to_string(i)));
  };

  SECTION("released while a gRPC-thread handler is blocked") {
    ensemble::Client client(f.client_options());
    auto svc = client.service("rel-grpc");
    After after;
    Gate gate;
    svc->on_chat([&](const ensemble::ChatMessage& m) {
      if (m.text == "0") gate.wait();
      after.touch();
    });
    svc->start();
    OpenOnExit guard{gate};
    flood("rel-grpc", 200);
    REQUIRE(eventually([&] { return svc->stats().events_received == 200; }));
    std::thread opener([&] {
      std::this_thread::sleep_for(100ms);
      gate.release();
    });
    svc.reset();  // waits for the running handler, discards the rest
    after.returned = true;
    opener.join();
    std::this_thread::sleep_for(50ms);
    CHECK(after.late.load() == 0);
    CHECK(after.calls.load() < 200);
  }
  SECTION("released with an executor: a running handler is waited for, pending tasks do nothing") {
    Worker worker;
    ensemble::Client client(f.client_options());
    ensemble::ServiceOptions options;
    options.executor = worker.executor();
    auto svc = client.service("rel-exec", options);
    After after;
    Gate gate;
    svc->on_chat([&](const ensemble::ChatMessage& m) {
      if (m.text == "0") gate.wait();
      after.touch();
    });
    svc->start();
    OpenOnExit guard{gate};
    flood("rel-exec", 200);
    REQUIRE(eventually([&] { return svc->stats().events_received == 200; }));
    std::thread opener([&] {
      std::this_thread::sleep_for(100ms);
      gate.release();
    });
    svc.reset();
    after.returned = true;
    opener.join();
    std::this_thread::sleep_for(50ms);
    CHECK(after.late.load() == 0);
  }
  SECTION("an executor that has not run the drain task yet when the Client goes") {
    Worker worker;
    worker.pause(true);
    After after;
    {
      ensemble::Client client(f.client_options());
      ensemble::ServiceOptions options;
      options.executor = worker.executor();
      auto svc = client.service("rel-paused", options);
      svc->on_chat([&](const ensemble::ChatMessage&) { after.touch(); });
      svc->start();
      flood("rel-paused", 50);
      REQUIRE(eventually([&] { return svc->stats().events_received == 50; }));
      CHECK(svc->events_queued() == 50);
    }
    after.returned = true;
    worker.pause(false);  // the stale drain task runs now, against a queue that was shut
    REQUIRE(eventually([&] { return worker.ran.load() >= 1; }));
    CHECK(after.calls.load() == 0);
  }
  SECTION("a service released inside its own executor-run handler") {
    Worker worker;
    ensemble::Client client(f.client_options());
    ensemble::ServiceOptions options;
    options.executor = worker.executor();
    auto svc = client.service("rel-self", options);
    std::atomic<bool> done{false};
    After after;
    svc->on_chat([&](const ensemble::ChatMessage&) {
      after.touch();
      if (svc) {
        svc.reset();  // marked like a callback thread: cancels without waiting for itself
        done = true;
      }
    });
    svc->start();
    // The first chat's handler ends the service, so later injections may find it gone.
    for (int i = 0; i < 20; ++i) f.daemon.inject_chat("rel-self", peer, std::to_string(i));
    REQUIRE(eventually([&] { return done.load(); }));
    CHECK(eventually([&] { return client.open_calls() == 0; }));
  }
  SECTION("a graceful close with handlers on gRPC threads delivers what was read") {
    ensemble::Client client(f.client_options());
    auto svc = client.service("graceful");
    std::atomic<int> seen{0};
    svc->on_chat([&](const ensemble::ChatMessage&) {
      std::this_thread::sleep_for(1ms);
      ++seen;
    });
    svc->start();
    flood("graceful", 200);
    REQUIRE(eventually([&] { return svc->stats().events_received == 200; }));
    svc->close();
    CHECK(svc->wait().ok());
    // Without an executor the drainer runs inside a reaction, so gRPC cannot end the call
    // (OnDone) before it has emptied the queue.
    const int at_end = seen.load();
    CHECK(at_end == 200);
    CHECK(svc->stats().events_discarded == 0);
    std::this_thread::sleep_for(50ms);
    CHECK(seen.load() == at_end);
  }
}

}  // namespace test_event_delivery
