/// @file
/// How a Client reaches its daemon and proves who it is.
#pragma once

#include <ensemble/auth.hpp>
#include <ensemble/connectivity.hpp>

#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_interceptor.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ensemble {

/// Fill with designated initializers: Client({.socket_path = "/run/ensemble/sock"}). Every
/// member of the option structs has a default initializer ({}), which also keeps GCC 12's
/// -Wmissing-field-initializers quiet about the members left out.
struct ClientOptions {
  /// Exactly one of these two. socket_path is the daemon's Unix socket ("/run/ensemble/sock"),
  /// dialled exactly as written whatever bytes it holds, at most 107 bytes on Linux; the
  /// "unix:PATH" and "unix:///ABS/PATH" forms are accepted too, without '\%', '?' or '#'.
  /// addr is "host:port" or "[ipv6]:port" over TCP, port 1 to 65535; an IPv4 address in any
  /// form the C library reads ("127.1", "0x7f.0.0.1") is dialled as its dotted quad, and
  /// "localhost." as "localhost", since gRPC's resolver would ask DNS about those spellings.
  /// The Client's constructor refuses anything else with a ConfigError (README, "Connecting").
  std::string socket_path{};
  std::string addr{};  ///< TCP "host:port": see socket_path

  /// TLS, for addr only. tls uses the system trust store (or the PEM file named by
  /// GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, gRPC's own setting); tls_root_certs (PEM text)
  /// replaces it, e.g. with a LAN CA, and implies tls. Either is read when the Client is
  /// built: a bundle without a certificate, or with one that does not parse, is a
  /// ConfigError naming the option or the variable (gRPC would otherwise fail every call with
  /// UNAVAILABLE "empty address list"). TLS to a host that is not loopback is the one
  /// channel that follows the host's proxy settings (grpc_proxy, https_proxy, http_proxy,
  /// no_proxy): a Unix socket, loopback and plaintext TCP never go through a proxy.
  bool tls = false;
  std::string tls_root_certs{};  ///< PEM roots instead of the system's: see tls
  /// DEVELOPMENT ONLY: encrypts but skips every check of the server's certificate, so anyone
  /// on the path can impersonate the daemon and read the admin-signed calls. Implies tls.
  bool tls_insecure = false;

  /// The admin seed: every call is signed with it (x-auth-* headers). Load one with
  /// Seed::from_file("/etc/ensemble/admin.seed") or Seed::from_bytes(...).
  std::optional<Seed> auth_seed{};

  /// Supervised services: the token the daemon's supervisor handed the process
  /// (ENSEMBLE_SERVICE_TOKEN). Sent as x-service-token on RegisterService; the token is the
  /// auth on that call, so it is not signed. Being gRPC metadata it must be printable ASCII
  /// (0x20 to 0x7E) with no space at either end; empty means none.
  std::string service_token{};

  /// The largest message (serialized) the library will send. The daemon ends any call that
  /// carries a larger one (RESOURCE_EXHAUSTED; on RegisterService that unregisters the
  /// service), so an action or request over this throws InvalidArgumentError before anything
  /// is queued. The default is the daemon's own limit (grpc-go's default, 4 MiB); change it
  /// only for a daemon configured otherwise. 0 turns the check off.
  std::size_t max_message_bytes = 4'194'304;

  /// How a frozen daemon (a stopped process, a dead host behind TCP) is noticed: while a call
  /// is open and the daemon has sent nothing for keepalive_interval, gRPC pings it; without
  /// an answer within keepalive_timeout the connection is closed, every open stream ends
  /// UNAVAILABLE and a service's ReconnectPolicy takes over. Without this a stopped daemon
  /// leaves a service "registered" forever.
  ///
  /// The default (5 minutes) is the shortest interval the daemon tolerates: it allows one
  /// ping per 5 minutes while it sends nothing, and after 3 earlier pings it sends GOAWAY
  /// "too_many_pings" and closes the connection, ending every stream on it (UNAVAILABLE; a
  /// service then reconnects, an event subscription ends). A shorter interval therefore costs
  /// that GOAWAY on a quiet daemon: use one only against a daemon (or test double) that
  /// permits it. Zero turns keepalive off. No pings are sent without an open call. A negative
  /// value, or a keepalive_timeout under 1 ms with keepalive on, is a ConfigError; beyond
  /// gRPC's 2^31-1 ms (24.8 days) either counts as that.
  std::chrono::milliseconds keepalive_interval{300'000};
  /// How long a ping may go unanswered: see keepalive_interval.
  std::chrono::milliseconds keepalive_timeout{20'000};

  // ---- Hooks for observability (README, "Observability") ----

  /// Extra gRPC channel arguments, passed to the channel as they are: a user agent prefix
  /// (SetUserAgentPrefix), a resource quota, gRPC's own tracing and load-reporting switches.
  /// The ones the library sets itself (message size limits, keepalive, reconnect backoff:
  /// the list is detail::kOwnedChannelArgs in detail/channel.hpp) are refused: the Client's
  /// constructor throws ConfigError naming each one and the option that governs it.
  grpc::ChannelArguments channel_args{};

  /// Client interceptor factories (OpenTelemetry's, a metrics counter, ...), installed on the
  /// channel in this order: every call and stream of the Client, its services', passes
  /// through them. gRPC's experimental interceptor API; a factory may be shared by several
  /// Clients, and an interceptor runs on whichever thread gRPC runs that call's operations
  /// (a gRPC thread, or the thread of a blocking call). They see each call's metadata, the
  /// service token included (SECURITY.md). A null factory is a ConfigError.
  std::vector<std::shared_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors{};

  /// Called when the daemon becomes reachable, stops being reachable or becomes reachable
  /// again, as the Client's calls find it (connectivity.hpp says from what evidence). Runs
  /// on a gRPC thread (never inside a blocking call of yours), one change at a time and in
  /// order; it must not block for long. Not called after ~Client has returned, and destroyed
  /// by then (the one exception: a Client destroyed from inside this callback, or from
  /// another handler, ends it on a gRPC thread as soon as that callback returns). An
  /// exception escaping it is logged (log.hpp) and ignored. Empty: nothing is watched.
  std::function<void(Connectivity change)> on_connectivity{};
};

/// Per-call settings for node-level calls (Client::get_status(…, CallOptions{…}) etc.).
struct CallOptions {
  /// Zero means no deadline, and so does a timeout too long for the clock (about 200 years
  /// and more: std::chrono::milliseconds::max()); negative is a ConfigError when the call is
  /// made. A call past its deadline fails with DEADLINE_EXCEEDED.
  std::chrono::milliseconds timeout{0};
};

}  // namespace ensemble
