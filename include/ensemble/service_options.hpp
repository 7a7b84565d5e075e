/// @file
/// What a service declares when it registers: the manifest, as C++ options. Checked here,
/// before any I/O, with errors that name the field, so a typo fails at the call site rather
/// than as a status from the daemon.
#pragma once

#include <ensemble/auth.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ensemble {

/// Who may open a connection to the service (daemon-protocol.md section 5, item 9). The
/// values are the wire's (ServiceManifest.acl; detail/manifest.hpp checks they agree).
enum class ACL {
  public_ = 0,    ///< anyone; the daemon's default
  contacts = 1,   ///< only the node's contacts
  allowlist = 2,  ///< only the addresses in ServiceOptions::allowlist
};

/// How peers talk to the service. The transport is part of the service's C++ type
/// (ChatService, RpcService, HttpService), so it is not an option here. The values are the
/// wire's (ServiceManifest.transport).
enum class Transport {
  chat = 0,  ///< text messages and connection requests: ChatService
  rpc = 1,   ///< raw bytes: RpcService
  http = 2,  ///< HTTP, served by the daemon: HttpService
};

/// Opt-in re-registration when the daemon goes away (stream ends with UNAVAILABLE). The
/// handlers are kept; actions issued while down fail with ServiceClosedError. A
/// re-registration that meets a daemon still starting up again (UNIMPLEMENTED while Tor
/// bootstraps), that the daemon refuses with ALREADY_EXISTS (it still holds the name for the
/// stream it lost a moment ago) or that times out (registration_timeout) is retried too. A
/// failure that waiting cannot mend ends the service at once instead, with the cause in its
/// status: the socket path is not a socket, this user may not open it, the TLS handshake
/// fails. Why it retries goes to the log sink (log.hpp) when it starts, when the reason
/// changes and after 10, 100, ... attempts. The backoff numbers also pace
/// ServiceOptions::wait_for_daemon. Values out of range are a ConfigError when the service is
/// made; a delay longer than 100 years is a wait of 100 years (no clock overflows).
struct ReconnectPolicy {
  bool enabled = false;  ///< re-register at all; off by default
  std::chrono::milliseconds initial_backoff{200};  ///< >= 0
  std::chrono::milliseconds max_backoff{5000};     ///< >= initial_backoff
  double multiplier = 2.0;  ///< >= 1
  double jitter = 0.2;      ///< in [0, 1]: each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
  int max_attempts = 0;     ///< consecutive failed attempts before giving up; 0 = never give up
};

/// What a service declares when it registers, and how the library runs it. Fill with
/// designated initializers, as ClientOptions: client.service("echo", {.acl = ACL::contacts}).
struct ServiceOptions {
  std::string description{};  ///< what the service does, sent in the manifest
  ACL acl = ACL::public_;  ///< who may connect: see ACL
  std::vector<std::string> allowlist{};  ///< checked as addresses when acl == ACL::allowlist
  /// Advisory: the daemon keeps the keypair it already has for a name and ignores this.
  /// Pin to the address from registration instead (Service::address()).
  std::optional<Seed> keypair_seed{};
  std::uint32_t max_payload_bytes = 0;      ///< inbound cap; 0 = the daemon's default
  std::uint32_t rate_limit_per_minute = 0;  ///< inbound envelopes per minute; 0 = unlimited
  /// Inbound envelopes one sender may send at once; 0 = unlimited.
  std::uint32_t rate_limit_burst = 0;
  /// How long one registration attempt waits for `registered` before it is cancelled
  /// (DEADLINE_EXCEEDED). The daemon sends `registered` only after the service's onion
  /// descriptor is published: with Tor that commonly takes tens of seconds and occasionally
  /// minutes (in loopback mode it is immediate). The default, 10 minutes, is chosen so that
  /// a healthy daemon never fails it; lower it only where you know the daemon's Tor is
  /// fast. It applies to every attempt: start()'s, each retry of wait_for_daemon and each
  /// reconnect. Zero: wait without limit (a frozen daemon is still noticed through
  /// ClientOptions::keepalive_interval), as a CallOptions::timeout of zero means no deadline,
  /// and so does one too long for the clock (milliseconds::max()); negative is a ConfigError.
  std::chrono::milliseconds registration_timeout{600'000};
  /// start() waits for a daemon that is not ready yet instead of failing: one whose socket
  /// does not exist yet (UNAVAILABLE) or whose service registry is not up while Tor
  /// bootstraps (UNIMPLEMENTED "service registry not configured on this daemon"). It
  /// registers again with the ReconnectPolicy's backoff (initial_backoff .. max_backoff,
  /// whether or not reconnect.enabled) until registered, until reconnect.max_attempts
  /// consecutive failures, or until cancel(). For a bot started alongside its daemon (a
  /// sidecar, a systemd unit ordered only loosely after it). Other refusals (ALREADY_EXISTS,
  /// INVALID_ARGUMENT, auth), and failures waiting cannot mend (the socket path is not a
  /// socket, this user may not open it, the TLS handshake fails), still fail start() at once,
  /// with the cause in the RegistrationError. Each reason to wait is logged (see
  /// ReconnectPolicy).
  bool wait_for_daemon = false;
  /// What to do when the daemon goes away; also paces wait_for_daemon.
  ReconnectPolicy reconnect{};
  /// Read-ahead: how many events the library reads off the stream and keeps while handlers
  /// (or next_event callers) catch up. When full, the oldest queued event is dropped and
  /// reported (on_events_dropped / EventsDropped, ServiceStats::events_dropped). At least 1.
  /// The default holds a burst of 5,000 chats arriving faster than the handlers take them
  /// (bench workload 7); idle, the queue costs nothing.
  std::size_t event_queue_capacity = 8192;
  /// The same bound in bytes (payloads and strings of the queued events, roughly), so that
  /// large RPC payloads cannot make the queue huge. The newest event is always kept.
  std::size_t event_queue_max_bytes = 64u << 20;
  /// Where the service's callbacks run (every one of them: see "Where callbacks run" in
  /// service.hpp). Empty: on gRPC's threads, which must then never block for long. Set: each
  /// batch of turns is handed to this function as a task (post it to your event loop or
  /// thread pool; ThreadPool::executor() is one), and a slow handler no longer stops the
  /// service from reading. The executor must run every task it accepts, once, on any thread,
  /// or throw (the library then runs the task on the calling thread); a task it destroys
  /// without running is run on the destroying thread, and logged. It must outlive the
  /// service; the library destroys its copy of this function when the service ends.
  std::function<void(std::function<void()>)> executor{};
  /// How many turns may run at once. 1 (the default): one at a time, in the daemon's order.
  /// N > 1: events from different peers (ChatMessage::from_addr, ConnectionRequest::from_addr,
  /// RpcMessage::from_addr, PeerIntroduction::from_service_addr, ServiceError::from_addr) run
  /// at the same time, up to N, while each peer's events still run one at a time, in order;
  /// everything without a peer runs alone. N > 1 needs an executor with threads to run them
  /// (ThreadPool); without one it is a ConfigError, as is 0.
  std::size_t max_turns_in_flight = 1;
};

}  // namespace ensemble
