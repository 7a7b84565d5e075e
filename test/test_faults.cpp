// Faults from the host, the network and the daemon (issue 22), each kind kept as a test over
// real sockets: the host's proxy variables, a daemon's long status messages, certificate
// material that holds no certificate, failures that waiting cannot mend, peer data nested
// too deep or full of control characters, address spellings gRPC never dials, message kinds
// a newer daemon may send, counts and clocks at their limits, and the double at its edges.
//
// Servers: the daemon double where it can play the part, an OddDaemon (support/
// odd_daemon.hpp) for long status texts and unknown message kinds, a RecordingProxy for the
// proxy, a TLS server with a certificate made at run time.
#include <catch2/catch.hpp>

#include <ensemble/detail/bounded_json.hpp>
#include <ensemble/detail/escape.hpp>
#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/odd_daemon.hpp"
#include "support/polling.hpp"
#include "support/recording_proxy.hpp"
#include "support/scoped_env.hpp"
#include "support/scripted_daemon.hpp"
#include "support/tempdir.hpp"
#include "support/thrown.hpp"
#include "support/tls_material.hpp"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace test_faults {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;
using test_support::eventually;
using test_support::peer_address;
using test_support::ScopedEnv;
using test_support::thrown;

namespace {

constexpr auto kCall = ensemble::CallOptions{.timeout = std::chrono::seconds(10)};
constexpr auto kForever = std::chrono::milliseconds::max();

ensemble::Seed seed_of(std::uint8_t first) {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(first + i);
  return ensemble::Seed::from_bytes(bytes);
}

std::string config_error(const std::function<void()>& f) { return thrown<ensemble::ConfigError>(f); }

// What the log sink receives while it lives; the sink goes back to stderr afterwards.
class LogCapture {
 public:
  LogCapture() {
    ensemble::set_log_sink([this](ensemble::LogLevel, std::string_view message) {
      std::lock_guard lock(mu_);
      lines_.emplace_back(message);
    });
  }
  ~LogCapture() { ensemble::set_log_sink({}); }
  std::vector<std::string> lines_with(std::string_view part) const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& l : lines_) {
      if (l.find(part) != std::string::npos) out.push_back(l);
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

// The registration error start() throws.
ensemble::RegistrationError registration_error(ensemble::Service& svc) {
  try {
    svc.start();
  } catch (const ensemble::RegistrationError& e) {
    return e;
  }
  FAIL("start() succeeded");
  throw std::logic_error("unreachable");
}

ensemble::ServiceOptions waiting_options() { return test_support::waiting_options(20ms, 20ms); }

}  // namespace

// ---- 1. the host's proxy variables ----

TEST_CASE("a proxy in the environment never carries a call to this machine's daemon") {
  test_support::RecordingProxy proxy;
  ScopedEnv env;
  for (const char* variable : {"http_proxy", "https_proxy", "grpc_proxy"}) env.set(variable, proxy.url());
  env.set("no_proxy", std::nullopt).set("no_grpc_proxy", std::nullopt);

  const ensemble::Seed admin = seed_of(7);
  const auto key = ensemble::Signer(admin).public_key();
  DaemonDouble v4({.tcp_address = "127.0.0.1:0", .admin_key = key});
  DaemonDouble v6({.tcp_address = "[::1]:0", .admin_key = key});
  for (const auto& [host, daemon] : {std::pair{"localhost", &v4}, {"127.0.0.1", &v4}, {"[::1]", &v6}}) {
    CAPTURE(host);
    SECTION(std::string("signed, to ") + host) {
      ensemble::Client client({.addr = host + (":" + std::to_string(daemon->tcp_port())), .auth_seed = admin});
      CHECK(client.get_status(kCall).tor_state == "ready");
    }
  }
  SECTION("unsigned, to loopback") {
    DaemonDouble open_daemon({.tcp_address = "127.0.0.1:0"});
    ensemble::Client client({.addr = open_daemon.tcp_target()});
    CHECK(client.get_status(kCall).tor_state == "ready");
  }
  SECTION("over a Unix socket") {
    test_support::TempDir dir;
    DaemonDouble unix_daemon({.unix_socket = (dir / "api.sock").string()});
    ensemble::Client client({.socket_path = unix_daemon.unix_socket_path()});
    CHECK(client.get_status(kCall).tor_state == "ready");
  }
  SECTION("plaintext to another host: never through the proxy either") {
    ensemble::Client client({.addr = "192.0.2.1:9"});  // TEST-NET-1: nothing answers
    CHECK_THROWS_AS(client.get_status({.timeout = 300ms}), ensemble::RpcError);
  }
  CHECK(proxy.requests().empty());
}

TEST_CASE("TLS to a remote host is the one channel that follows the proxy variables") {
  test_support::RecordingProxy proxy;
  ScopedEnv env;
  env.set("https_proxy", proxy.url()).set("http_proxy", std::nullopt).set("grpc_proxy", std::nullopt);
  env.set("no_proxy", std::nullopt).set("no_grpc_proxy", std::nullopt);
  ensemble::Client client({.addr = "192.0.2.1:443", .tls_insecure = true});
  CHECK_THROWS_AS(client.get_status({.timeout = 2s}), ensemble::RpcError);  // the proxy hangs up
  REQUIRE(eventually([&] { return !proxy.requests().empty(); }, 5s));
  CHECK(proxy.requests().front() == "CONNECT 192.0.2.1:443 HTTP/1.1");
}

// ---- 2. the daemon's long status messages pass through unchanged ----

TEST_CASE("a daemon status message of any length arrives as the daemon sent it") {
  test_support::TempDir dir;
  test_support::OddDaemon daemon(dir / "api.sock");
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  for (const std::size_t size : {std::size_t{9} << 10, std::size_t{64} << 10, std::size_t{1} << 20}) {
    CAPTURE(size);
    std::string text(size, 'x');
    text.replace(0, 12, "long reason ");
    SECTION("a unary call, " + std::to_string(size) + " bytes") {
      daemon.answer_status(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, text));
      try {
        client.get_status(kCall);
        FAIL("get_status succeeded");
      } catch (const ensemble::RpcError& e) {
        CHECK(e.code() == grpc::StatusCode::FAILED_PRECONDITION);
        CHECK(e.daemon_message() == text);
      }
    }
    SECTION("registration, " + std::to_string(size) + " bytes") {
      daemon.answer_registration(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, text));
      auto svc = client.service("long");
      const auto e = registration_error(*svc);
      CHECK(e.code() == grpc::StatusCode::INVALID_ARGUMENT);
      CHECK(e.daemon_message() == text);
    }
  }
}

// ---- 3. certificate material is checked when the Client is built ----

TEST_CASE("tls_root_certs without a certificate is a ConfigError that names it") {
  const auto material = test_support::make_self_signed_localhost();
  const auto with_roots = [](std::string pem) {
    return [pem] { ensemble::Client({.addr = "localhost:9090", .tls_root_certs = pem}); };
  };
  CHECK_THAT(config_error(with_roots("not a certificate")),
             Contains("ClientOptions::tls_root_certs holds no certificate (17 bytes)"));
  CHECK_THAT(config_error(with_roots(material.private_key_pem)),
             Contains("ClientOptions::tls_root_certs holds no certificate") && Contains("a private key"));
  std::string broken = material.certificate_pem;
  broken.replace(broken.find('\n') + 20, 8, "!!!!!!!!");
  CHECK_THAT(config_error(with_roots(material.certificate_pem + broken)),
             Contains("ClientOptions::tls_root_certs: certificate 2 of the PEM bundle does not parse"));
  CHECK_NOTHROW(with_roots(material.certificate_pem)());
  CHECK_NOTHROW(with_roots(material.private_key_pem + material.certificate_pem)());
}

TEST_CASE("a TLS daemon is reached with the CA from tls_root_certs or GRPC_DEFAULT_SSL_ROOTS_FILE_PATH") {
  const auto material = test_support::make_self_signed_localhost();
  test_support::TempDir dir;
  grpc::SslServerCredentialsOptions tls;
  tls.pem_key_cert_pairs.push_back({material.private_key_pem, material.certificate_pem});
  test_support::OddDaemon server("127.0.0.1:0", grpc::SslServerCredentials(tls));
  const std::string addr = "localhost:" + std::to_string(server.port());

  SECTION("tls_root_certs") {
    ensemble::Client client({.addr = addr, .tls_root_certs = material.certificate_pem});
    CHECK(client.get_status(kCall).tor_state == "ready");
  }
  SECTION("the environment variable, checked the same way") {
    const auto file = dir / "roots.pem";
    ScopedEnv env;
    std::ofstream(file) << "garbage\n";
    env.set("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", file.string());
    CHECK_THAT(config_error([&] { ensemble::Client({.addr = addr, .tls = true}); }),
               Contains("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH \"" + file.string() + "\" holds no certificate"));
    env.set("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", (dir / "missing.pem").string());
    CHECK_THAT(config_error([&] { ensemble::Client({.addr = addr, .tls = true}); }),
               Contains("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH") && Contains("cannot be read"));
    // Only where TLS uses the default roots: a bundle of one's own, or no TLS, ignores it.
    CHECK_NOTHROW(ensemble::Client({.addr = addr, .tls_root_certs = material.certificate_pem}));
    CHECK_NOTHROW(ensemble::Client({.addr = addr}));
  }
  SECTION("a certificate that does not verify ends waiting at once, naming the handshake") {
    ensemble::Client client({.addr = addr, .tls = true});  // the system roots do not hold it
    const auto started = std::chrono::steady_clock::now();
    try {
      client.wait_until_ready(30s);
      FAIL("wait_until_ready returned");
    } catch (const ensemble::RpcError& e) {
      CHECK(e.code() == grpc::StatusCode::UNAVAILABLE);
      CHECK_THAT(e.daemon_message(), Contains("not retried: the TLS handshake failed"));
    }
    CHECK(std::chrono::steady_clock::now() - started < 10s);
  }
}

// ---- 4. failures that waiting cannot mend ----

TEST_CASE("a socket path that is not a socket ends waiting at once, with the cause") {
  test_support::TempDir dir;
  std::ofstream(dir / "file") << "not a socket\n";
  std::filesystem::create_directory(dir / "directory");
  for (const auto& [path, cause] : std::vector<std::pair<std::string, std::string>>{
           {(dir / "file").string(), "is a regular file, not a socket"},
           {(dir / "directory").string(), "is a directory, not a socket"},
           {(dir / "file" / "api.sock").string(), "cannot exist: a component of it is not a directory"}}) {
    CAPTURE(path);
    ensemble::Client client({.socket_path = path});
    auto svc = client.service("waits", waiting_options());
    const auto e = registration_error(*svc);
    CHECK(e.code() == grpc::StatusCode::UNAVAILABLE);
    CHECK_THAT(e.daemon_message(), Contains("[not retried: the socket path \"" + path + "\" " + cause + "]"));
    try {
      client.wait_until_ready(30s);
      FAIL("wait_until_ready returned");
    } catch (const ensemble::RpcError& e2) {
      CHECK(e2.code() == grpc::StatusCode::UNAVAILABLE);
      CHECK_THAT(e2.daemon_message(), Contains(cause));
    }
  }
}

TEST_CASE("a registered service stops reconnecting when its socket path stops being a socket") {
  test_support::TempDir dir;
  const std::string path = (dir / "api.sock").string();
  auto daemon = std::make_unique<DaemonDouble>(DaemonDoubleOptions{.unix_socket = path});
  ensemble::Client client({.socket_path = path});
  ensemble::ServiceOptions options;
  options.reconnect = {.enabled = true, .initial_backoff = 20ms, .max_backoff = 20ms};
  auto svc = client.service("replaced", options);
  svc->start();
  daemon.reset();
  std::filesystem::remove(path);
  std::ofstream(path) << "a stale file where the socket was\n";
  const auto end = svc->wait_for(20s);
  REQUIRE(end.has_value());
  CHECK(end->error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(end->error_message(), Contains("is a regular file, not a socket"));
}

namespace {
// What the child run of the EACCES check (below) does, as a user who may not open the socket.
std::string eacces_outcome(const std::string& socket) {
  std::string out;
  ensemble::Client client({.socket_path = socket});
  auto svc = client.service("denied", waiting_options());
  try {
    svc->start();
    out += "start() succeeded\n";
  } catch (const ensemble::RegistrationError& e) {
    out += std::string("start: ") + e.what() + "\n";
  }
  try {
    client.wait_until_ready(30s);
    out += "wait_until_ready returned\n";
  } catch (const ensemble::RpcError& e) {
    out += std::string("wait_until_ready: ") + e.what() + "\n";
  }
  return out;
}
}  // namespace

// Run only as the child of the next test (a user that may not open the socket).
TEST_CASE("eacces child run", "[.]") {
  const char* socket = std::getenv("ENSEMBLE_FAULTS_CHILD_SOCKET");
  if (socket == nullptr) return;  // selected by the concern's filter, but not a child run
  std::fputs(eacces_outcome(socket).c_str(), stdout);
  std::fflush(stdout);
}

TEST_CASE("a socket this user may not open (EACCES) ends waiting at once, with the cause") {
  test_support::TempDir dir;
  const std::string path = (dir / "api.sock").string();
  DaemonDouble daemon({.unix_socket = path});
  ::chmod(dir.path().c_str(), 0755);
  std::string outcome;
  if (::geteuid() != 0) {
    ::chmod(path.c_str(), 0);
    outcome = eacces_outcome(path);
  } else {
    // root may open anything: the check runs in this test program as root without the
    // capabilities that pass file permissions, against a socket only user nobody may open.
    // Still root, the child loads what this process loads (the sanitizers' builds of gRPC
    // among them, which scripts/sanitize.sh keeps in root's home), so the sanitizers judge
    // it as they judge this process.
    REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
    ::chmod(path.c_str(), 0600);
    char exe[4096] = {};
    REQUIRE(::readlink("/proc/self/exe", exe, sizeof exe - 1) > 0);
    std::vector<std::string> env_text;
    for (char** e = environ; *e != nullptr; ++e) env_text.emplace_back(*e);
    env_text.push_back("ENSEMBLE_FAULTS_CHILD_SOCKET=" + path);
    std::vector<char*> envp;
    for (auto& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string filter = "eacces child run";
    char* argv[] = {exe, filter.data(), nullptr};
    int out[2];
    REQUIRE(::pipe(out) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::dup2(out[1], 1);
      ::dup2(out[1], 2);
      // Out of the bounding set, so the program it executes does not get them back.
      if (::prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0 ||
          ::prctl(PR_CAPBSET_DROP, CAP_DAC_READ_SEARCH, 0, 0, 0) != 0) {
        std::fputs("cannot drop CAP_DAC_OVERRIDE (no CAP_SETPCAP)\n", stderr);
        ::_exit(125);
      }
      ::execve(exe, argv, envp.data());
      ::_exit(126);
    }
    ::close(out[1]);
    std::atomic<bool> done{false};
    std::thread watchdog([&] {  // waiting for ever is the fault under test: cut it short
      for (int i = 0; i < 600 && !done; ++i) std::this_thread::sleep_for(100ms);
      if (!done) ::kill(child, SIGKILL);
    });
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(out[0], buffer, sizeof buffer)) > 0) outcome.append(buffer, static_cast<std::size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    done = true;
    watchdog.join();
    CAPTURE(outcome);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  CAPTURE(outcome);
  CHECK_THAT(outcome, Contains("start: registering service \"denied\" failed: UNAVAILABLE") &&
                          Contains("may not be opened by this user"));
  CHECK_THAT(outcome, Contains("wait_until_ready: GetStatus failed: UNAVAILABLE"));
}

TEST_CASE("waiting for the daemon says why through the log sink, not on every attempt") {
  test_support::TempDir dir;
  LogCapture log;
  ensemble::Client client({.socket_path = (dir / "later.sock").string()});
  auto svc = client.service("patient", waiting_options());
  auto started = svc->start_async();
  // About fifty attempts (20 ms apart) of the same failure: the first says so, the 10th
  // reminds, nothing else.
  std::this_thread::sleep_for(1000ms);
  svc->cancel();
  CHECK_THROWS_AS(started.get(), ensemble::RegistrationError);
  const auto lines = log.lines_with("service \"patient\"");
  REQUIRE(lines.size() >= 1);
  CHECK(lines.size() <= 3);
  CHECK_THAT(lines.front(), Contains("service \"patient\": waiting for the daemon: the socket path \"" +
                                     (dir / "later.sock").string() + "\" does not exist (yet); retrying (attempt 1)"));
}

TEST_CASE("a cancel while waiting keeps what the wait was waiting out") {
  test_support::TempDir dir;
  ensemble::Client client({.socket_path = (dir / "later.sock").string()});
  auto svc = client.service("patient", test_support::waiting_options(2s, 2s));
  auto started = svc->start_async();
  // The first attempt fails at once; the cancel comes well inside the 2 s pause after it.
  REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::reconnecting; }));
  std::this_thread::sleep_for(100ms);
  svc->cancel();
  try {
    started.get();
    FAIL("start succeeded");
  } catch (const ensemble::RegistrationError& e) {
    CHECK(e.code() == grpc::StatusCode::CANCELLED);
    CHECK_THAT(e.daemon_message(), Contains("(the last attempt: UNAVAILABLE: ") && Contains("No such file or directory"));
  }
}

// ---- 5. peer data trusted in shape: depth and control characters ----

TEST_CASE("a node event nested 100,000 deep is kept as raw text with a problem, and copies safely") {
  test_support::TempDir dir;
  test_support::ScriptedDaemon daemon((dir / "api.sock").string());
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  const std::string just_deep_enough = std::string(64, '[') + std::string(64, ']');
  daemon.publish("chat_message", deep);
  daemon.publish("marker", just_deep_enough);
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  std::mutex mu;
  std::vector<ensemble::DaemonEvent> seen;
  auto sub = client.events([&](const ensemble::DaemonEvent& e) {
    const ensemble::DaemonEvent copy = e;  // what crashed: a copy recursed once per level
    std::lock_guard lock(mu);
    seen.push_back(copy);
  });
  REQUIRE(eventually([&] {
    std::lock_guard lock(mu);
    return seen.size() == 2;
  }));
  std::lock_guard lock(mu);
  CHECK(seen[0].problem == "payload nested deeper than 64 levels; kept as raw text");
  CHECK(seen[0].payload.is_string());
  CHECK(seen[0].raw_payload == deep);
  CHECK_FALSE(ensemble::DaemonChatMessage::from_event(seen[0]));
  CHECK(seen[1].problem.empty());
  CHECK(seen[1].payload.is_array());
  CHECK(ensemble::detail::json_nesting_exceeds("[\"[[[[[\"]", 1) == false);  // brackets in strings do not count
}

TEST_CASE("control characters in the daemon's words are shown escaped in exception texts and logs") {
  test_support::TempDir dir;
  test_support::OddDaemon daemon(dir / "api.sock");
  const std::string forged = "denied\nensemble: all is well\x1b[2J\x1b]0;owned\x07 \xe2\x80\xae" "gnp.exe";
  daemon.answer_status(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, forged));
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  try {
    client.get_status(kCall);
    FAIL("get_status succeeded");
  } catch (const ensemble::RpcError& e) {
    CHECK(e.daemon_message() == forged);  // the value itself is untouched
    CHECK(std::string(e.what()) ==
          "GetStatus failed: PERMISSION_DENIED: denied\\nensemble: all is well\\x1b[2J\\x1b]0;owned\\a \\u202egnp.exe");
  }
  SECTION("a handler's exception that quotes a peer goes to the log as one line") {
    daemon.answer_registration(grpc::Status::OK, {test_support::OddDaemon::chat(peer_address(1), "hi")});
    LogCapture log;
    auto svc = client.service("quoting");
    std::atomic<bool> ran{false};
    svc->on_chat([&](const ensemble::ChatMessage&) {
      ran = true;
      throw std::runtime_error("cannot answer \"" + forged + "\"");
    });
    svc->start();
    REQUIRE(eventually([&] { return !log.lines_with("threw").empty(); }));
    const auto line = log.lines_with("threw").front();
    CHECK(line.find('\n') == std::string::npos);
    CHECK(line.find('\x1b') == std::string::npos);
    CHECK_THAT(line, Contains("denied\\nensemble: all is well\\x1b[2J"));
    svc->close();
    svc->wait();
  }
  CHECK(ensemble::escaped("tab\there \xff") == "tab\\there \\xff");
}

// ---- 6. every address the library accepts connects ----

TEST_CASE("every spelling of loopback the library accepts connects, signed, to a real listener") {
  const ensemble::Seed admin = seed_of(9);
  const auto key = ensemble::Signer(admin).public_key();
  DaemonDouble v4({.tcp_address = "127.0.0.1:0", .admin_key = key});
  DaemonDouble v6({.tcp_address = "[::1]:0", .admin_key = key});
  const std::string v4_port = std::to_string(v4.tcp_port());
  const std::string v6_port = std::to_string(v6.tcp_port());
  // IPv4 (and IPv4-mapped IPv6) forms reach the 127.0.0.1 listener, the ::1 forms the other.
  for (const std::string host :
       {"localhost", "LOCALHOST", "LocalHost", "localhost.", "LOCALHOST.", "127.0.0.1", "127.1",
        "127.000.000.001", "0x7f.0.0.1", "0x7F000001", "0177.0.0.1", "017700000001", "2130706433",
        "[::ffff:127.0.0.1]", "[::FFFF:7f00:1]"}) {
    CAPTURE(host);
    ensemble::Client client({.addr = host + ":" + v4_port, .auth_seed = admin});
    CHECK(client.get_status(kCall).tor_state == "ready");
  }
  for (const std::string host :
       {"[::1]", "[0:0:0:0:0:0:0:1]", "[0000:0000:0000:0000:0000:0000:0000:0001]", "[::1%lo]"}) {
    CAPTURE(host);
    ensemble::Client client({.addr = host + ":" + v6_port, .auth_seed = admin});
    CHECK(client.get_status(kCall).tor_state == "ready");
  }
}

TEST_CASE("a host no resolver can dial is a ConfigError at construction") {
  for (const auto& [host, why] : std::vector<std::pair<std::string, std::string>>{
           {"127.0.0.1.", "is not an IPv4 address, and a name whose last label is all digits"},
           {"256.1.1.1", "is not an IPv4 address"},
           {"1.2.3.4.5", "is not an IPv4 address"},
           {"localhost..", "an empty label"},
           {".daemon.lan", "an empty label"},
           {"a..b", "an empty label"},
           {std::string(64, 'a') + ".lan", "a label of 64 bytes; DNS allows 63"},
           {std::string(250, 'a') + ".lan", "254 bytes long; DNS allows 253"}}) {
    CAPTURE(host);
    CHECK_THAT(config_error([&] { ensemble::Client({.addr = host + ":9090"}); }),
               Contains("ClientOptions::addr") && Contains(why));
  }
  CHECK_NOTHROW(ensemble::Client({.addr = "daemon.lan.:9090"}));  // the root's dot
  CHECK_NOTHROW(ensemble::Client({.addr = std::string(63, 'a') + ".lan:9090"}));
}

// ---- 7. a newer daemon's message kinds ----

TEST_CASE("a ServiceServerMessage of an unknown kind reaches on_unknown, counted") {
  test_support::TempDir dir;
  test_support::OddDaemon daemon(dir / "api.sock");
  using test_support::OddDaemon;
  daemon.answer_registration(grpc::Status::OK, {OddDaemon::unknown_kind(15), OddDaemon::chat(peer_address(1), "after"),
                                                OddDaemon::unknown_kind(300)});
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  SECTION("handler mode") {
    auto svc = client.service("newer");
    std::mutex mu;
    std::vector<ensemble::UnknownEvent> unknown;
    std::vector<std::string> chats;
    svc->on_unknown([&](const ensemble::UnknownEvent& e) {
      std::lock_guard lock(mu);
      unknown.push_back(e);
    });
    svc->on_chat([&](const ensemble::ChatMessage& m) {
      std::lock_guard lock(mu);
      chats.push_back(m.text);
    });
    svc->start();
    REQUIRE(eventually([&] {
      std::lock_guard lock(mu);
      return unknown.size() == 2 && chats.size() == 1;
    }));
    std::lock_guard lock(mu);
    CHECK(unknown[0].type.empty());
    CHECK(unknown[0].problem == "a ServiceServerMessage kind this version does not know (field 15)");
    CHECK(unknown[0].payload == OddDaemon::unknown_kind(15));
    CHECK(unknown[1].problem == "a ServiceServerMessage kind this version does not know (field 300)");
    CHECK(svc->stats().events_received == 3);
  }
  SECTION("pull mode") {
    auto svc = client.service("newer-pull");
    svc->start();
    const auto first = svc->next_event(10s);
    REQUIRE(first);
    REQUIRE(std::holds_alternative<ensemble::UnknownEvent>(*first));
    CHECK_THAT(std::get<ensemble::UnknownEvent>(*first).problem, Contains("field 15"));
    const auto second = svc->next_event(10s);
    REQUIRE(second);
    CHECK(std::holds_alternative<ensemble::ChatMessage>(*second));
  }
}

// ---- 8. counts and clocks ----

TEST_CASE("events_received counts daemon errors: received = delivered + dropped + discarded + queued") {
  test_support::TempDir dir;
  test_support::OddDaemon daemon(dir / "api.sock");
  using test_support::OddDaemon;
  std::vector<std::string> script;
  for (int i = 0; i < 40; ++i) {
    script.push_back(OddDaemon::chat(peer_address(1), "chat " + std::to_string(i)));
    script.push_back(OddDaemon::error("refused " + std::to_string(i)));
    if (i % 10 == 0) script.push_back(OddDaemon::unknown_kind(20));
  }
  daemon.answer_registration(grpc::Status::OK, script);
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  ensemble::ServiceOptions options;
  options.event_queue_capacity = 8;  // a slow handler makes the queue drop some
  auto svc = client.service("counted", options);
  std::atomic<std::uint64_t> delivered{0};
  svc->on_chat([&](const ensemble::ChatMessage&) {
    std::this_thread::sleep_for(2ms);
    ++delivered;
  });
  svc->on_error([&](const ensemble::ServiceError&) { ++delivered; });
  svc->on_unknown([&](const ensemble::UnknownEvent&) { ++delivered; });
  svc->start();
  REQUIRE(eventually([&] {
    const auto s = svc->stats();
    return s.events_received == script.size() && svc->events_queued() == 0;
  }));
  svc->close();
  svc->wait();
  const auto s = svc->stats();
  CHECK(s.events_received == script.size());
  CHECK(s.events_delivered == delivered);
  CHECK(s.events_received == delivered + s.events_dropped + s.events_discarded + svc->events_queued());
}

TEST_CASE("wait_until_ready waits out its whole timeout, however the backoff falls") {
  test_support::TempDir dir;
  // Polls at 0, 0.1, 0.3 and 0.7 s find no socket; the next pause (0.8 s) would pass the
  // 1.2 s deadline, which once meant giving up at 0.7 s. The daemon is there from 0.9 s.
  DaemonDouble daemon({.unix_socket = (dir / "api.sock").string(), .socket_delay = 900ms});
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  const auto started = std::chrono::steady_clock::now();
  CHECK(client.wait_until_ready(1200ms).tor_state == "ready");
  CHECK(std::chrono::steady_clock::now() - started >= 900ms);
  SECTION("and it gives up only once the deadline has passed") {
    ensemble::Client nowhere({.socket_path = (dir / "never.sock").string()});
    const auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(nowhere.wait_until_ready(1200ms), ensemble::RpcError);
    CHECK(std::chrono::steady_clock::now() - t0 >= 1200ms);
  }
}

TEST_CASE("every duration is honoured, means no limit, or is refused") {
  test_support::TempDir dir;
  DaemonDouble daemon({.unix_socket = (dir / "api.sock").string()});
  ensemble::Client client({.socket_path = daemon.unix_socket_path()});
  SECTION("milliseconds::max() means no limit") {
    CHECK(client.get_status({.timeout = kForever}).tor_state == "ready");
    CHECK(client.wait_until_ready(kForever).tor_state == "ready");
    ensemble::ServiceOptions options;
    options.registration_timeout = kForever;
    options.reconnect = {.enabled = true, .initial_backoff = kForever, .max_backoff = kForever};
    auto svc = client.service("forever", options);
    svc->start();
    CHECK(svc->flush(kForever));
    auto pull = client.service("forever-pull", options);
    pull->start();
    REQUIRE(daemon.inject_chat("forever-pull", peer_address(2), "now"));
    CHECK(pull->next_event(kForever).has_value());
    auto sub = client.events([](const ensemble::DaemonEvent&) {}, {}, {.timeout = kForever});
    sub->cancel();
    CHECK(sub->wait_for(kForever).has_value());
    pull->close();
    CHECK(pull->wait_for(kForever).has_value());
    // A 100-year backoff: the service waits in reconnecting until it is cancelled, and the
    // end says what it was waiting out.
    daemon.stop();
    REQUIRE(eventually([&] { return svc->state() == ensemble::ServiceState::reconnecting; }));
    svc->cancel();
    const auto end = svc->wait_for(5s);
    REQUIRE(end.has_value());
    CHECK(end->error_code() == grpc::StatusCode::CANCELLED);
    CHECK_THAT(end->error_message(), Contains("(the last attempt: UNAVAILABLE: "));
  }
  SECTION("negative durations are refused, naming them") {
    CHECK_THAT(config_error([&] { client.get_status({.timeout = -1ms}); }), Contains("CallOptions::timeout is negative"));
    CHECK_THAT(config_error([&] { client.get_status([](auto) {}, {.timeout = -1ms}); }),
               Contains("CallOptions::timeout is negative"));
    CHECK_THAT(config_error([&] { (void)client.events([](const ensemble::DaemonEvent&) {}, {}, {.timeout = -5ms}); }),
               Contains("CallOptions::timeout is negative"));
    CHECK_THAT(config_error([&] { client.wait_until_ready(-1ms); }), Contains("wait_until_ready: timeout is negative"));
    CHECK_THAT(config_error([&] { ensemble::Client({.socket_path = "/x", .keepalive_interval = -1ms}); }),
               Contains("ClientOptions::keepalive_interval is negative"));
    CHECK_THAT(config_error([&] { ensemble::Client({.socket_path = "/x", .keepalive_timeout = 0ms}); }),
               Contains("ClientOptions::keepalive_timeout is 0 ms"));
    CHECK_NOTHROW(ensemble::Client({.socket_path = "/x", .keepalive_interval = kForever, .keepalive_timeout = kForever}));
  }
}

// ---- 9. the double at its edges ----

TEST_CASE("the double gives a name back when its stream ends before `registered`") {
  test_support::TempDir dir;
  DaemonDouble daemon({.unix_socket = (dir / "api.sock").string(), .registration_delay = 1500ms});
  ensemble::Client client({.socket_path = daemon.unix_socket_path()});
  ensemble::ServiceOptions impatient;
  impatient.registration_timeout = 200ms;
  auto first = client.service("held", impatient);
  CHECK(registration_error(*first).code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(daemon.wait_unregistered("held", 5s));
  auto second = client.service("held");  // once ALREADY_EXISTS for the life of the double
  second->start();
  CHECK(second->state() == ensemble::ServiceState::registered);
}

TEST_CASE("the double refuses a request with invalid UTF-8 in grpc-go's words") {
  test_support::TempDir dir;
  DaemonDouble daemon({.unix_socket = (dir / "api.sock").string()});
  auto stub = ensemble::api::EnsembleService::NewStub(
      grpc::CreateChannel(daemon.unix_target(), grpc::InsecureChannelCredentials()));
  SECTION("a unary call") {
    grpc::ClientContext context;
    ensemble::api::SendMessageRequest request;
    request.set_address(peer_address(1));
    request.set_text("caf\xe9");
    ensemble::api::SendMessageResponse response;
    const grpc::Status status = stub->SendMessage(&context, request, &response);
    CHECK(status.error_code() == grpc::StatusCode::INTERNAL);
    CHECK(status.error_message() == "grpc: error unmarshalling request: string field contains invalid UTF-8");
  }
  SECTION("a server-streaming call") {
    grpc::ClientContext context;
    ensemble::api::SendFileRequest request;
    request.set_address(peer_address(1));
    request.set_file_path("/tmp/caf\xe9");
    auto reader = stub->SendFile(&context, request);
    ensemble::api::TransferProgress progress;
    while (reader->Read(&progress)) {
    }
    const grpc::Status status = reader->Finish();
    CHECK(status.error_code() == grpc::StatusCode::INTERNAL);
    CHECK(status.error_message() == "grpc: failed to unmarshal the received message: string field contains invalid UTF-8");
  }
  SECTION("valid requests still work") {
    grpc::ClientContext context;
    ensemble::api::GetStatusResponse response;
    CHECK(stub->GetStatus(&context, {}, &response).ok());
    CHECK(response.tor_state() == "ready");
  }
}

TEST_CASE("the double quotes values exactly as Go's %q does") {
  using ensemble::detail::go_quote;
  // Go: strconv.Quote (what the daemon's %q writes).
  CHECK(go_quote("\a\b\f\v\x7f") == R"("\a\b\f\v\x7f")");
  CHECK(go_quote("\t\n\r\"\\") == R"("\t\n\r\"\\")");
  CHECK(go_quote(std::string("\0\x01\x1b", 3)) == R"("\x00\x01\x1b")");
  CHECK(go_quote("a\u2028b") == R"("a\u2028b")");
  CHECK(go_quote("\u00a0") == R"("\u00a0")");
  CHECK(go_quote("\ufeff") == R"("\ufeff")");
  CHECK(go_quote("\u00ad\u0085\u200b") == R"("\u00ad\u0085\u200b")");
  CHECK(go_quote("\U000e0001") == R"("\U000e0001")");
  CHECK(go_quote("caf\u00e9 \u65e5\u672c \U0001F600 \ufffd") == "\"caf\u00e9 \u65e5\u672c \U0001F600 \ufffd\"");
  CHECK(go_quote("\xff") == R"("\xff")");
  CHECK(go_quote("\xed\xa0\x80") == R"("\xed\xa0\x80")");  // a surrogate: three invalid bytes
  CHECK(go_quote("\xc0\x80") == R"("\xc0\x80")");          // overlong
  CHECK(go_quote("\xe2\x82") == R"("\xe2\x82")");          // cut short

  SECTION("in the double's own error texts, over a real stream") {
    test_support::TempDir dir;
    DaemonDouble daemon({.unix_socket = (dir / "api.sock").string()});
    ensemble::Client client({.socket_path = daemon.unix_socket_path()});
    auto svc = client.service("quoting");
    std::mutex mu;
    std::vector<std::string> errors;
    svc->on_error([&](const ensemble::ServiceError& e) {
      std::lock_guard lock(mu);
      errors.push_back(e.message);
    });
    svc->start();
    const std::vector<std::string> ids = {"\a\b\f\v\x7f", "x\u2028y", "\u00a0", "\ufeff", "\U000e0001 \u00e9"};
    for (const auto& id : ids) svc->reject_connection(id);
    REQUIRE(eventually([&] {
      std::lock_guard lock(mu);
      return errors.size() == ids.size();
    }));
    std::lock_guard lock(mu);
    CHECK_THAT(errors[0], Contains(R"(no pending connection request "\a\b\f\v\x7f")"));
    CHECK_THAT(errors[1], Contains(R"(no pending connection request "x\u2028y")"));
    CHECK_THAT(errors[2], Contains(R"(no pending connection request "\u00a0")"));
    CHECK_THAT(errors[3], Contains(R"(no pending connection request "\ufeff")"));
    CHECK_THAT(errors[4], Contains("no pending connection request \"\\U000e0001 \u00e9\""));
  }
}

}  // namespace test_faults
