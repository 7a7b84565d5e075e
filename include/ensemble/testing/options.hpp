// Configuration of the daemon double (daemon_double.hpp) and of ensemble-loopbackd.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace ensemble::testing {

struct DaemonDoubleOptions {
  // Where the API listens. Either, both, or neither (neither = tcp_address "127.0.0.1:0").
  std::string unix_socket{};  // a path; an existing socket file there is replaced
  std::string tcp_address{};  // e.g. "127.0.0.1:0": port 0 binds a free port (tcp_port())

  // Set: every call must carry a valid admin signature by this Ed25519 public key
  // (section 4), except RegisterService with a minted x-service-token. Unset: no auth.
  std::optional<std::array<std::uint8_t, 32>> admin_key{};

  // Empty: keypairs and contacts live in memory. Set: the node key, every service key and
  // the contacts are kept there, so addresses survive a restart with the same directory.
  std::filesystem::path data_dir{};

  // Empty: no rendezvous; this double reaches only its own services (everything else is a
  // synthetic peer). Set: doubles sharing the directory reach each other's identities.
  std::filesystem::path loopback_dir{};

  // Per-stream event queue of RegisterService (drop oldest) and of Subscribe (drop newest).
  std::size_t event_queue_depth = 256;

  // The clock the auth check and event timestamps use; default system_clock::now.
  std::function<std::chrono::system_clock::time_point()> clock{};

  // false: RegisterService is UNIMPLEMENTED "service registry not configured on this daemon".
  bool registry_enabled = true;

  // false: AddContact is FAILED_PRECONDITION "contacts not initialized" (a daemon without a
  // contact store).
  bool contacts_enabled = true;

  // The inbound payload cap of a service whose manifest says max_payload_bytes = 0.
  std::uint32_t default_max_payload_bytes = 1u << 20;

  // How long a connection request or file offer waits for a decision before it is refused.
  std::chrono::milliseconds request_timeout{30'000};

  // Test hooks record every action and every message a synthetic peer receives. Turn off
  // for long benchmarks that would otherwise keep gigabytes; counters still count.
  bool record_traffic = true;
};

}  // namespace ensemble::testing
