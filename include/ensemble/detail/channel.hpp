// Turns ClientOptions into a gRPC channel with the right credentials. The one subtle case:
// gRPC only attaches per-call credentials (our signature headers) to a channel whose
// security level allows it, so a plaintext Unix socket or loopback TCP channel must be built
// with *local* credentials of the matching kind. (The Python client once shipped without
// this and failed with "Endpoint is neither UDS or TCP loopback address".)
#pragma once

#include <ensemble/auth.hpp>
#include <ensemble/client_options.hpp>
#include <ensemble/detail/connectivity.hpp>
#include <ensemble/detail/inputs.hpp>
#include <ensemble/errors.hpp>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ensemble::detail {

// The channel arguments the library sets itself (set_library_channel_args below), each with
// what governs it. ClientOptions::channel_args may not set them: the user's value would
// either be ignored or undo a promise the README makes. Every argument the library sets
// is listed here; test_observability checks that against what make_channel sets.
struct OwnedChannelArg {
  std::string_view key;
  std::string_view governed_by;
};
inline constexpr OwnedChannelArg kOwnedChannelArgs[] = {
    {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, "the library: no limit on what the daemon sends"},
    {GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, "ClientOptions::max_message_bytes"},
    {GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, "the library: a restarted daemon is redialled within 100 ms"},
    {GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, "the library: a restarted daemon is redialled within 2 s"},
    {GRPC_ARG_KEEPALIVE_TIME_MS, "ClientOptions::keepalive_interval"},
    {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, "ClientOptions::keepalive_timeout"},
    {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, "ClientOptions::keepalive_interval, within the daemon's ping policy"},
    {GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, "ClientOptions::keepalive_interval, within the daemon's ping policy"},
};

// ClientOptions::channel_args and ::interceptors: a ConfigError naming every owned argument
// set (once each), or the position of a null interceptor factory.
inline void check_observability_options(const ClientOptions& o) {
  const grpc_channel_args args = o.channel_args.c_channel_args();
  std::vector<std::string_view> refused;
  std::string message;
  for (std::size_t i = 0; i < args.num_args; ++i) {
    const std::string_view key = args.args[i].key;
    for (const OwnedChannelArg& owned : kOwnedChannelArgs) {
      if (key != owned.key || std::find(refused.begin(), refused.end(), key) != refused.end()) continue;
      refused.push_back(key);
      message.append(refused.size() == 1 ? "" : "; ").append("\"").append(key).append("\" (set by ");
      message.append(owned.governed_by).append(")");
    }
  }
  if (!refused.empty()) {
    throw ConfigError("ClientOptions::channel_args sets " +
                      std::string(refused.size() == 1 ? "an argument" : "arguments") +
                      " the library sets itself: " + message);
  }
  for (std::size_t i = 0; i < o.interceptors.size(); ++i) {
    if (!o.interceptors[i]) {
      throw ConfigError("ClientOptions::interceptors[" + std::to_string(i) + "] is null");
    }
  }
}

// Throws ConfigError for options that cannot work or would reach gRPC malformed; returns the
// gRPC target to dial.
inline std::string check_options(const ClientOptions& o) {
  if (o.socket_path.empty() == o.addr.empty()) {
    throw ConfigError(o.socket_path.empty()
                          ? "ClientOptions: set exactly one of socket_path or addr (neither is set)"
                          : "ClientOptions: set exactly one of socket_path or addr (both are set: "
                            "socket_path " + shown(o.socket_path) + ", addr " + shown(o.addr) + ")");
  }
  check_service_token("ClientOptions::service_token", o.service_token);
  check_observability_options(o);
  const bool wants_tls = o.tls || o.tls_insecure || !o.tls_root_certs.empty();
  if (!o.socket_path.empty()) {
    if (wants_tls) {
      throw ConfigError("ClientOptions: tls applies to addr only, not to socket_path " +
                        shown(o.socket_path));
    }
    return unix_target(socket_file(o.socket_path, "ClientOptions::socket_path"));
  }
  const HostPort address = parse_addr(o.addr, "ClientOptions::addr");
  if (o.auth_seed && !wants_tls && !is_loopback(address)) {
    throw ConfigError("ClientOptions::addr " + shown(o.addr) +
                      " is not a loopback address (localhost, 127.0.0.0/8, ::1); signed calls "
                      "over plaintext TCP are only sent to loopback. Set tls = true (or use "
                      "socket_path)");
  }
  return tcp_target(address);
}

inline std::shared_ptr<grpc::ChannelCredentials> transport_credentials(const ClientOptions& o,
                                                                       bool signs_calls) {
  if (!o.socket_path.empty()) {
    return grpc::experimental::LocalCredentials(UDS);
  }
  if (o.tls_insecure) {
    grpc::experimental::TlsChannelCredentialsOptions tls;
    tls.set_verify_server_certs(false);
    tls.set_check_call_host(false);
    tls.set_certificate_verifier(
        std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
    return grpc::experimental::TlsCredentials(tls);
  }
  if (o.tls || !o.tls_root_certs.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = o.tls_root_certs;  // empty = the system trust store
    return grpc::SslCredentials(ssl);
  }
  // Plain TCP: local credentials let loopback calls carry signatures; without a seed there
  // is nothing to protect and any host is fine.
  return signs_calls ? grpc::experimental::LocalCredentials(LOCAL_TCP)
                     : grpc::InsecureChannelCredentials();
}

// Keepalive (ClientOptions::keepalive_interval): how a frozen daemon is noticed. The
// daemon's enforcement (grpc-go defaults) allows one ping per 5 minutes while it sends
// nothing, and none without an open call, so pings go only while a call is open. gRPC's
// client would otherwise stop pinging a quiet stream after 2 pings without data, and a
// daemon that froze after that would go unnoticed; spaced as the interval says, any number
// of pings is within the daemon's policy.
inline void apply_keepalive(grpc::ChannelArguments& args, const ClientOptions& o) {
  if (o.keepalive_interval.count() <= 0) return;
  const int interval = static_cast<int>(std::min<long long>(o.keepalive_interval.count(), INT32_MAX));
  const int timeout = static_cast<int>(std::clamp<long long>(o.keepalive_timeout.count(), 1, INT32_MAX));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, interval);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, timeout);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
}

// Every channel argument the library sets (each is in kOwnedChannelArgs).
inline void set_library_channel_args(grpc::ChannelArguments& args, const ClientOptions& o) {
  // Events are small but RPC payloads and file progress may not be: lift the 4 MiB default.
  // (What the library sends is checked against ClientOptions::max_message_bytes itself.)
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // The daemon is local, so when it restarts it is back within moments: retry the
  // connection quickly instead of gRPC's default backoff that grows to two minutes, or a
  // reconnecting service would sit idle long after the daemon returned.
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays at gRPC's default (20 s): despite its name, gRPC
  // gives every connection attempt at least that long to finish (handshake and SETTINGS
  // included), so a small value fails every call behind a listener slower than it.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  apply_keepalive(args, o);
}

// A ClientOptions::interceptors entry as gRPC wants it (a factory it owns), the factory
// itself staying shared.
class SharedInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit SharedInterceptorFactory(std::shared_ptr<grpc::experimental::ClientInterceptorFactoryInterface> factory)
      : factory_(std::move(factory)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo* info) override {
    return factory_->CreateClientInterceptor(info);
  }

 private:
  std::shared_ptr<grpc::experimental::ClientInterceptorFactoryInterface> factory_;
};

// `connectivity` (ClientOptions::on_connectivity) watches every call through an interceptor
// of its own, after the user's.
inline std::shared_ptr<grpc::Channel> make_channel(const ClientOptions& o,
                                                   std::shared_ptr<const Signer> signer,
                                                   std::shared_ptr<ConnectivityMonitor> connectivity = nullptr) {
  const std::string target = check_options(o);
  auto creds = transport_credentials(o, signer != nullptr);
  if (signer) {
    creds = grpc::CompositeChannelCredentials(creds, signing_call_credentials(std::move(signer)));
  }
  grpc::ChannelArguments args = o.channel_args;  // none of them owned (check_options)
  set_library_channel_args(args, o);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  for (const auto& factory : o.interceptors) {
    interceptors.push_back(std::make_unique<SharedInterceptorFactory>(factory));
  }
  if (connectivity) {
    interceptors.push_back(std::make_unique<ConnectivityInterceptorFactory>(std::move(connectivity)));
  }
  if (interceptors.empty()) return grpc::CreateCustomChannel(target, creds, args);
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, creds, args, std::move(interceptors));
}

}  // namespace ensemble::detail
