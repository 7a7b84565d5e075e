// The parts every example's main shares: the Client its flags (or its environment) ask for,
// and running one service until Ctrl-C / SIGTERM or until the daemon ends it.
#pragma once

#include "cli.hpp"
#include "output.hpp"
#include "signals.hpp"

#include <ensemble/ensemble.hpp>

#include <atomic>
#include <cstring>
#include <optional>
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

// Registers `service` (its handlers already installed) and runs it until Ctrl-C / SIGTERM
// asks for a graceful close (exit 0) or the daemon ends the stream (exit 1). The signal
// handler only wakes a thread (signals.hpp); that thread calls close(), which still writes
// the replies already queued before the daemon ends the stream and wait() returns.
inline int serve(ensemble::Service& service, const std::string& who) {
  std::atomic<bool> stopping{false};
  OnSignal on_signal([&](int signal) {
    say(who, ": ", ::strsignal(signal), "; closing");
    stopping = true;
    service.close();
  });
  service.start();  // throws ensemble::RegistrationError when the daemon refuses
  say(who, ": registered as ", service.address(), " (onion ", service.onion(), ")");
  const grpc::Status end = service.wait();
  if (stopping) {
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
