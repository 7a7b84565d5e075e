// ensemble-loopbackd: the daemon double (ensemble::testing::DaemonDouble, src/testing/) as a
// process, with flags modelled on the real daemon's loopback mode
// (`ensemble --headless --signaling=loopback`). See --help for the flags and the exact
// format of the ready line that scripts and tests parse.
#include <ensemble/detail/deadline.hpp>
#include <ensemble/detail/hex.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <pthread.h>

namespace {

constexpr std::string_view kHelp = R"(usage: ensemble-loopbackd [options]

An Ensemble daemon double: the daemon's gRPC API (auth, service registry, node calls) with
loopback signaling instead of Tor. Daemons sharing a --loopback-dir reach each other.

options:
  --api-addr HOST:PORT   listen for the API on TCP (port 0 picks a free port)
  --api-socket PATH      listen for the API on a Unix socket
                         (neither given: --api-addr 127.0.0.1:0)
  --loopback-dir DIR     rendezvous directory shared with other daemons
                         (default $XDG_RUNTIME_DIR/ensemble-loopback/, or a new temp dir
                         when XDG_RUNTIME_DIR is unset)
  --data-dir DIR         keep the node and service keypairs and the contacts here, so
                         addresses survive a restart (default: in memory)
  --admin-key HEX        32-byte Ed25519 public key, 64 hex chars; every call must then be
                         signed by it (default: no auth)
  --mint-token NAME      mint a supervised-service token bound to NAME and print it
                         (repeatable)
  --request-timeout-ms N how long connection requests and file offers wait for an answer
                         (default 0: until answered or the stream closes, as the daemon)

the daemon's start-up, for testing a bot that starts with its daemon (default 0 each):
  --socket-delay-ms N    create the --api-socket only after N ms (calls fail UNAVAILABLE
                         until then); needs --api-socket and no --api-addr
  --bootstrap-ms N       then "bootstrap Tor" for N ms: GetStatus says tor_state
                         "bootstrapping", Subscribe carries tor_bootstrap events,
                         RegisterService fails UNIMPLEMENTED; then a tor_ready event
  --registration-delay-ms N
                         send `registered` N ms after a manifest is accepted (the daemon
                         waits for the onion descriptor to be published)
  --help                 this text

output (stdout, each line flushed):
  token NAME TOKEN       one per --mint-token, before the ready line
  ready node=ADDR onion=ONION [api-addr=HOST:PORT] [api-socket=PATH] loopback-dir=DIR pid=PID
                         exactly one line once the API accepts calls (after any
                         --socket-delay-ms; Tor may still be bootstrapping); fields are
                         space-separated key=value pairs in this order, absent keys were
                         not configured; HOST:PORT carries the bound port

SIGINT or SIGTERM stops it cleanly (open streams end with UNAVAILABLE) and it exits 0.
Startup errors go to stderr with exit status 1; bad flags exit 2.
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "ensemble-loopbackd: " << message << "\n(see --help)\n";
  std::exit(2);
}

// A whole, non-negative number of milliseconds, or a usage error naming the flag.
std::chrono::milliseconds milliseconds_flag(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
  }
  if (n < 0 || used != text.size()) {
    usage_error(flag + " needs a whole number of milliseconds >= 0, not \"" + text + "\"");
  }
  return std::chrono::milliseconds(n);
}

std::filesystem::path default_loopback_dir() {
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != '\0') {
    return std::filesystem::path(xdg) / "ensemble-loopback";
  }
  std::string templ = (std::filesystem::temp_directory_path() / "ensemble-loopback-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::runtime_error(std::string("cannot create a temp loopback dir: ") +
                             std::strerror(errno));
  }
  return templ;
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken by sigwait below; block them before gRPC starts its threads so none
  // of those threads is picked to run a default handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  ensemble::testing::DaemonDoubleOptions options;
  std::vector<std::string> tokens;
  bool loopback_given = false;
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) usage_error(a + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::cout << kHelp;
      return 0;
    } else if (a == "--api-addr") {
      options.tcp_address = value();
    } else if (a == "--api-socket") {
      options.unix_socket = value();
    } else if (a == "--loopback-dir") {
      options.loopback_dir = value();
      loopback_given = true;
    } else if (a == "--data-dir") {
      options.data_dir = value();
    } else if (a == "--admin-key") {
      std::array<std::uint8_t, 32> key{};
      if (!ensemble::detail::hex_decode_into(value(), key)) {
        usage_error("invalid admin key: must be 64 hex chars (32 bytes Ed25519 public key)");
      }
      options.admin_key = key;
    } else if (a == "--mint-token") {
      tokens.push_back(value());
    } else if (a == "--request-timeout-ms") {
      options.request_timeout = milliseconds_flag(a, value());
    } else if (a == "--socket-delay-ms") {
      options.socket_delay = milliseconds_flag(a, value());
    } else if (a == "--bootstrap-ms") {
      options.bootstrap_time = milliseconds_flag(a, value());
    } else if (a == "--registration-delay-ms") {
      options.registration_delay = milliseconds_flag(a, value());
    } else {
      usage_error("unknown option " + a);
    }
  }

  try {
    if (!loopback_given) options.loopback_dir = default_loopback_dir();
    if (!options.data_dir.empty()) std::filesystem::create_directories(options.data_dir);
    const auto loopback_dir = std::filesystem::absolute(options.loopback_dir);
    ensemble::testing::DaemonDouble daemon(options);
    // With --socket-delay-ms the socket appears later; "ready" waits for it.
    // (A delay of 100 years or more is for ever, as in the double's options: no overflow.)
    const auto give_up = std::chrono::steady_clock::now() +
                         std::min(options.socket_delay, ensemble::detail::kForever) + std::chrono::seconds(10);
    while (!daemon.unix_socket_path().empty() && !std::filesystem::exists(daemon.unix_socket_path())) {
      if (std::chrono::steady_clock::now() > give_up) {
        throw std::runtime_error("the API socket never appeared at " + daemon.unix_socket_path());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }

    for (const auto& name : tokens) {
      std::cout << "token " << name << ' ' << daemon.mint_token(name) << '\n';
    }
    std::cout << "ready node=" << daemon.node_address() << " onion=" << daemon.node_onion();
    if (!daemon.tcp_target().empty()) std::cout << " api-addr=" << daemon.tcp_target();
    if (!daemon.unix_socket_path().empty()) std::cout << " api-socket=" << daemon.unix_socket_path();
    std::cout << " loopback-dir=" << loopback_dir.string() << " pid=" << ::getpid() << std::endl;

    int received = 0;
    sigwait(&signals, &received);
    daemon.stop();  // streams ended, sockets and links cleaned up
  } catch (const std::exception& e) {
    std::cerr << "ensemble-loopbackd: " << e.what() << '\n';
    return 1;
  }
  // Everything this process owns outside itself is cleaned up by now; skip the static
  // destructors, where gRPC's library shutdown can idle for a second waiting on its own
  // threads, so a supervisor or test sees the exit at once.
  std::cout.flush();
  std::_Exit(0);
}
