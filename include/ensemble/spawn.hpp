/// @file
/// The spawn contract (daemon-protocol.md section 8): what the daemon's supervisor puts in a
/// service's environment, or what a standalone/sidecar deployment sets itself.
#pragma once

#include <ensemble/detail/inputs.hpp>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace ensemble {

/// One snapshot of the ENSEMBLE_* variables. An empty variable counts as unset, because a
/// shell or a manifest often exports a variable as "" to mean "none". A value that starts or
/// ends with whitespace is refused, not trimmed (see detail::check_env_surroundings for why).
///
/// from_env reads the environment without locking it: call it before starting threads that
/// may call setenv (the usual rule for getenv).
struct SpawnContext {
  std::optional<std::string> socket_path{};    ///< ENSEMBLE_SOCKET: the daemon API's Unix socket
  std::optional<std::string> service_name{};   ///< ENSEMBLE_SERVICE_NAME: the installed name
  std::optional<std::string> service_token{};  ///< ENSEMBLE_SERVICE_TOKEN: per-spawn token
  std::optional<std::string> auth_seed_path{}; ///< ENSEMBLE_AUTH_SEED: seed file (sidecar)
  std::optional<std::filesystem::path> data_dir{};  ///< ENSEMBLE_DATA_DIR: writable, per service

  /// True when the daemon spawned this process: a token is present, so the token, not a
  /// seed, is the auth on RegisterService.
  bool supervised() const noexcept { return service_token.has_value(); }

  /// Throws ConfigError naming the variable, with invisible characters escaped (the token's
  /// value is never shown), when a value starts or ends with whitespace; nothing else in the
  /// environment makes it throw (only std::bad_alloc could escape).
  static SpawnContext from_env() {
    SpawnContext context;
    context.socket_path = read("ENSEMBLE_SOCKET");
    context.service_name = read("ENSEMBLE_SERVICE_NAME");
    context.service_token = read("ENSEMBLE_SERVICE_TOKEN");
    context.auth_seed_path = read("ENSEMBLE_AUTH_SEED");
    if (auto dir = read("ENSEMBLE_DATA_DIR")) context.data_dir = std::filesystem::path(*dir);
    return context;
  }

 private:
  static std::optional<std::string> read(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    detail::check_env_surroundings(name, value, std::string_view(name) == "ENSEMBLE_SERVICE_TOKEN");
    return std::string(value);
  }
};

}  // namespace ensemble
