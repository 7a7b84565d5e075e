/// @file
/// Configuration of the daemon double (daemon_double.hpp) and of ensemble-loopbackd.
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

/// How a DaemonDouble (or ensemble-loopbackd) listens, who may call it and how it behaves.
/// Fill with designated initializers: DaemonDouble daemon({.unix_socket = path}).
struct DaemonDoubleOptions {
  /// Where the API listens. Either, both, or neither (neither = tcp_address "127.0.0.1:0").
  std::string unix_socket{};  ///< a path; an existing socket file there is replaced
  std::string tcp_address{};  ///< e.g. "127.0.0.1:0": port 0 binds a free port (tcp_port())

  /// Set: every call must carry a valid admin signature by this Ed25519 public key
  /// (section 4), except RegisterService with a minted x-service-token. Unset: no auth.
  std::optional<std::array<std::uint8_t, 32>> admin_key{};

  /// Empty: keypairs and contacts live in memory. Set: the node key, every service key and
  /// the contacts are kept there, so addresses survive a restart with the same directory.
  std::filesystem::path data_dir{};

  /// Empty: no rendezvous; this double reaches only its own services (everything else is a
  /// synthetic peer). Set: doubles sharing the directory reach each other's identities.
  std::filesystem::path loopback_dir{};

  /// Per-stream event queue of RegisterService (drop oldest; the daemon's is 256).
  std::size_t event_queue_depth = 256;
  /// Subscribe's queues: each event type has one of this depth feeding one of this depth per
  /// subscriber; when both are full the NEWEST event is dropped (the daemon's are 64).
  std::size_t node_event_queue_depth = 64;

  /// The largest serialized message a call may send, as grpc-go's default the daemon keeps
  /// (4,194,304 bytes). A larger one ends the call with RESOURCE_EXHAUSTED "grpc: received
  /// message larger than max (<n> vs. <limit>)"; on RegisterService the service is
  /// unregistered.
  std::size_t max_receive_message_bytes = 4u << 20;

  /// The clock the auth check and event timestamps use; default system_clock::now.
  std::function<std::chrono::system_clock::time_point()> clock{};

  /// false: RegisterService is UNIMPLEMENTED "service registry not configured on this daemon".
  bool registry_enabled = true;

  /// false: AddContact is FAILED_PRECONDITION "contacts not initialized" (a daemon without a
  /// contact store).
  bool contacts_enabled = true;

  /// The inbound payload cap of a service whose manifest says max_payload_bytes = 0.
  std::uint32_t default_max_payload_bytes = 1u << 20;

  /// How long a connection request or file offer waits for a decision before it is refused.
  /// Zero (the default, as on the daemon) waits until it is answered or its stream closes.
  std::chrono::milliseconds request_timeout{0};

  // ---- the daemon's start-up, on request (zero: ready at once) ----------------------------
  /// (Here and in request_timeout, a duration of 100 years or more means never.)
  /// The Unix socket appears only this long after construction; calls meanwhile fail
  /// UNAVAILABLE, as before the daemon has created its socket. Unix socket only.
  std::chrono::milliseconds socket_delay{0};
  /// Then Tor bootstraps for this long: GetStatus says tor_state "bootstrapping", Subscribe
  /// carries tor_bootstrap events, RegisterService fails UNIMPLEMENTED "service registry not
  /// configured on this daemon"; then a tor_ready event and tor_state "ready".
  std::chrono::milliseconds bootstrap_time{0};
  /// `registered` goes out this long after a manifest is accepted (the daemon waits for the
  /// onion descriptor to be published: tens of seconds, sometimes minutes, with Tor).
  std::chrono::milliseconds registration_delay{0};

  /// Test hooks record every action and every message a synthetic peer receives. Turn off
  /// for long benchmarks that would otherwise keep gigabytes; counters still count.
  bool record_traffic = true;
};

}  // namespace ensemble::testing
