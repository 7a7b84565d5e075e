// ensemble-loopbackd: the daemon double (include/ensemble/testing/daemon_double.hpp) as a
// process, with flags modelled on the real daemon's loopback mode
// (`ensemble --headless --signaling=loopback`). See --help for the flags and the exact
// format of the ready line that scripts and tests parse.
#include <ensemble/detail/hex.hpp>
#include <ensemble/testing/daemon_double.hpp>

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
  --request-timeout-ms N how long connection requests and file offers wait (default 30000)
  --help                 this text

output (stdout, each line flushed):
  token NAME TOKEN       one per --mint-token, before the ready line
  ready node=ADDR onion=ONION [api-addr=HOST:PORT] [api-socket=PATH] loopback-dir=DIR pid=PID
                         exactly one line once the API accepts calls; fields are
                         space-separated key=value pairs in this order, absent keys were
                         not configured; HOST:PORT carries the bound port

SIGINT or SIGTERM stops it cleanly (open streams end with UNAVAILABLE) and it exits 0.
Startup errors go to stderr with exit status 1; bad flags exit 2.
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "ensemble-loopbackd: " << message << "\n(see --help)\n";
  std::exit(2);
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
      try {
        options.request_timeout = std::chrono::milliseconds(std::stoll(value()));
      } catch (const std::exception&) {
        usage_error("--request-timeout-ms needs a number");
      }
    } else {
      usage_error("unknown option " + a);
    }
  }

  try {
    if (!loopback_given) options.loopback_dir = default_loopback_dir();
    if (!options.data_dir.empty()) std::filesystem::create_directories(options.data_dir);
    const auto loopback_dir = std::filesystem::absolute(options.loopback_dir);
    ensemble::testing::DaemonDouble daemon(options);

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
