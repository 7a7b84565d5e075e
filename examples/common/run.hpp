// The parts every example's main shares: the Client its flags (or its environment) ask for,
// and running one service until Ctrl-C / SIGTERM or until the daemon ends it.
#pragma once

#include "cli.hpp"
#include "output.hpp"

#include <ensemble/ensemble.hpp>

#include <chrono>
#include <cstring>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

namespace examples {

// --demo brings its own daemon, so flags that pick one make no sense beside it.
inline void forbid_connection_flags(const Cli& cli, std::string_view because) {
  for (const char* flag : {"socket", "addr", "tls", "tls-ca", "tls-insecure", "seed"}) {
    if (cli.has(flag)) cli.fail(std::string(because) + "; drop --" + flag);
  }
}

// The flag behind the ClientOptions member a ConfigError names ("--tls-ca: "), or "" when it
// names none (an environment variable names itself).
inline std::string flag_named_in(std::string_view message) {
  for (const auto& [option, flag] : {std::pair{"ClientOptions::tls_root_certs", "--tls-ca: "},
                                     std::pair{"ClientOptions::socket_path", "--socket: "},
                                     std::pair{"ClientOptions::addr", "--addr: "}}) {
    if (message.find(option) != std::string_view::npos) return flag;
  }
  return "";
}

// The Client for --socket / --addr (and --tls*, --seed). With neither, the process
// configures itself from its environment, as a service the daemon spawned must:
// ENSEMBLE_SERVICE_TOKEN set -> supervised (token on RegisterService, no seed); otherwise
// ENSEMBLE_SOCKET, signed with ENSEMBLE_AUTH_SEED when that is set.
inline ensemble::Client make_client(const Cli& cli) {
  const std::optional<ensemble::ClientOptions> flags = connection_options(cli);
  try {
    if (flags) return ensemble::Client(*flags);
    return ensemble::Client::from_env();
  } catch (const ensemble::ConfigError& e) {
    if (flags) cli.fail(flag_named_in(e.what()) + std::string(e.what()));
    cli.fail(std::string(e.what()) + " (or pass --socket PATH / --addr HOST:PORT)");
  }
}

// Ctrl-C and SIGTERM as one stop token for the process (ensemble::SignalStop), made on first
// use. A bot calls it before it makes its Client, so that gRPC's threads start with the
// signals blocked and the watcher takes them (include/ensemble/signals.hpp says why).
inline ensemble::SignalStop& signal_stop() {
  static ensemble::SignalStop stop;
  return stop;
}

// Registers `service` (its handlers already installed) and runs it until Ctrl-C / SIGTERM
// (exit 0) or until the daemon ends the stream (exit 1). A signal drains the service at
// whatever point it has reached (Service::stop_on): while start() still waits for the
// daemon, start() gives up at once; registered, the turns in flight finish and their replies
// are written (up to `grace` for events already queued) before the stream closes and wait()
// returns.
inline int serve(ensemble::Service& service, const std::string& who,
                 std::chrono::milliseconds grace = std::chrono::seconds(10)) {
  ensemble::SignalStop& stop = signal_stop();
  std::stop_callback announce(stop.token(), [&] { say(who, ": ", ::strsignal(stop.signal()), "; draining"); });
  service.stop_on(stop.token(), grace);
  say(who, ": registering service \"", service.name(), "\"");
  try {
    service.start();
  } catch (const ensemble::Error&) {
    if (!stop.token().stop_requested()) throw;  // the daemon refused us: exit 1
    say(who, ": stopped before registering");
    return kExitOk;
  }
  say(who, ": registered as ", service.address(), " (onion ", service.onion(), ")");
  const grpc::Status end = service.wait();
  if (stop.token().stop_requested() && end.ok()) {
    say(who, ": closed");
    return kExitOk;
  }
  complain(who, ": the daemon ended the stream: ", ensemble::RpcError::status_name(end.error_code()),
           ": ", end.error_message());
  return kExitFailure;
}

// main's last line of defence: flag-shaped mistakes exit 2, everything else 1, each with
// one line naming what went wrong.
template <class Body>
int guard(const Cli& cli, Body&& body) {
  try {
    return body();
  } catch (const ensemble::ConfigError& e) {
    cli.fail(e.what());
  } catch (const std::exception& e) {
    complain(cli.program(), ": ", e.what());
    return kExitFailure;
  }
}

}  // namespace examples
