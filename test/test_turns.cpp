// Turns (issue 21): where every callback of a service runs and in what order, turns in
// parallel across peers and in order per peer with a cap, the review's faults at the meeting
// of the executor and the rest of the service, and handlers that are given their service.
// Real Client, daemon double, Unix socket; handlers only record, the test thread asserts.
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
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace test_turns {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

using test_support::eventually;
using test_support::peer_address;
using test_support::thrown;

namespace {

struct Fixture {
  test_support::TempDir dir;
  std::optional<DaemonDouble> daemon{std::in_place, options()};
  DaemonDoubleOptions options() const {
    DaemonDoubleOptions o;
    o.unix_socket = (dir / "api.sock").string();
    o.data_dir = dir / "data";  // addresses survive a restart()
    return o;
  }
  // The daemon goes away (every stream ends UNAVAILABLE) and comes back on the same socket.
  void restart() {
    daemon.reset();
    daemon.emplace(options());
  }
  ensemble::ClientOptions client_options() const { return {.socket_path = (dir / "api.sock").string()}; }
};

// Start and end of every turn, in the order they happened, and how many overlapped.
struct Timeline {
  std::mutex mu;
  std::vector<std::string> entries;  // "+label" when a turn starts, "-label" when it ends
  std::map<std::string, int> inside_peer;
  int inside = 0;
  int max_inside = 0;
  int max_inside_one_peer = 0;

  void begin(const std::string& label, const std::string& peer = {}) {
    std::lock_guard lock(mu);
    entries.push_back("+" + label);
    max_inside = std::max(max_inside, ++inside);
    if (!peer.empty()) max_inside_one_peer = std::max(max_inside_one_peer, ++inside_peer[peer]);
  }
  void end(const std::string& label, const std::string& peer = {}) {
    std::lock_guard lock(mu);
    entries.push_back("-" + label);
    --inside;
    if (!peer.empty()) --inside_peer[peer];
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mu);
    return entries;
  }
  int overlap() {
    std::lock_guard lock(mu);
    return max_inside;
  }
  int overlap_one_peer() {
    std::lock_guard lock(mu);
    return max_inside_one_peer;
  }
  std::size_t index_of(const std::string& entry) {
    const auto e = snapshot();
    return static_cast<std::size_t>(std::find(e.begin(), e.end(), entry) - e.begin());
  }
};

// The texts each peer's chats reached the handler with, in order.
struct PerPeer {
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> seen;
  std::atomic<int> total{0};
  void add(const std::string& peer, const std::string& text) {
    {
      std::lock_guard lock(mu);
      seen[peer].push_back(text);
    }
    ++total;
  }
};

std::vector<std::string> numbered(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(std::to_string(i));
  return out;
}

}  // namespace

TEST_CASE("turns: different peers at the same time, up to the cap; one peer in order, one at a time") {
  Fixture f;
  ensemble::ThreadPool pool(8);
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.executor = pool.executor();
  options.max_turns_in_flight = 4;
  auto svc = client.service("parallel", options);
  Timeline timeline;
  PerPeer per_peer;
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    timeline.begin(m.from_addr + ":" + m.text, m.from_addr);
    std::this_thread::sleep_for(3ms);  // a slow turn
    per_peer.add(m.from_addr, m.text);
    timeline.end(m.from_addr + ":" + m.text, m.from_addr);
  });
  svc->start();

  const int peers = 10;
  const int each = 20;
  for (int i = 0; i < each; ++i) {
    for (int p = 0; p < peers; ++p) {
      REQUIRE(f.daemon->inject_chat("parallel", peer_address(static_cast<std::uint8_t>(100 + p)), std::to_string(i)));
    }
  }
  REQUIRE(eventually([&] { return per_peer.total.load() == peers * each; }));
  for (int p = 0; p < peers; ++p) {
    CAPTURE(p);
    CHECK(per_peer.seen[peer_address(static_cast<std::uint8_t>(100 + p))] == numbered(each));
  }
  CHECK(timeline.overlap() <= 4);
  CHECK(timeline.overlap() >= 2);  // 200 turns of 3 ms from 10 peers: they did overlap
  CHECK(timeline.overlap_one_peer() == 1);
  const auto stats = svc->stats();
  CHECK(stats.events_delivered == static_cast<std::uint64_t>(peers * each));
  CHECK(stats.events_dropped == 0);
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("turns: one peer's burst stays in order while other peers go past it") {
  Fixture f;
  ensemble::ThreadPool pool(4);
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.executor = pool.executor();
  options.max_turns_in_flight = 4;
  auto svc = client.service("burst", options);
  const auto loud = peer_address(1);
  const auto quiet = peer_address(2);
  PerPeer per_peer;
  std::atomic<int> quiet_done_while_loud_busy{0};
  std::atomic<int> loud_left{0};
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    if (m.from_addr == loud) {
      std::this_thread::sleep_for(5ms);
      --loud_left;
    } else if (loud_left.load() > 0) {
      ++quiet_done_while_loud_busy;
    }
    per_peer.add(m.from_addr, m.text);
  });
  svc->start();
  loud_left = 100;
  for (int i = 0; i < 100; ++i) REQUIRE(f.daemon->inject_chat("burst", loud, std::to_string(i)));
  for (int i = 0; i < 5; ++i) REQUIRE(f.daemon->inject_chat("burst", quiet, std::to_string(i)));
  REQUIRE(eventually([&] { return per_peer.total.load() == 105; }));
  CHECK(per_peer.seen[loud] == numbered(100));
  CHECK(per_peer.seen[quiet] == numbered(5));
  // The quiet peer did not wait behind the loud one's 500 ms of turns.
  CHECK(quiet_done_while_loud_busy.load() == 5);
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("turns: a callback with no peer runs alone, after what came before it and before what came after") {
  Fixture f;
  ensemble::ThreadPool pool(4);
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.executor = pool.executor();
  options.max_turns_in_flight = 4;
  auto svc = client.service("fenced", options);
  Timeline timeline;
  std::atomic<int> chats{0};
  std::atomic<int> unknown_saw_inside{-1};
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    timeline.begin("chat " + m.text, m.from_addr);
    std::this_thread::sleep_for(10ms);
    timeline.end("chat " + m.text, m.from_addr);
    ++chats;
  });
  svc->on_unknown([&](const ensemble::UnknownEvent& e) {
    {
      std::lock_guard lock(timeline.mu);
      unknown_saw_inside = timeline.inside;
    }
    timeline.begin("unknown " + e.type);
    std::this_thread::sleep_for(20ms);
    timeline.end("unknown " + e.type);
  });
  svc->start();
  for (int p = 0; p < 6; ++p) REQUIRE(f.daemon->inject_chat("fenced", peer_address(static_cast<std::uint8_t>(10 + p)), "before"));
  REQUIRE(f.daemon->inject_event("fenced", "fence", "x"));
  for (int p = 0; p < 6; ++p) REQUIRE(f.daemon->inject_chat("fenced", peer_address(static_cast<std::uint8_t>(10 + p)), "after"));
  REQUIRE(eventually([&] { return chats.load() == 12; }));
  CHECK(unknown_saw_inside.load() == 0);
  const auto e = timeline.snapshot();
  const auto fence_start = timeline.index_of("+unknown fence");
  const auto fence_end = timeline.index_of("-unknown fence");
  REQUIRE(fence_end == fence_start + 1);  // nothing started or ended while it ran
  for (std::size_t i = 0; i < e.size(); ++i) {
    CAPTURE(i, e[i]);
    if (e[i].find("before") != std::string::npos) CHECK(i < fence_start);
    if (e[i].find("after") != std::string::npos) CHECK(i > fence_end);
  }
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("turns: chats read before a reconnect come before reconnecting, and on_state never overlaps a handler") {
  Fixture f;
  ensemble::ThreadPool pool(2);
  std::optional<ensemble::Client> client(std::in_place, f.client_options());
  ensemble::ServiceOptions options;
  options.executor = pool.executor();
  options.reconnect.enabled = true;
  options.reconnect.initial_backoff = 20ms;
  options.reconnect.max_backoff = 100ms;
  auto svc = client->service("steady", options);
  Timeline timeline;
  std::atomic<int> chats{0};
  std::atomic<bool> slow{true};
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    timeline.begin("chat " + m.text);
    if (slow.load()) std::this_thread::sleep_for(20ms);  // still at it when the daemon goes
    timeline.end("chat " + m.text);
    ++chats;
  });
  svc->on_state([&](ensemble::ServiceState s) {
    const std::string label = s == ensemble::ServiceState::reconnecting  ? "reconnecting"
                              : s == ensemble::ServiceState::registering ? "registering"
                              : s == ensemble::ServiceState::registered  ? "registered"
                                                                          : "other";
    timeline.begin(label);
    timeline.end(label);
  });
  svc->start();
  REQUIRE(eventually([&] { return timeline.index_of("-registered") < timeline.snapshot().size(); }));
  const auto peer = peer_address(9);
  for (int i = 0; i < 10; ++i) REQUIRE(f.daemon->inject_chat("steady", peer, std::to_string(i)));
  REQUIRE(eventually([&] { return svc->stats().events_received == 10; }));
  f.restart();
  REQUIRE(eventually([&] { return f.daemon->wait_registered("steady", 0ms); }));
  REQUIRE(eventually([&] { return chats.load() == 10; }));
  REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::registered; }));
  slow = false;
  REQUIRE(f.daemon->inject_chat("steady", peer, "after"));
  REQUIRE(eventually([&] { return chats.load() == 11; }));

  const auto e = timeline.snapshot();
  CHECK(timeline.overlap() == 1);  // with one turn in flight nothing ever overlaps
  const auto reconnecting = timeline.index_of("+reconnecting");
  REQUIRE(reconnecting < e.size());
  CHECK(timeline.index_of("-chat 9") < reconnecting);
  // The second `registered` comes after `reconnecting`, and the new chat after it.
  std::size_t second_registered = e.size();
  for (std::size_t i = reconnecting; i < e.size(); ++i) {
    if (e[i] == "+registered") second_registered = i;
  }
  CHECK(second_registered < timeline.index_of("+chat after"));
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("turns: a handler on the executor is the service's own: wait() inside it throws") {
  Fixture f;
  ensemble::ThreadPool pool(1);
  ensemble::Client client(f.client_options());
  auto svc = client.service("self-wait-exec", {.executor = pool.executor()});
  std::mutex mu;
  std::string said;
  std::atomic<bool> done{false};
  svc->on_chat([&](ensemble::ChatService& self, const ensemble::ChatMessage&) {
    try {
      self.wait();
    } catch (const ensemble::Error& e) {
      std::lock_guard lock(mu);
      said = e.what();
    }
    done = true;
  });
  svc->start();
  REQUIRE(f.daemon->inject_chat("self-wait-exec", peer_address(3), "hi"));
  REQUIRE(eventually([&] { return done.load(); }));
  CHECK_THAT(said, Catch::Contains("wait() called from inside a callback of service \"self-wait-exec\""));
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("turns: the executor and every handler are destroyed before the release returns") {
  Fixture f;
  ensemble::ThreadPool pool(1);
  ensemble::Client client(f.client_options());
  // Each callable counts itself alive; the counter is the test's, checked after the release.
  auto alive = std::make_shared<std::atomic<int>>(0);
  struct Counted {
    std::shared_ptr<std::atomic<int>> alive;
    explicit Counted(std::shared_ptr<std::atomic<int>> a) : alive(std::move(a)) { ++*alive; }
    Counted(const Counted& other) : alive(other.alive) { ++*alive; }
    ~Counted() { --*alive; }
  };
  {
    ensemble::ServiceOptions options;
    options.executor = [counted = Counted(alive), post = pool.executor()](std::function<void()> task) {
      post(std::move(task));
    };
    // The registration deadline leaves a cancelled alarm behind whose callback may still be
    // on its way when the release returns: it must not be what destroys anything of ours.
    options.registration_timeout = 5s;
    auto svc = client.service("counted", options);
    svc->on_chat([counted = Counted(alive)](const ensemble::ChatMessage&) {});
    svc->on_state([counted = Counted(alive)](ensemble::ServiceState) {});
    svc->start();
    REQUIRE(f.daemon->inject_chat("counted", peer_address(4), "hi"));
    REQUIRE(eventually([&] { return svc->stats().events_delivered == 1; }));
    CHECK(alive->load() > 0);
  }  // the release
  CHECK(alive->load() == 0);
}

TEST_CASE("turns: an executor that drops tasks without running them does not stall the service") {
  Fixture f;
  ensemble::ThreadPool pool(1);
  std::mutex log_mu;
  std::vector<std::string> logged;
  ensemble::set_log_sink([&](ensemble::LogLevel, std::string_view message) {
    std::lock_guard lock(log_mu);
    logged.emplace_back(message);
  });
  struct RestoreSink {
    ~RestoreSink() { ensemble::set_log_sink({}); }
  } restore;
  ensemble::Client client(f.client_options());
  std::atomic<int> posts{0};
  ensemble::ServiceOptions options;
  options.executor = [&posts, post = pool.executor()](std::function<void()> task) {
    if (++posts % 2 == 0) return;  // every other task is destroyed unrun
    post(std::move(task));
  };
  auto svc = client.service("dropping", options);
  std::vector<std::string> texts;
  std::mutex mu;
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    std::lock_guard lock(mu);
    texts.push_back(m.text);
  });
  svc->start();
  const auto peer = peer_address(5);
  for (int i = 0; i < 50; ++i) {
    REQUIRE(f.daemon->inject_chat("dropping", peer, std::to_string(i)));
    std::this_thread::sleep_for(1ms);  // spread out, so that many tasks are posted
  }
  REQUIRE(eventually([&] { return svc->stats().events_delivered == 50; }));
  {
    std::lock_guard lock(mu);
    CHECK(texts == numbered(50));
  }
  CHECK(posts.load() >= 2);
  {
    std::lock_guard lock(log_mu);
    REQUIRE_FALSE(logged.empty());
    CHECK_THAT(logged.front(), Catch::Contains("the executor of service \"dropping\" destroyed a task without running it"));
  }
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("turns: a busy executor cannot hold up the end; on_closed is the last turn") {
  Fixture f;
  ensemble::ThreadPool pool(1);
  ensemble::Client client(f.client_options());
  auto svc = client.service("busy-exec", {.executor = pool.executor()});
  Timeline timeline;
  svc->on_chat([&](const ensemble::ChatMessage& m) { timeline.begin("chat " + m.text); timeline.end("chat " + m.text); });
  svc->on_closed([&](const grpc::Status&) {
    timeline.begin("closed");
    timeline.end("closed");
  });
  svc->start();
  // The pool's only thread is taken by something else for a while.
  std::atomic<bool> release_pool{false};
  pool.post([&] {
    while (!release_pool.load()) std::this_thread::sleep_for(1ms);
  });
  for (int i = 0; i < 5; ++i) REQUIRE(f.daemon->inject_chat("busy-exec", peer_address(6), std::to_string(i)));
  REQUIRE(eventually([&] { return svc->stats().events_received == 5; }));
  svc->cancel();
  const auto status = svc->wait_for(5s);  // ends without the pool
  release_pool = true;
  REQUIRE(status.has_value());
  CHECK(status->error_code() == grpc::StatusCode::CANCELLED);
  const auto e = timeline.snapshot();
  REQUIRE_FALSE(e.empty());
  CHECK(e.back() == "-closed");
  CHECK(svc->stats().events_discarded == 5);
}

TEST_CASE("turns: the options that govern them are checked where the service is made") {
  Fixture f;
  ensemble::Client client(f.client_options());
  CHECK_THAT(thrown<ensemble::ConfigError>([&] { client.service("zero", {.max_turns_in_flight = 0}); }),
             Catch::Contains("ServiceOptions::max_turns_in_flight must be at least 1"));
  CHECK_THAT(thrown<ensemble::ConfigError>([&] { client.service("no-exec", {.max_turns_in_flight = 4}); }),
             Catch::Contains("ServiceOptions::max_turns_in_flight is 4, but turns can only run at the same time on an executor"));
  CHECK_THAT(thrown<ensemble::ConfigError>([] { ensemble::ThreadPool none(0); }),
             Catch::Contains("ThreadPool: the number of threads must be at least 1"));
  std::function<void(std::function<void()>)> executor;
  {
    ensemble::ThreadPool pool(1);
    executor = pool.executor();
  }
  CHECK_THAT(thrown<ensemble::Error>([&] { executor([] {}); }),
             Catch::Contains("ThreadPool: posted to a pool that is being destroyed"));
}

TEST_CASE("turns: handlers that are given their service") {
  Fixture f;
  ensemble::Client client(f.client_options());
  auto chat = client.service("self-chat");
  std::atomic<int> states{0};
  chat->on_chat([](ensemble::ChatService& self, const ensemble::ChatMessage& m) {
        self.send_message(m.from_addr, "re: " + m.text);
      })
      .on_state([&](ensemble::ChatService& self, ensemble::ServiceState s) {
        if (s == ensemble::ServiceState::registered && !self.address().empty()) ++states;
      })
      .on_connection_request([](auto& self, const auto& r) { self.accept_connection(r.request_id); });
  chat->start();
  auto rpc = client.rpc_service("self-rpc");
  rpc->on_rpc([](ensemble::RpcService& self, const ensemble::RpcMessage& m) {
    self.send_bytes(m.from_addr, std::string(m.payload.rbegin(), m.payload.rend()));
  });
  rpc->start();

  const auto peer = peer_address(7);
  REQUIRE(f.daemon->inject_chat("self-chat", peer, "one"));
  REQUIRE(f.daemon->inject_bytes("self-rpc", peer, "abc"));
  const auto request = f.daemon->inject_connection_request("self-chat", peer);
  REQUIRE(f.daemon->wait_for_actions("self-chat", 2, 5s));
  REQUIRE(f.daemon->wait_for_actions("self-rpc", 1, 5s));
  const auto chat_actions = f.daemon->actions("self-chat");
  CHECK(chat_actions[0].send_message().text() == "re: one");
  CHECK(chat_actions[1].accept().request_id() == request);
  CHECK(f.daemon->actions("self-rpc")[0].send_bytes().payload() == "cba");
  CHECK(states.load() == 1);
  chat->close();
  rpc->close();
  CHECK(chat->wait().ok());
  CHECK(rpc->wait().ok());
}

TEST_CASE("turns: with turns in parallel the read-ahead still drops the oldest and counts exactly") {
  Fixture f;
  ensemble::ThreadPool pool(2);
  ensemble::Client client(f.client_options());
  ensemble::ServiceOptions options;
  options.executor = pool.executor();
  options.max_turns_in_flight = 2;
  options.event_queue_capacity = 10;
  auto svc = client.service("lossy-parallel", options);
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open = false;
  std::atomic<int> waiting{0};
  PerPeer per_peer;
  std::atomic<std::uint64_t> reported{0};
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    ++waiting;
    {
      std::unique_lock lock(gate_mu);
      gate_cv.wait(lock, [&] { return open; });
    }
    per_peer.add(m.from_addr, m.text);
  });
  svc->on_events_dropped([&](std::uint64_t n) { reported += n; });
  svc->start();
  struct Opener {
    std::mutex& mu;
    std::condition_variable& cv;
    bool& open;
    void operator()() {
      {
        std::lock_guard lock(mu);
        open = true;
      }
      cv.notify_all();
    }
    ~Opener() { (*this)(); }
  } opener{gate_mu, gate_cv, open};

  // Two turns block (the first chats of two peers); 28 more chats from three peers arrive
  // behind them; 10 fit.
  auto chat = [&](std::uint8_t p, int i) {
    REQUIRE(f.daemon->inject_chat("lossy-parallel", peer_address(static_cast<std::uint8_t>(60 + p)), std::to_string(i)));
  };
  chat(0, 0);
  chat(1, 0);
  REQUIRE(eventually([&] { return waiting.load() == 2; }));
  chat(2, 0);
  for (int i = 1; i < 10; ++i) {
    for (std::uint8_t p = 0; p < 3; ++p) chat(p, i);
  }
  REQUIRE(eventually([&] { return svc->stats().events_received == 30; }));
  CHECK(waiting.load() == 2);
  opener();
  REQUIRE(eventually([&] {
    const auto s = svc->stats();
    return s.events_queued == 0 && s.events_delivered + s.events_dropped == 30 &&
           static_cast<std::uint64_t>(per_peer.total.load()) == s.events_delivered;
  }));
  const auto s = svc->stats();
  CHECK(s.events_dropped == 18);  // 30 read, 2 running, the newest 10 kept
  CHECK(s.events_delivered == 12);
  REQUIRE(eventually([&] { return reported.load() == s.events_dropped; }));
  for (std::uint8_t p = 0; p < 3; ++p) {
    // What each peer got through is still in its order (the oldest were dropped).
    auto seen = per_peer.seen[peer_address(static_cast<std::uint8_t>(60 + p))];
    std::vector<int> numbers;
    for (const auto& t : seen) numbers.push_back(std::stoi(t));
    CHECK(std::is_sorted(numbers.begin(), numbers.end()));
  }
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("turns: after one slow turn on a gRPC thread, reading goes on while the next slow one runs") {
  // Quick turns run before the next read starts (a reply does not wait behind the read);
  // one slow turn puts the service back to reading first, so a second one does not stop it.
  Fixture f;
  ensemble::Client client(f.client_options());
  auto svc = client.service("mostly-quick");
  std::mutex mu;
  std::condition_variable cv;
  int released = 0;  // how many "block" turns may finish
  std::atomic<int> blocked{0};
  std::atomic<int> handled{0};
  svc->on_chat([&](const ensemble::ChatMessage& m) {
    if (m.text.rfind("block", 0) == 0) {
      const int mine = ++blocked;
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return released >= mine; });
    }
    ++handled;
  });
  svc->start();
  auto release = [&](int n) {
    {
      std::lock_guard lock(mu);
      released = n;
    }
    cv.notify_all();
  };
  struct ReleaseAll {
    std::function<void()> f;
    ~ReleaseAll() { f(); }
  } release_all{[&] { release(1000); }};
  const auto peer = peer_address(70);
  for (int i = 0; i < 30; ++i) REQUIRE(f.daemon->inject_chat("mostly-quick", peer, "quick"));
  REQUIRE(eventually([&] { return handled.load() == 30; }));
  REQUIRE(f.daemon->inject_chat("mostly-quick", peer, "block 1"));
  REQUIRE(eventually([&] { return blocked.load() == 1; }));
  // Slow for certain: released at once, the turn could still average under kQuickTurn.
  std::this_thread::sleep_for(5ms);
  release(1);
  REQUIRE(eventually([&] { return handled.load() == 31; }));

  REQUIRE(f.daemon->inject_chat("mostly-quick", peer, "block 2"));
  REQUIRE(eventually([&] { return blocked.load() == 2; }));
  for (int i = 0; i < 20; ++i) REQUIRE(f.daemon->inject_chat("mostly-quick", peer, "behind"));
  CHECK(eventually([&] { return svc->stats().events_received == 52; }));  // read while blocked
  CHECK(svc->events_queued() == 20);
  release(2);
  REQUIRE(eventually([&] { return handled.load() == 52; }));
  svc->close();
  CHECK(svc->wait().ok());
}

}  // namespace test_turns
