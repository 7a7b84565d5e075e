// Hooks for observability (ClientOptions::channel_args, ::interceptors, ::on_connectivity,
// and the log sink's records): what an OpenTelemetry or metrics integration would attach,
// seen working over real sockets against the daemon double, a test server and
// ensemble-loopbackd processes.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/identity_server.hpp"
#include "support/loopbackd_process.hpp"
#include "support/polling.hpp"
#include "support/tempdir.hpp"
#include "support/thrown.hpp"

#include <grpcpp/support/client_interceptor.h>
#include <grpcpp/support/interceptor.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace test_observability {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::Connectivity;
using test_support::eventually;
using test_support::peer_address;
using test_support::thrown;
using RpcType = grpc::experimental::ClientRpcInfo::Type;

namespace {

// What a counting interceptor saw of one method.
struct Tally {
  RpcType type = RpcType::UNARY;
  int started = 0;
  int finished = 0;
  int messages_sent = 0;
  int messages_received = 0;
  std::vector<grpc::StatusCode> statuses;
};

// A metrics interceptor as a user would write one: counts calls, messages and final
// statuses per method.
class CountingFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo* info) override {
    {
      std::lock_guard lock(mu_);
      Tally& t = tallies_[info->method()];
      t.type = info->type();
      ++t.started;
    }
    return new Counting(*this, info->method());
  }

  std::map<std::string, Tally> tallies() {
    std::lock_guard lock(mu_);
    return tallies_;
  }

 private:
  class Counting final : public grpc::experimental::Interceptor {
   public:
    Counting(CountingFactory& factory, std::string method) : factory_(factory), method_(std::move(method)) {}
    void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
      using Hook = grpc::experimental::InterceptionHookPoints;
      {
        std::lock_guard lock(factory_.mu_);
        Tally& t = factory_.tallies_[method_];
        if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_MESSAGE)) ++t.messages_sent;
        if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_MESSAGE) && methods->GetRecvMessage() != nullptr) {
          ++t.messages_received;
        }
        if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_STATUS)) {
          ++t.finished;
          t.statuses.push_back(methods->GetRecvStatus()->error_code());
        }
      }
      methods->Proceed();
    }

   private:
    CountingFactory& factory_;
    std::string method_;
  };

  std::mutex mu_;
  std::map<std::string, Tally> tallies_;
};

std::string method(const char* name) { return std::string("/ensemble.api.EnsembleService/") + name; }

// Records what reaches the log sink, as LogRecords, for the test's scope.
class RecordSink {
 public:
  struct Line {
    ensemble::LogLevel level;
    std::string message, service, call;
  };
  RecordSink() {
    ensemble::set_log_sink([this](const ensemble::LogRecord& r) {
      std::lock_guard lock(mu_);
      lines_.push_back({r.level, std::string(r.message), std::string(r.service), std::string(r.call)});
    });
  }
  ~RecordSink() { ensemble::set_log_sink({}); }
  std::vector<Line> lines() {
    std::lock_guard lock(mu_);
    return lines_;
  }
  std::optional<Line> find(const std::string& part) {
    for (const auto& l : lines()) {
      if (l.message.find(part) != std::string::npos) return l;
    }
    return std::nullopt;
  }

 private:
  std::mutex mu_;
  std::vector<Line> lines_;
};

// The changes on_connectivity reported, and on which threads.
struct ConnectivityLog {
  std::mutex mu;
  std::vector<Connectivity> changes;
  std::set<std::thread::id> threads;
  std::function<void(Connectivity)> callback(std::shared_ptr<int> alive = nullptr) {
    return [this, alive](Connectivity c) {
      std::lock_guard lock(mu);
      changes.push_back(c);
      threads.insert(std::this_thread::get_id());
    };
  }
  std::vector<Connectivity> seen() {
    std::lock_guard lock(mu);
    return changes;
  }
};

// Blocking GetStatus until it succeeds (a restarted daemon is redialled within 2 s).
bool status_answers(ensemble::Client& client) {
  return eventually([&] {
    try {
      client.get_status();
      return true;
    } catch (const ensemble::RpcError&) {
      return false;
    }
  });
}

}  // namespace

TEST_CASE("a counting interceptor sees every unary call and stream of a bot") {
  test_support::TempDir dir;
  const auto socket = (dir / "api.sock").string();
  ensemble::testing::DaemonDouble daemon({.unix_socket = socket});
  auto counting = std::make_shared<CountingFactory>();
  const std::string peer = peer_address(7);
  {
    ensemble::Client client({.socket_path = socket, .interceptors = {counting}});

    // The bot: an echo service (RegisterService, bidirectional) ...
    auto echo = client.service("echo");
    ensemble::ChatService* self = echo.get();
    echo->on_chat([self](const ensemble::ChatMessage& m) { self->send_message(m.from_addr, "echo: " + m.text); });
    echo->start();
    REQUIRE(daemon.inject_chat("echo", peer, "hi"));
    REQUIRE(daemon.wait_peer_inbox(peer, 1, 5s));

    // ... its node calls, blocking and callback forms (unary) ...
    client.get_identity();
    REQUIRE(client.connect(peer).accepted);
    client.send(peer, "hello from the operator");
    std::promise<bool> status;
    client.get_status([&](ensemble::Result<ensemble::NodeStatus> r) { status.set_value(r.ok()); });
    REQUIRE(status.get_future().get());

    // ... and the node event stream (Subscribe, server streaming), open until ~Client.
    std::atomic<int> events{0};
    auto subscription = client.events([&](const ensemble::DaemonEvent&) { ++events; });
    // Subscribe sends nothing before its first event: publish until one arrives.
    for (int i = 0; i < 250 && events == 0; ++i) {
      daemon.publish_node_event("marker", "{}");
      std::this_thread::sleep_for(20ms);
    }
    REQUIRE(events > 0);

    echo->close();
    REQUIRE(echo->wait().ok());
  }

  const auto tallies = counting->tallies();
  std::vector<std::string> methods;
  for (const auto& [name, _] : tallies) methods.push_back(name);
  CHECK_THAT(methods, Catch::Matchers::UnorderedEquals(std::vector<std::string>{
                          method("RegisterService"), method("GetIdentity"), method("Connect"),
                          method("SendMessage"), method("GetStatus"), method("Subscribe")}));
  for (const auto& [name, t] : tallies) {
    INFO(name);
    CHECK(t.started == 1);
    CHECK(t.finished == 1);  // every call's end was seen, the cancelled subscription's too
  }
  const Tally& stream = tallies.at(method("RegisterService"));
  CHECK(stream.type == RpcType::BIDI_STREAMING);
  CHECK(stream.messages_sent == 2);      // the manifest and the echo
  CHECK(stream.messages_received >= 2);  // `registered` and the chat
  CHECK(stream.statuses == std::vector{grpc::StatusCode::OK});
  for (const char* unary : {"GetIdentity", "Connect", "SendMessage", "GetStatus"}) {
    INFO(unary);
    CHECK(tallies.at(method(unary)).type == RpcType::UNARY);
    CHECK(tallies.at(method(unary)).messages_sent == 1);
    CHECK(tallies.at(method(unary)).messages_received == 1);
    CHECK(tallies.at(method(unary)).statuses == std::vector{grpc::StatusCode::OK});
  }
  const Tally& events = tallies.at(method("Subscribe"));
  CHECK(events.type == RpcType::SERVER_STREAMING);
  CHECK(events.messages_received >= 1);
  CHECK(events.statuses == std::vector{grpc::StatusCode::CANCELLED});  // released by ~Client
}

TEST_CASE("channel_args reach the channel: the daemon sees the user agent prefix") {
  test_support::TempDir dir;
  const auto seed = ensemble::Seed::generate();
  test_support::IdentityServer server(test_support::Transport::unix_socket,
                                      ensemble::Signer(seed).public_key(), dir.path());
  ensemble::ClientOptions options;
  options.socket_path = (dir / "api.sock").string();
  options.auth_seed = seed;
  options.channel_args.SetUserAgentPrefix("echo-bot/1.2");
  ensemble::Client client(options);
  client.get_identity();
  const auto agents = server.seen_user_agents();
  REQUIRE(agents.size() == 1);
  CHECK(agents[0].rfind("echo-bot/1.2 grpc-c++/", 0) == 0);
}

TEST_CASE("channel_args may not set what the library sets itself: a ConfigError names each") {
  for (const auto& owned : ensemble::detail::kOwnedChannelArgs) {
    INFO(owned.key);
    ensemble::ClientOptions options;
    options.socket_path = "/run/ensemble/sock";
    options.channel_args.SetInt(std::string(owned.key), 1);
    const std::string message = thrown<ensemble::ConfigError>([&] { ensemble::Client client(options); });
    CHECK(message == "ClientOptions::channel_args sets an argument the library sets itself: \"" +
                         std::string(owned.key) + "\" (set by " + std::string(owned.governed_by) + ")");
  }

  ensemble::ClientOptions options;
  options.addr = "localhost:9090";
  options.channel_args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 1000);
  options.channel_args.SetUserAgentPrefix("fine/1");  // not the library's: allowed
  options.channel_args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);  // twice, named once
  options.channel_args.SetMaxReceiveMessageSize(1024);
  CHECK(thrown<ensemble::ConfigError>([&] { ensemble::Client client(options); }) ==
        "ClientOptions::channel_args sets arguments the library sets itself: \"grpc.keepalive_time_ms\" "
        "(set by ClientOptions::keepalive_interval); \"grpc.max_receive_message_length\" (set by the "
        "library: no limit on what the daemon sends)");
}

TEST_CASE("the owned list holds exactly the channel arguments the library sets, and the proxy") {
  // Keepalive on (the default), so every argument the library can set is set.
  ensemble::ClientOptions options;
  options.socket_path = "/run/ensemble/sock";
  grpc::ChannelArguments args;
  ensemble::detail::set_library_channel_args(args, options, ensemble::detail::check_options(options));
  std::set<std::string> set_by_library;
  const grpc_channel_args c = args.c_channel_args();
  for (std::size_t i = 0; i < c.num_args; ++i) {
    if (std::string_view(c.args[i].key) != GRPC_ARG_PRIMARY_USER_AGENT_STRING) set_by_library.insert(c.args[i].key);
  }
  // Never set, but refused: a proxy named here would carry calls the proxy rule keeps local.
  set_by_library.insert(GRPC_ARG_HTTP_PROXY);
  std::set<std::string> owned;
  for (const auto& o : ensemble::detail::kOwnedChannelArgs) owned.insert(std::string(o.key));
  CHECK(set_by_library == owned);
}

TEST_CASE("a null interceptor factory is a ConfigError naming its place") {
  ensemble::ClientOptions options;
  options.socket_path = "/run/ensemble/sock";
  options.interceptors = {std::make_shared<CountingFactory>(), nullptr};
  CHECK(thrown<ensemble::ConfigError>([&] { ensemble::Client client(options); }) ==
        "ClientOptions::interceptors[1] is null");
}

TEST_CASE("on_connectivity: connected, lost, reconnected, as blocking calls find the daemon") {
  test_support::TempDir dir;
  const auto socket = (dir / "api.sock").string();
  ConnectivityLog log;
  auto alive = std::make_shared<int>(0);
  {
    ensemble::Client client({.socket_path = socket, .on_connectivity = log.callback(alive)});

    // No daemon yet: failing to reach it is no news before it was ever reached.
    CHECK(thrown<ensemble::RpcError>([&] { client.get_status(); }).find("UNAVAILABLE") != std::string::npos);

    auto daemon = std::make_unique<ensemble::testing::DaemonDouble>(
        ensemble::testing::DaemonDoubleOptions{.unix_socket = socket});
    REQUIRE(status_answers(client));
    REQUIRE(eventually([&] { return log.seen() == std::vector{Connectivity::connected}; }));

    daemon.reset();
    REQUIRE(eventually([&] {
      try {
        client.get_status();
        return false;
      } catch (const ensemble::RpcError& e) {
        return e.code() == grpc::StatusCode::UNAVAILABLE;
      }
    }));
    REQUIRE(eventually([&] { return log.seen() == std::vector{Connectivity::connected, Connectivity::lost}; }));

    daemon = std::make_unique<ensemble::testing::DaemonDouble>(
        ensemble::testing::DaemonDoubleOptions{.unix_socket = socket});
    REQUIRE(status_answers(client));
    REQUIRE(eventually([&] {
      return log.seen() == std::vector{Connectivity::connected, Connectivity::lost, Connectivity::reconnected};
    }));
    client.get_identity();  // reaching it again is no news
  }
  // ~Client has returned: the callback is destroyed (its captures released), so it can
  // never run again; it never ran on this thread, inside a blocking call.
  CHECK(alive.use_count() == 1);
  CHECK(log.seen() == std::vector{Connectivity::connected, Connectivity::lost, Connectivity::reconnected});
  CHECK(log.threads.count(std::this_thread::get_id()) == 0);
}

TEST_CASE("on_connectivity follows a service through a daemon restart (ensemble-loopbackd)") {
  if (!test_support::have_loopbackd()) {
    WARN("ENSEMBLE_LOOPBACKD not set (run through meson test); skipping");
    return;
  }
  test_support::TempDir dir;
  const auto socket = (dir / "api.sock").string();
  const std::vector<std::string> args{"--api-socket", socket, "--data-dir", (dir / "data").string(),
                                      "--loopback-dir", (dir / "rdv").string()};
  auto daemon = std::make_unique<test_support::LoopbackdProcess>(args);
  ConnectivityLog log;
  auto alive = std::make_shared<int>(0);
  {
    ensemble::Client client({.socket_path = socket, .on_connectivity = log.callback(alive)});
    ensemble::ServiceOptions options;
    options.reconnect.enabled = true;
    options.reconnect.initial_backoff = 50ms;
    options.reconnect.max_backoff = 400ms;
    auto svc = client.service("phoenix", options);
    svc->start();
    REQUIRE(eventually([&] { return log.seen() == std::vector{Connectivity::connected}; }));

    daemon->stop(SIGKILL);  // the stream ends UNAVAILABLE; so do the attempts meanwhile
    REQUIRE(eventually([&] { return log.seen() == std::vector{Connectivity::connected, Connectivity::lost}; }));

    daemon = std::make_unique<test_support::LoopbackdProcess>(args);
    REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::registered; }));
    REQUIRE(eventually([&] {
      return log.seen() == std::vector{Connectivity::connected, Connectivity::lost, Connectivity::reconnected};
    }));
    svc->close();
    CHECK(svc->wait().ok());
  }
  CHECK(alive.use_count() == 1);
  CHECK(log.seen() == std::vector{Connectivity::connected, Connectivity::lost, Connectivity::reconnected});
}

TEST_CASE("an on_connectivity callback that throws is logged, and the next change still comes") {
  RecordSink sink;
  test_support::TempDir dir;
  const auto socket = (dir / "api.sock").string();
  std::atomic<int> calls{0};
  {
    auto daemon = std::make_unique<ensemble::testing::DaemonDouble>(
        ensemble::testing::DaemonDoubleOptions{.unix_socket = socket});
    ensemble::Client client({.socket_path = socket, .on_connectivity = [&](Connectivity) {
                               ++calls;
                               throw std::runtime_error("dashboard down");
                             }});
    REQUIRE(status_answers(client));
    daemon.reset();
    REQUIRE(eventually([&] {
      try {
        client.get_status();
      } catch (const ensemble::RpcError&) {
      }
      return calls == 2;
    }));
  }
  const auto line = sink.find("dashboard down");
  REQUIRE(line);
  CHECK(line->level == ensemble::LogLevel::error);
  CHECK(line->message == "the connectivity callback (ClientOptions::on_connectivity) threw: dashboard down");
}

TEST_CASE("log records carry the level and the service or call they concern") {
  RecordSink sink;
  ensemble::testing::DaemonDouble daemon;
  const std::string peer = peer_address(9);
  {
    ensemble::Client client({.addr = daemon.tcp_target()});
    auto svc = client.service("thrower");
    svc->on_chat([](const ensemble::ChatMessage&) { throw std::runtime_error("boom"); });
    svc->start();
    REQUIRE(daemon.inject_chat("thrower", peer, "hi"));
    REQUIRE(eventually([&] { return sink.find("boom").has_value(); }));

    std::promise<void> called;
    client.get_status([&](ensemble::Result<ensemble::NodeStatus>) {
      called.set_value();
      throw std::runtime_error("callback bug");
    });
    called.get_future().get();
    REQUIRE(eventually([&] { return sink.find("callback bug").has_value(); }));
    svc->close();
    svc->wait();
  }

  const auto registered = sink.find("registered as");
  REQUIRE(registered);
  CHECK(registered->level == ensemble::LogLevel::info);
  CHECK(registered->message.rfind("service \"thrower\" registered as E", 0) == 0);
  CHECK(registered->service == "thrower");
  CHECK(registered->call == "RegisterService");

  const auto handler = sink.find("boom");
  CHECK(handler->level == ensemble::LogLevel::error);
  CHECK(handler->message == "a handler of service \"thrower\" threw: boom");
  CHECK(handler->service == "thrower");

  const auto callback = sink.find("callback bug");
  REQUIRE(callback);
  CHECK(callback->level == ensemble::LogLevel::error);
  CHECK(callback->message == "GetStatus callback threw: callback bug");
  CHECK(callback->service.empty());
  CHECK(callback->call == "GetStatus");

  const auto ended = sink.find("ended:");
  REQUIRE(ended);
  CHECK(ended->level == ensemble::LogLevel::info);
  CHECK(ended->message == "service \"thrower\" ended: OK");
  CHECK(ended->service == "thrower");
}

TEST_CASE("a (level, message) sink gets warnings and errors only, as before records existed") {
  std::mutex mu;
  std::vector<std::pair<ensemble::LogLevel, std::string>> lines;
  ensemble::set_log_sink([&](ensemble::LogLevel level, std::string_view message) {
    std::lock_guard lock(mu);
    lines.emplace_back(level, message);
  });
  struct Restore {
    ~Restore() { ensemble::set_log_sink({}); }
  } restore;
  ensemble::testing::DaemonDouble daemon;
  {
    ensemble::Client client({.addr = daemon.tcp_target()});
    auto svc = client.service("short-form");
    svc->on_chat([](const ensemble::ChatMessage&) { throw std::runtime_error("boom"); });
    svc->start();  // logs "registered" at info: not for this sink
    REQUIRE(daemon.inject_chat("short-form", peer_address(3), "hi"));
    REQUIRE(eventually([&] {
      std::lock_guard lock(mu);
      return !lines.empty();
    }));
    svc->close();
    svc->wait();  // logs "ended" at info
  }
  std::lock_guard lock(mu);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].first == ensemble::LogLevel::error);
  CHECK(lines[0].second == "a handler of service \"short-form\" threw: boom");
}

TEST_CASE("the default stderr sink prints warnings and errors, not info") {
  test_support::StderrCapture err;
  ensemble::testing::DaemonDouble daemon;
  {
    ensemble::Client client({.addr = daemon.tcp_target()});
    auto svc = client.service("quiet");
    svc->start();
    svc->close();
    svc->wait();
  }
  CHECK(err.text().find("registered") == std::string::npos);
  CHECK(err.text().find("ended") == std::string::npos);
}

}  // namespace test_observability
