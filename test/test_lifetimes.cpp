// Every end is deterministic: when the call that ends a service, a subscription or a
// callback call returns (wait(), the release of the last shared_ptr, ~Client), none of its
// user callables runs or is destroyed later; blocking calls that could never return throw;
// reconnects have deadlines; misuse has one defined outcome. Over real sockets, against the
// daemon double or, for the registrations it does not stage, a scripted daemon.
//
// Handlers run on gRPC threads and Catch2 is not thread-safe: handlers only record, and
// the assertions run on the test's thread.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/polling.hpp"
#include "support/scripted_registrations.hpp"
#include "support/tempdir.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>

#include <unistd.h>

namespace test_lifetimes {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;
using test_support::ScriptedRegistrations;

using test_support::eventually;
using test_support::peer_address;

namespace {

// Stands in for what a handler's captures own. Counts its live copies; a slow one takes a
// while to die, so a destruction that races past the ending call is caught, not missed.
struct Sentinel {
  std::atomic<int>* live;
  std::chrono::milliseconds dying_time{0};
  bool armed = true;

  explicit Sentinel(std::atomic<int>& counter, std::chrono::milliseconds slow = 0ms)
      : live(&counter), dying_time(slow) {
    live->fetch_add(1);
  }
  Sentinel(const Sentinel& other) : live(other.live), dying_time(other.dying_time) { live->fetch_add(1); }
  Sentinel(Sentinel&& other) noexcept : live(other.live), dying_time(other.dying_time) {
    other.armed = false;
  }
  Sentinel& operator=(const Sentinel&) = delete;
  ~Sentinel() {
    if (!armed) return;
    std::this_thread::sleep_for(dying_time);
    live->fetch_sub(1);
  }
};

struct Double {
  test_support::TempDir dir;
  DaemonDouble daemon;
  Double() : daemon(options(dir)) {}
  static DaemonDoubleOptions options(const test_support::TempDir& dir) {
    DaemonDoubleOptions o;
    o.unix_socket = (dir / "api.sock").string();
    return o;
  }
  ensemble::ClientOptions client_options() const { return {.socket_path = (dir / "api.sock").string()}; }
};

struct Scripted {
  test_support::TempDir dir;
  ScriptedRegistrations daemon{(dir / "api.sock").string()};
  ensemble::ClientOptions client_options() const { return {.socket_path = (dir / "api.sock").string()}; }
};

// Subscribe sends nothing, not even headers, before its first event: publish a marker until
// the subscription has received one.
bool await_subscribed(DaemonDouble& daemon, const ensemble::EventSubscription& sub) {
  return eventually([&] {
    daemon.publish_node_event("test.subscribed", "{}");
    return sub.events_received() > 0;
  });
}

bool thread_alive(pid_t tid) {
  return std::filesystem::exists("/proc/self/task/" + std::to_string(tid));
}

}  // namespace

// ---- 1. No user callable runs or is destroyed after the ending call returns ----

TEST_CASE("a service's handlers are destroyed before wait() returns") {
  Double d;
  ensemble::Client client(d.client_options());
  auto svc = client.service("sentinel-wait");
  std::atomic<int> live{0};
  svc->on_chat([s = Sentinel(live, 50ms)](const ensemble::ChatMessage&) {});
  svc->on_closed([s = Sentinel(live, 50ms)](const grpc::Status&) {});
  svc->start();
  REQUIRE(live.load() == 2);
  svc->close();
  CHECK(svc->wait().ok());
  CHECK(live.load() == 0);  // while the caller still holds the service
}

TEST_CASE("releasing the last shared_ptr destroys the handlers before it returns") {
  Double d;
  ensemble::Client client(d.client_options());
  std::atomic<int> live{0};
  for (int i = 0; i < 5; ++i) {
    auto svc = client.service("sentinel-release");
    svc->on_chat([s = Sentinel(live, 30ms)](const ensemble::ChatMessage&) {});
    svc->start();
    svc.reset();
    CHECK(live.load() == 0);
    REQUIRE(d.daemon.wait_unregistered("sentinel-release", 2s));
  }
}

TEST_CASE("~Client destroys the handlers of the services it ends before it returns") {
  Double d;
  std::atomic<int> live{0};
  std::shared_ptr<ensemble::ChatService> kept;
  {
    ensemble::Client client(d.client_options());
    kept = client.service("sentinel-client");
    kept->on_chat([s = Sentinel(live, 30ms)](const ensemble::ChatMessage&) {});
    kept->start();
  }
  CHECK(live.load() == 0);
  CHECK(kept->wait().error_code() == grpc::StatusCode::CANCELLED);
}

TEST_CASE("a node event subscription's callbacks are destroyed before wait() returns") {
  Double d;
  ensemble::Client client(d.client_options());
  std::atomic<int> live{0};
  auto sub = client.events([s = Sentinel(live, 30ms)](const ensemble::DaemonEvent&) {},
                           [s = Sentinel(live, 30ms)](const grpc::Status&) {});
  REQUIRE(await_subscribed(d.daemon, *sub));
  sub->cancel();
  CHECK(sub->wait().error_code() == grpc::StatusCode::CANCELLED);
  CHECK(live.load() == 0);
}

TEST_CASE("a file transfer's callbacks are destroyed before wait() returns") {
  Double d;
  ensemble::Client client(d.client_options());
  const auto source = d.dir / "small.txt";
  std::ofstream(source) << "hello file";
  std::atomic<int> live{0};
  auto transfer = client.send_file(peer_address(6), source.string(),
                                   [s = Sentinel(live, 30ms)](const ensemble::FileProgress&) {},
                                   [s = Sentinel(live, 30ms)](ensemble::Result<ensemble::FileProgress>) {});
  CHECK(transfer->wait().complete);  // a synthetic peer takes the file at once
  CHECK(live.load() == 0);           // while the handle is still held
}

TEST_CASE("a callback call's callback has run and is destroyed before ~Client returns") {
  Scripted d;  // its GetStatus never answers, so the call is in flight when the Client goes
  std::atomic<int> live{0};
  std::atomic<int> code{-1};
  {
    ensemble::Client client(d.client_options());
    client.get_status([s = Sentinel(live, 100ms), &code](ensemble::Result<ensemble::NodeStatus> r) {
      code = static_cast<int>(r ? grpc::StatusCode::OK : r.status()->error_code());
    });
    REQUIRE(eventually([&] { return client.open_calls() == 1; }));
    std::this_thread::sleep_for(50ms);  // let the call reach the daemon
  }
  CHECK(code.load() == static_cast<int>(grpc::StatusCode::CANCELLED));
  CHECK(live.load() == 0);
}

// ---- 2. Blocking calls that could never return throw instead of hanging ----

TEST_CASE("wait() from the service's own handlers throws instead of hanging") {
  Double d;
  ensemble::Client client(d.client_options());
  auto svc = client.service("self-wait");
  ensemble::ChatService* self = svc.get();
  std::mutex mu;
  std::vector<std::string> refusals;
  auto try_wait = [&, self](const char* where) {
    try {
      self->wait();
      std::lock_guard lock(mu);
      refusals.push_back(std::string(where) + ": returned");
    } catch (const ensemble::Error& e) {
      std::lock_guard lock(mu);
      refusals.push_back(std::string(where) + ": " + e.what());
    }
  };
  std::atomic<int> chats{0};
  svc->on_chat([&](const ensemble::ChatMessage&) {
    try_wait("on_chat");
    chats++;
  });
  svc->on_state([&](ensemble::ServiceState s) {
    if (s == ensemble::ServiceState::registering || s == ensemble::ServiceState::closed) try_wait("on_state");
  });
  svc->on_closed([&](const grpc::Status&) { try_wait("on_closed"); });
  svc->start();
  d.daemon.inject_chat("self-wait", peer_address(1), "hi");
  REQUIRE(eventually([&] { return chats.load() == 1; }));
  svc->close();
  REQUIRE(svc->wait_for(5s).has_value());
  std::lock_guard lock(mu);
  REQUIRE(refusals.size() == 4);  // on_state(registering) runs inside start(), on this thread
  for (const auto& r : refusals) {
    CAPTURE(r);
    CHECK_THAT(r, Catch::Contains("called from inside a callback of service \"self-wait\""));
  }
}

TEST_CASE("wait() from a subscription's own callback throws instead of hanging") {
  Double d;
  ensemble::Client client(d.client_options());
  std::atomic<ensemble::EventSubscription*> self{nullptr};
  std::atomic<bool> refused{false};
  std::atomic<bool> tried{false};
  auto sub = client.events([&](const ensemble::DaemonEvent& ev) {
    if (ev.type != "chat_message" || tried.load()) return;  // not await_subscribed's markers
    try {
      self.load()->wait();
    } catch (const ensemble::Error&) {
      refused = true;
    }
    tried = true;
  });
  self = sub.get();
  REQUIRE(await_subscribed(d.daemon, *sub));
  d.daemon.inject_node_chat(peer_address(2), "hello");
  REQUIRE(eventually([&] { return tried.load(); }));
  CHECK(refused.load());
}

// ---- 3, 4. Reconnects: every attempt has a deadline; ALREADY_EXISTS is retried ----

TEST_CASE("a reconnect attempt the daemon never answers times out and is retried") {
  Scripted d;
  d.daemon.script({ScriptedRegistrations::Answer::registered, ScriptedRegistrations::Answer::silent});
  ensemble::Client client(d.client_options());
  ensemble::ServiceOptions options;
  options.registration_timeout = 300ms;
  options.reconnect.enabled = true;
  options.reconnect.initial_backoff = 10ms;
  options.reconnect.max_backoff = 20ms;
  std::mutex mu;
  std::vector<ensemble::ServiceState> states;
  auto svc = client.service("deadline", options);
  svc->on_state([&](ensemble::ServiceState s) {
    std::lock_guard lock(mu);
    states.push_back(s);
  });
  svc->start();
  d.daemon.drop_all();
  // Attempt 2 gets no answer; past its deadline it is cancelled and attempt 3 registers.
  REQUIRE(eventually([&] { return d.daemon.attempts() == 3; }, 5s));
  REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::registered; }, 5s));
  svc->close();
  CHECK(svc->wait().ok());
  std::lock_guard lock(mu);
  using S = ensemble::ServiceState;
  CHECK(states == std::vector<S>{S::registering, S::registered, S::reconnecting, S::registering,
                                 S::reconnecting, S::registering, S::registered, S::closed});
}

TEST_CASE("start_async() has the registration deadline too, and zero means none") {
  Scripted d;
  ensemble::Client client(d.client_options());

  SECTION("a deadline ends an unanswered registration with DEADLINE_EXCEEDED") {
    d.daemon.script({ScriptedRegistrations::Answer::silent});
    ensemble::ServiceOptions options;
    options.registration_timeout = 200ms;
    auto svc = client.service("late", options);
    auto registered = svc->start_async();
    REQUIRE(registered.wait_for(5s) == std::future_status::ready);
    try {
      registered.get();
      FAIL("registered without an answer");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::DEADLINE_EXCEEDED);
    }
    CHECK(svc->wait().error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  }

  SECTION("registration_timeout = 0 waits for the daemon as long as it takes") {
    d.daemon.script({ScriptedRegistrations::Answer::silent});
    ensemble::ServiceOptions options;
    options.registration_timeout = 0ms;
    auto svc = client.service("patient", options);
    auto started = std::async(std::launch::async, [&] { svc->start(); });
    CHECK(started.wait_for(500ms) == std::future_status::timeout);
    CHECK(svc->state() == ensemble::ServiceState::registering);
    svc->cancel();
    REQUIRE(started.wait_for(5s) == std::future_status::ready);
    CHECK_THROWS_MATCHES(started.get(), ensemble::RegistrationError,
                         Catch::Predicate<ensemble::RegistrationError>(
                             [](const auto& e) { return e.code() == grpc::StatusCode::CANCELLED; }));
  }
}

TEST_CASE("ALREADY_EXISTS on a re-registration is retried within the reconnect policy") {
  Scripted d;
  d.daemon.script({ScriptedRegistrations::Answer::registered, ScriptedRegistrations::Answer::already_exists,
                   ScriptedRegistrations::Answer::already_exists});
  ensemble::Client client(d.client_options());
  ensemble::ServiceOptions options;
  options.reconnect.enabled = true;
  options.reconnect.initial_backoff = 10ms;
  options.reconnect.max_backoff = 20ms;
  auto svc = client.service("blip", options);
  svc->start();
  d.daemon.drop_all();
  REQUIRE(eventually([&] { return d.daemon.attempts() == 4; }, 5s));
  REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::registered; }, 5s));
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("ALREADY_EXISTS on the first registration still ends the service") {
  Scripted d;
  d.daemon.script({ScriptedRegistrations::Answer::already_exists});
  ensemble::Client client(d.client_options());
  ensemble::ServiceOptions options;
  options.reconnect.enabled = true;
  auto svc = client.service("taken", options);
  CHECK_THROWS_AS(svc->start(), ensemble::RegistrationError);
  CHECK(svc->wait().error_code() == grpc::StatusCode::ALREADY_EXISTS);
  CHECK(d.daemon.attempts() == 1);
}

// ---- 5. Misuse before start() and after ~Client has one defined outcome ----

TEST_CASE("cancel() or close() before start() ends the service without a stream") {
  Double d;
  ensemble::Client client(d.client_options());
  for (bool use_cancel : {true, false}) {
    CAPTURE(use_cancel);
    auto svc = client.service("never-ran");
    std::atomic<int> closed{0};
    svc->on_closed([&](const grpc::Status&) { closed++; });
    if (use_cancel) svc->cancel(); else svc->close();
    CHECK(svc->state() == ensemble::ServiceState::closed);
    CHECK(svc->wait().error_code() ==
          (use_cancel ? grpc::StatusCode::CANCELLED : grpc::StatusCode::OK));
    CHECK(closed.load() == 1);
    CHECK_THROWS_AS(svc->start(), ensemble::ServiceClosedError);
    CHECK(d.daemon.service_address("never-ran").empty());
    CHECK(client.open_calls() == 0);
  }
}

TEST_CASE("wait() before start() throws instead of returning a status that means nothing") {
  Double d;
  ensemble::Client client(d.client_options());
  auto svc = client.service("not-yet");
  CHECK_THROWS_WITH(svc->wait(), Catch::Contains("before start()"));
  CHECK_THROWS_AS(svc->wait_for(10ms), ensemble::Error);
  svc->start();  // still usable
  CHECK(svc->state() == ensemble::ServiceState::registered);
}

TEST_CASE("a service outliving its Client cannot start or dial") {
  Double d;
  std::shared_ptr<ensemble::ChatService> orphan;
  std::shared_ptr<ensemble::ChatService> ended;
  {
    ensemble::Client client(d.client_options());
    orphan = client.service("orphan");
    ended = client.service("ended");
    ended->start();
  }
  CHECK_THROWS_AS(orphan->start(), ensemble::ServiceClosedError);
  CHECK(orphan->state() == ensemble::ServiceState::closed);
  CHECK(orphan->wait().error_code() == grpc::StatusCode::CANCELLED);
  CHECK(d.daemon.service_address("orphan").empty());
  CHECK_THROWS_MATCHES(ended->connect_peer(peer_address(3)), ensemble::RpcError,
                       Catch::Predicate<ensemble::RpcError>(
                           [](const auto& e) { return e.code() == grpc::StatusCode::CANCELLED; }));
  CHECK_THROWS_AS(ended->connect_peer(peer_address(3), [](ensemble::Result<ensemble::ConnectResult>) {}),
                  ensemble::RpcError);
}

// ---- 6. No library thread outlives the Client ----

TEST_CASE("the reconnect policy waits on gRPC's threads, not on a thread of its own") {
  Scripted d;
  ensemble::Client client(d.client_options());
  ensemble::ServiceOptions options;
  options.reconnect.enabled = true;
  options.reconnect.initial_backoff = 20ms;
  options.reconnect.max_backoff = 20ms;
  auto svc = client.service("no-threads", options);
  std::atomic<int> registering{0};
  std::atomic<pid_t> retry_thread{0};
  svc->on_state([&](ensemble::ServiceState s) {
    // The second `registering` is the retry, announced from where the backoff ended.
    if (s == ensemble::ServiceState::registering && registering.fetch_add(1) == 1) retry_thread = ::gettid();
  });
  svc->start();
  d.daemon.drop_all();
  REQUIRE(eventually([&] { return registering.load() == 2 && svc->state() == ensemble::ServiceState::registered; }));
  // A thread made for the backoff would be gone by now; gRPC's own threads stay.
  std::this_thread::sleep_for(300ms);
  CHECK(thread_alive(retry_thread.load()));
  svc->close();
  CHECK(svc->wait().ok());
}

TEST_CASE("~Client ends a service waiting out a long backoff at once") {
  Scripted d;
  std::shared_ptr<ensemble::ChatService> svc;
  std::atomic<int> closed{0};
  const auto t0 = std::chrono::steady_clock::now();
  {
    ensemble::Client client(d.client_options());
    ensemble::ServiceOptions options;
    options.reconnect.enabled = true;
    options.reconnect.initial_backoff = 10s;
    options.reconnect.max_backoff = 10s;
    svc = client.service("backing-off", options);
    svc->on_closed([&](const grpc::Status&) { closed++; });
    svc->start();
    d.daemon.drop_all();
    REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::reconnecting; }));
    // ~Client here: the 10 s wait is cancelled and the service ends before it returns.
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(closed.load() == 1);
  CHECK(svc->state() == ensemble::ServiceState::closed);
  CHECK(svc->wait().error_code() == grpc::StatusCode::CANCELLED);
}

// ---- 8. Misuse that used to compile, and options out of range ----

namespace misuse {
using Reactor = grpc::ClientBidiReactor<ensemble::api::ServiceClientMessage, ensemble::api::ServiceServerMessage>;
static_assert(!std::is_convertible_v<ensemble::ChatService*, Reactor*>,
              "a Service must not be usable as a raw gRPC reactor");
template <class S>
concept can_start_write = requires(S& s, ensemble::api::ServiceClientMessage* m) { s.StartWrite(m); };
template <class S>
concept can_add_hold = requires(S& s) { s.AddHold(); };
template <class S>
concept can_start_call = requires(S& s) { s.StartCall(); };
static_assert(!can_start_write<ensemble::ChatService> && !can_start_write<ensemble::RpcService>);
static_assert(!can_add_hold<ensemble::ChatService> && !can_start_call<ensemble::ChatService>);

// `{}` in the last position has no meaning: it could be CallOptions or a callback, so it
// does not compile. Spell out CallOptions{} or the callback.
template <class C>
concept status_with_braces = requires(C& c) { c.get_status({}); };
template <class C>
concept send_with_braces = requires(C& c) { c.send("a", "t", {}); };
template <class C>
concept send_file_with_braces =
    requires(C& c, std::function<void(const ensemble::FileProgress&)> p) { c.send_file("a", "p", p, {}); };
template <class S>
concept connect_peer_with_braces = requires(S& s) { s.connect_peer("a", {}); };
static_assert(!status_with_braces<ensemble::Client> && !send_with_braces<ensemble::Client>);
static_assert(!send_file_with_braces<ensemble::Client> && !connect_peer_with_braces<ensemble::ChatService>);
}  // namespace misuse

TEST_CASE("a discarded events() or send_file() handle ends the call at once") {
  Double d;
  ensemble::Client client(d.client_options());
  std::atomic<int> end_code{-1};
  static_cast<void>(client.events([](const ensemble::DaemonEvent&) {},
                                  [&](const grpc::Status& s) { end_code = static_cast<int>(s.error_code()); }));
  // Released at the end of the statement: cancelled, and on_end has already run.
  CHECK(end_code.load() == static_cast<int>(grpc::StatusCode::CANCELLED));
  CHECK(client.open_calls() == 0);

  // A synthetic peer may take a small file before the cancel lands: what is certain is
  // that on_done has run by the end of the statement.
  std::atomic<int> done{0};
  static_cast<void>(client.send_file(peer_address(4), "/etc/hostname", {},
                                     [&](ensemble::Result<ensemble::FileProgress>) { done++; }));
  CHECK(done.load() == 1);
  CHECK(client.open_calls() == 0);
}

TEST_CASE("reconnect and registration settings out of range are a ConfigError at construction") {
  Double d;
  ensemble::Client client(d.client_options());
  auto with = [](auto change) {
    ensemble::ServiceOptions o;
    change(o);
    return o;
  };
  using O = ensemble::ServiceOptions;
  CHECK_THROWS_WITH(client.service("x", with([](O& o) { o.reconnect.jitter = 1.5; })), Catch::Contains("jitter"));
  CHECK_THROWS_AS(client.service("x", with([](O& o) { o.reconnect.jitter = -0.1; })), ensemble::ConfigError);
  CHECK_THROWS_WITH(client.service("x", with([](O& o) { o.reconnect.multiplier = 0.5; })),
                    Catch::Contains("multiplier"));
  CHECK_THROWS_AS(client.service("x", with([](O& o) { o.reconnect.initial_backoff = -1ms; })),
                  ensemble::ConfigError);
  CHECK_THROWS_AS(client.service("x", with([](O& o) { o.reconnect.max_backoff = 10ms; })),
                  ensemble::ConfigError);  // below the default initial_backoff
  CHECK_THROWS_AS(client.service("x", with([](O& o) { o.reconnect.max_attempts = -1; })), ensemble::ConfigError);
  CHECK_THROWS_WITH(client.service("x", with([](O& o) { o.registration_timeout = -1ms; })),
                    Catch::Contains("registration_timeout"));
  CHECK_NOTHROW(client.service("x", with([](O& o) {
    o.reconnect.jitter = 1;
    o.reconnect.multiplier = 1;
    o.registration_timeout = 0ms;
  })));
}

// ---- 9. Releasing a service whose handler takes a lock you hold ----

TEST_CASE("the safe way to release a service whose handler takes your lock") {
  Double d;
  ensemble::Client client(d.client_options());
  std::mutex state_mu;  // the application's lock; the handler takes it
  int handled = 0;
  std::shared_ptr<ensemble::ChatService> svc = client.service("locked");
  svc->on_chat([&](const ensemble::ChatMessage&) {
    std::lock_guard lock(state_mu);
    ++handled;
  });
  svc->start();
  std::atomic<bool> stop{false};
  std::thread traffic([&] {
    while (!stop.load()) {
      d.daemon.inject_chat("locked", peer_address(5), "tick");
      std::this_thread::sleep_for(1ms);
    }
  });
  REQUIRE(eventually([&] {
    std::lock_guard lock(state_mu);
    return handled > 10;
  }));
  // Releasing under state_mu would wait for the stream's end while a handler waits for
  // state_mu: a deadlock. Take the pointer out under the lock, release it after.
  std::shared_ptr<ensemble::ChatService> doomed;
  {
    std::lock_guard lock(state_mu);
    doomed = std::move(svc);
  }
  auto released = std::async(std::launch::async, [&] { doomed.reset(); });
  CHECK(released.wait_for(5s) == std::future_status::ready);
  int after_release = 0;
  {
    std::lock_guard lock(state_mu);
    after_release = handled;
  }
  std::this_thread::sleep_for(50ms);
  stop = true;
  traffic.join();
  std::lock_guard lock(state_mu);
  CHECK(handled == after_release);  // no handler ran after the release returned
}

}  // namespace test_lifetimes
