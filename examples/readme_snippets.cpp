// The README's short snippets that do not belong to one of the example bots, as real code:
// this file is built as build/examples/readme_snippets and run as a test, which calls every
// snippet against an in-process daemon double. examples/tests/readme_sync.py checks that
// each ```cpp block of the README appears verbatim in the file it names, so the README
// cannot drift from code that compiles and runs.
#include "common/demo.hpp"
#include "common/output.hpp"

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <unistd.h>

namespace snippets {

// README: "Connect and register"
void register_and_print(const std::string& socket_path, const std::string& seed_file) {
  ensemble::Client client({.socket_path = socket_path,
                           .auth_seed = ensemble::Seed::from_file(seed_file)});
  auto echo = client.service("echo", {.acl = ensemble::ACL::contacts});
  echo->start();  // blocks until the daemon answers; throws RegistrationError if it refuses
  std::cout << "Registered: " << echo->address() << " (onion=" << echo->onion() << ")\n";
}

// README: "Connecting" (a Client does no I/O until its first call)
ensemble::Client over_unix_socket() {
  return ensemble::Client({.socket_path = "/run/ensemble/sock"});  // "unix:///…" works too
}
ensemble::Client over_loopback_tcp(ensemble::Seed admin) {
  return ensemble::Client({.addr = "localhost:9090", .auth_seed = std::move(admin)});
}
ensemble::Client over_tls(ensemble::Seed admin) {  // verified against the system trust store
  return ensemble::Client({.addr = "me.example:443", .tls = true, .auth_seed = std::move(admin)});
}
ensemble::Client over_tls_with_lan_ca(std::string ca_pem) {  // trust only this CA bundle
  return ensemble::Client({.addr = "daemon.lan:9090", .tls_root_certs = std::move(ca_pem)});
}
ensemble::Client over_tls_insecure() {  // DEVELOPMENT ONLY: no certificate checks at all
  return ensemble::Client({.addr = "dev-box:9090", .tls_insecure = true});
}

// README: "Auth seeds"
ensemble::ClientOptions signed_options(const std::filesystem::path& seed_file) {
  ensemble::ClientOptions options;
  options.socket_path = "/run/ensemble/sock";
  options.auth_seed = ensemble::Seed::from_file(seed_file);  // 32 raw bytes or 64 hex chars
  return options;
}

// README: "Supervised services and Client::from_env"
int supervised_main() {
  const auto ctx = ensemble::SpawnContext::from_env();  // socket / name / token / data_dir
  auto client = ensemble::Client::from_env();
  auto svc = client.service(ctx.service_name.value_or("my-service"));
  svc->start();
  // ctx.data_dir is the writable directory the daemon allocated for this service.
  std::cout << svc->name() << " registered; supervised: " << ctx.supervised() << "\n";
  svc->close();
  return svc->wait().ok() ? 0 : 1;
}

// README: "Threading and lifetimes": slow work goes to a thread of your own, so the handler
// returns at once and the stream keeps reading.
class WorkQueue {
 public:
  WorkQueue() : thread_([this] { run(); }) {}
  ~WorkQueue() {  // drops what has not started, finishes the job in progress
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      jobs_.clear();
    }
    wake_.notify_one();
    thread_.join();
  }
  void push(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      try {
        job();
      } catch (const ensemble::ServiceClosedError&) {
        // the service ended while the job ran; nothing left to answer
      }
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

std::string expensive_answer(const std::string& question) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a database, a model, ...
  return "answer to " + question;
}

// README: "Slow handlers and shutdown": turns of different peers at the same time (up to 8),
// each peer's in order, and a stop that drains them.
int slow_turns_bot(ensemble::Client& client, std::stop_token stop) {
  ensemble::ThreadPool pool(8);  // eight threads of yours for turns that take their time
  auto bot = client.service("slow-bot", {.executor = pool.executor(), .max_turns_in_flight = 8});
  bot->on_chat([](ensemble::ChatService& self, const ensemble::ChatMessage& m) {
    self.send_message(m.from_addr, expensive_answer(m.text));  // other peers go on meanwhile
  });
  bot->stop_on(stop, std::chrono::seconds(10));  // drain: finish, answer the queue for 10 s, close
  bot->start();  // throws RegistrationError (CANCELLED) if the stop comes first
  return bot->wait().ok() ? 0 : 1;  // OK once drained and closed
}

// README: "Slow handlers and shutdown": the main of such a bot, stopped by Ctrl-C or SIGTERM
// at any moment (before the daemon answers, while registering, with turns in flight).
int slow_bot_main() {
  ensemble::SignalStop stop;  // from here on SIGINT / SIGTERM request the stop
  auto client = ensemble::Client::from_env();
  return slow_turns_bot(client, stop.token());
}

// README: "Threading and lifetimes": every handler on a thread of your own (an event loop,
// here the WorkQueue), so a handler may take its time and the service still reads on.
void bot_on_my_thread(ensemble::Client& client, WorkQueue& loop, std::chrono::milliseconds run_for) {
  ensemble::ServiceOptions options;
  options.executor = [&loop](std::function<void()> task) { loop.push(std::move(task)); };
  auto bot = client.service("loop-bot", options);  // `loop` outlives the service
  bot->on_chat([](ensemble::ChatService& self, const ensemble::ChatMessage& m) {  // on the loop's thread
    self.send_message(m.from_addr, expensive_answer(m.text));
  });
  bot->on_events_dropped([](std::uint64_t n) { std::cerr << n << " events lost: queue full\n"; });
  bot->start();
  std::this_thread::sleep_for(run_for);
  bot->close();
  bot->wait();  // after this no handler of the bot runs, on the loop or anywhere
}

// README: "Service events and backpressure": no handlers, so the service is read as a
// sequence. Answers every chat until `quiet` passes without an event.
int answer_until_quiet(ensemble::Client& client, std::chrono::milliseconds quiet) {
  auto svc = client.service("pull-bot");
  svc->start();
  int answered = 0;
  while (auto event = svc->next_event(quiet)) {  // std::nullopt: nothing within `quiet`
    if (auto* chat = std::get_if<ensemble::ChatMessage>(&*event)) {
      svc->send_message(chat->from_addr, "got: " + chat->text);
      ++answered;
    } else if (auto* lost = std::get_if<ensemble::EventsDropped>(&*event)) {
      std::cerr << lost->count << " events lost before this point\n";
    }
  }
  svc->close();
  svc->wait();  // next_event() now throws ServiceClosedError once the queue is empty
  return answered;
}

// README: "Errors": typed exceptions, branch on the type or the status code.
bool register_unless_taken(ensemble::Client& client, const std::string& name) {
  auto svc = client.service(name);
  try {
    svc->start();
    return true;
  } catch (const ensemble::RegistrationError& e) {
    if (e.code() == grpc::StatusCode::ALREADY_EXISTS) return false;  // someone has the name
    throw;  // UNAVAILABLE, UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, ...
  }
}

// README: "Reconnect policy"
std::shared_ptr<ensemble::ChatService> resilient_service(ensemble::Client& client) {
  ensemble::ServiceOptions options;
  options.reconnect = {.enabled = true,
                       .initial_backoff = std::chrono::milliseconds(200),
                       .max_backoff = std::chrono::seconds(5)};
  auto svc = client.service("resilient", options);
  svc->on_state([](ensemble::ServiceState state) {
    if (state == ensemble::ServiceState::reconnecting) std::cerr << "daemon gone; retrying\n";
  });
  return svc;
}

// README: "Node calls without blocking"
void print_status_later(ensemble::Client& client, std::function<void()> done) {
  client.get_status([done](ensemble::Result<ensemble::NodeStatus> r) {  // runs on a gRPC thread
    if (r) {
      std::cout << "tor_state " << r.value().tor_state << ", " << r.value().peer_count << " peers\n";
    } else {
      std::cout << "GetStatus failed: " << r.status()->error_message() << "\n";
    }
    done();
  });
}

// README: "Testing your bot against the double". The bot under test: echoes and accepts.
std::shared_ptr<ensemble::ChatService> make_my_echo_bot(ensemble::Client& client) {
  auto bot = client.service("echo");
  ensemble::ChatService* self = bot.get();
  bot->on_chat([self](const ensemble::ChatMessage& m) { self->send_message(m.from_addr, m.text); });
  bot->on_connection_request([self](const ensemble::ConnectionRequest& r) { self->accept_connection(r.request_id); });
  bot->start();
  return bot;
}

bool echo_bot_passes(const std::string& socket_path, const std::string& peer) {
  using namespace std::chrono_literals;
  ensemble::testing::DaemonDouble daemon({.unix_socket = socket_path});
  ensemble::Client client({.socket_path = socket_path});
  auto bot = make_my_echo_bot(client);                 // the bot under test, registered
  daemon.inject_chat("echo", peer, "hi");              // also inject_bytes, _connection_request,
                                                       // _introduction, _event (raw bytes)
  const bool replied = daemon.wait_peer_inbox(peer, 1, 2s);  // what the bot sent that peer
  auto sent = daemon.actions("echo");                  // every action, in arrival order
  const auto request_id = daemon.inject_connection_request("echo", peer);
  auto said = daemon.wait_decision(request_id, 2s);    // "accepted" / "rejected: <reason>"
  return replied && sent.size() == 1 && said == "accepted" &&
         daemon.dropped_events("echo") == 0;           // what a slow handler lost
}

void log_to(std::ostream& my_log) {
  ensemble::set_log_sink([&my_log](ensemble::LogLevel level, std::string_view message) {
    static std::mutex mu;  // the sink may run on several gRPC threads at once
    std::lock_guard lock(mu);
    my_log << "[ensemble " << ensemble::to_string(level) << "] " << message << '\n';
  });
}

void log_records_to(std::ostream& my_log) {
  ensemble::set_log_sink([&my_log](const ensemble::LogRecord& r) {
    static std::mutex mu;
    std::lock_guard lock(mu);
    my_log << ensemble::to_string(r.level) << " service=" << r.service << " call=" << r.call << ": "
           << r.message << '\n';
  });
}

// Counts the calls and streams of each method ("/ensemble.api.EnsembleService/GetStatus"),
// as a metrics exporter would; OpenTelemetry's gRPC instrumentation plugs in the same way.
class CallCounter final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo* info) override {
    std::lock_guard lock(mu_);  // calls start on many threads
    ++calls_[info->method()];
    return nullptr;  // counted; nothing to do inside the call
  }
  int calls(const std::string& method) {
    std::lock_guard lock(mu_);
    return calls_[method];
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> calls_;
};

ensemble::Client observed_client(ensemble::ClientOptions options, std::shared_ptr<CallCounter> counter,
                                 std::function<void(std::string_view)> note) {
  options.channel_args.SetUserAgentPrefix("echo-bot/1.2");  // any channel argument the library does not set
  options.interceptors.push_back(std::move(counter));
  options.on_connectivity = [note](ensemble::Connectivity change) {  // a gRPC thread, one at a time
    note(ensemble::to_string(change));                                // "connected", "lost", "reconnected"
  };
  return ensemble::Client(std::move(options));
}

}  // namespace snippets

// Runs each snippet against the double; any exception or wrong result fails the run.
int main() {
  using examples::say;
  try {
    examples::DemoDaemon demo;
    auto& daemon = demo.daemon();
    const ensemble::ClientOptions options = demo.client_options();

    // A seed file holding the demo's admin seed, as 64 hex characters.
    const auto seed_file = std::filesystem::temp_directory_path() /
                           ("readme-snippets-" + std::to_string(::getpid()) + ".seed");
    {
      std::ofstream out(seed_file);
      static constexpr char hex[] = "0123456789abcdef";
      for (std::uint8_t b : options.auth_seed->bytes()) out << hex[b >> 4] << hex[b & 15];
      out << "\n";
    }
    std::filesystem::permissions(seed_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

    snippets::register_and_print(options.socket_path, seed_file.string());
    say("ok: register_and_print");

    {
      std::ostringstream diagnostics;
      snippets::log_to(diagnostics);
      std::filesystem::permissions(seed_file, std::filesystem::perms::group_read,
                                   std::filesystem::perm_options::add);
      ensemble::Seed::from_file(seed_file.string());  // a seed others can read: a warning
      ensemble::set_log_sink({});
      if (diagnostics.str().rfind("[ensemble warning] ", 0) != 0) {
        throw std::runtime_error("the log sink got: " + diagnostics.str());
      }
      std::filesystem::permissions(seed_file, std::filesystem::perms::group_read,
                                   std::filesystem::perm_options::remove);
    }
    say("ok: log_to");

    {
      std::ostringstream records;
      snippets::log_records_to(records);
      {
        ensemble::Client client(options);
        auto svc = client.service("logged");
        svc->start();
        svc->close();
        svc->wait();
      }
      ensemble::set_log_sink({});
      if (records.str().rfind("info service=logged call=RegisterService: service \"logged\" registered as E", 0) != 0) {
        throw std::runtime_error("the record sink got: " + records.str());
      }
    }
    say("ok: log_records_to");

    {
      auto counter = std::make_shared<snippets::CallCounter>();
      std::mutex mu;
      std::condition_variable cv;
      std::vector<std::string> notes;
      {
        auto client = snippets::observed_client(options, counter, [&](std::string_view change) {
          std::lock_guard lock(mu);
          notes.emplace_back(change);
          cv.notify_all();
        });
        client.get_status();
        client.get_identity();
        std::unique_lock lock(mu);
        if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return !notes.empty(); })) {
          throw std::runtime_error("observed_client: no connectivity change");
        }
      }
      if (notes != std::vector<std::string>{"connected"} ||
          counter->calls("/ensemble.api.EnsembleService/GetStatus") != 1 ||
          counter->calls("/ensemble.api.EnsembleService/GetIdentity") != 1) {
        throw std::runtime_error("observed_client: wrong notes or counts");
      }
    }
    say("ok: observed_client counted its calls and saw the daemon connected");

    snippets::over_unix_socket();
    snippets::over_loopback_tcp(*options.auth_seed);
    snippets::over_tls(*options.auth_seed);
    // Certificate text is checked when the Client is built: give it real certificates (the
    // bundle gRPC itself ships, which libgrpc installs; a LAN CA in real life).
    std::ifstream bundle("/usr/share/grpc/roots.pem");
    snippets::over_tls_with_lan_ca({std::istreambuf_iterator<char>(bundle), std::istreambuf_iterator<char>()});
    snippets::over_tls_insecure();
    say("ok: every connect form builds a Client");

    const auto signed_opts = snippets::signed_options(seed_file);
    if (signed_opts.auth_seed->bytes()[0] != options.auth_seed->bytes()[0]) throw std::runtime_error("seed differs");
    std::filesystem::remove(seed_file);
    say("ok: signed_options");

    // The supervised path: a minted token is the only auth (no seed in the environment).
    ::setenv("ENSEMBLE_SOCKET", options.socket_path.c_str(), 1);
    ::setenv("ENSEMBLE_SERVICE_NAME", "supervised-bot", 1);
    ::setenv("ENSEMBLE_SERVICE_TOKEN", daemon.mint_token("supervised-bot").c_str(), 1);
    ::unsetenv("ENSEMBLE_AUTH_SEED");
    if (snippets::supervised_main() != 0) throw std::runtime_error("supervised_main failed");
    say("ok: supervised_main");

    ensemble::Client client(options);

    // slow_bot_main: chats from three peers at once, then a real SIGTERM to this process;
    // the bot drains and its main returns 0.
    std::thread driver([&] {
      if (!daemon.wait_registered("slow-bot", std::chrono::seconds(5))) return;
      for (std::uint8_t p = 1; p <= 3; ++p) {
        std::array<std::uint8_t, 32> key{};
        key.fill(p);
        for (int i = 0; i < 4; ++i) daemon.inject_chat("slow-bot", ensemble::address_from_public_key(key), "q" + std::to_string(i));
      }
      daemon.wait_for_actions("slow-bot", 3, std::chrono::seconds(5));
      ::kill(::getpid(), SIGTERM);  // to the process, as a supervisor sends it
    });
    ::setenv("ENSEMBLE_SERVICE_TOKEN", daemon.mint_token("slow-bot").c_str(), 1);  // from_env: supervised
    const int slow_status = snippets::slow_bot_main();
    driver.join();
    if (slow_status != 0 || daemon.action_count("slow-bot") < 3) {
      throw std::runtime_error("slow_bot_main returned " + std::to_string(slow_status) + " after " +
                               std::to_string(daemon.action_count("slow-bot")) + " answers");
    }
    say("ok: slow_bot_main answered ", daemon.action_count("slow-bot"), " chats and drained on SIGTERM");

    {
      snippets::WorkQueue loop;
      std::thread loop_driver([&] {
        if (!daemon.wait_registered("loop-bot", std::chrono::seconds(5))) return;
        for (int i = 0; i < 3; ++i) daemon.inject_chat("loop-bot", daemon.node_address(), "q" + std::to_string(i));
      });
      snippets::bot_on_my_thread(client, loop, std::chrono::milliseconds(800));
      loop_driver.join();
    }
    if (daemon.action_count("loop-bot") != 3) throw std::runtime_error("bot_on_my_thread answered " + std::to_string(daemon.action_count("loop-bot")) + " of 3");
    say("ok: bot_on_my_thread answered 3 chats from its executor");

    std::thread pull_driver([&] {
      if (!daemon.wait_registered("pull-bot", std::chrono::seconds(5))) return;
      for (int i = 0; i < 3; ++i) daemon.inject_chat("pull-bot", daemon.node_address(), "p" + std::to_string(i));
    });
    const int pulled = snippets::answer_until_quiet(client, std::chrono::milliseconds(1500));
    pull_driver.join();
    if (pulled != 3 || daemon.action_count("pull-bot") != 3) throw std::runtime_error("answer_until_quiet answered " + std::to_string(pulled) + " of 3");
    say("ok: answer_until_quiet pulled and answered 3 chats");

    auto holder = client.service("taken");
    holder->start();
    if (snippets::register_unless_taken(client, "taken")) throw std::runtime_error("registered a taken name");
    if (!snippets::register_unless_taken(client, "free")) throw std::runtime_error("could not register a free name");
    say("ok: register_unless_taken");

    auto resilient = snippets::resilient_service(client);
    resilient->start();
    say("ok: resilient_service registered");

    // Any valid address nobody hosts is a synthetic peer of the double.
    std::array<std::uint8_t, 32> key{};
    key.fill(7);
    const auto bot_socket = std::filesystem::temp_directory_path() /
                            ("readme-snippets-" + std::to_string(::getpid()) + ".sock");
    if (!snippets::echo_bot_passes(bot_socket.string(), ensemble::address_from_public_key(key))) {
      throw std::runtime_error("echo_bot_passes failed");
    }
    say("ok: echo_bot_passes");

    std::mutex mu;
    std::condition_variable cv;
    bool status_done = false;
    snippets::print_status_later(client, [&] {
      std::lock_guard lock(mu);
      status_done = true;
      cv.notify_all();
    });
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return status_done; })) throw std::runtime_error("no status");
    say("ok: print_status_later");
  } catch (const std::exception& e) {
    std::cerr << "readme_snippets: FAILED: " << e.what() << "\n";
    return 1;
  }
  say("all README snippets ran");
  return 0;
}
