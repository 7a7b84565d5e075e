// Turns ClientOptions into a gRPC channel with the right credentials. The one subtle case:
// gRPC only attaches per-call credentials (our signature headers) to a channel whose
// security level allows it, so a plaintext Unix socket or loopback TCP channel must be built
// with *local* credentials of the matching kind. (The Python client once shipped without
// this and failed with "Endpoint is neither UDS or TCP loopback address".)
//
// It also decides what of the host's environment the channel obeys: an HTTP proxy only on
// the way to a remote daemon over TLS (never to this machine's daemon, never in plaintext),
// and the trust store only after its certificates have been checked here.
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
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ensemble::detail {

// The channel arguments the library sets itself (set_library_channel_args below), each with
// what governs it: each carries a promise of the library (limits at least the daemon's, the
// proxy rule, keepalive within the daemon's policy, quick reconnects), so
// ClientOptions::channel_args may not set them: the user's value would either be ignored or
// undo a promise the README makes. Every argument the library sets
// is listed here; test_observability checks that against what make_channel sets.
struct OwnedChannelArg {
  std::string_view key;
  std::string_view governed_by;
};
inline constexpr OwnedChannelArg kOwnedChannelArgs[] = {
    {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, "the library: no limit on what the daemon sends"},
    {GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, "ClientOptions::max_message_bytes"},
    {GRPC_ARG_MAX_METADATA_SIZE, "the library: headers as large as the daemon can send"},
    {GRPC_ARG_ENABLE_HTTP_PROXY, "the library: a proxy only to a remote daemon over TLS"},
    {GRPC_ARG_HTTP_PROXY, "the library: a proxy only to a remote daemon over TLS, from the environment"},
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

// The most header bytes (initial metadata, trailers: a status message travels in them) the
// daemon can send and the client takes. grpc-go's default header list limit, both ways, is
// 16 MiB (internal/transport/defaults.go); gRPC C++ would cut at 8 KiB and turn a daemon's
// longer status into RESOURCE_EXHAUSTED "received initial metadata size exceeds limit".
inline constexpr int kMaxMetadataBytes = 16 << 20;

// Certificate material gRPC would read only at the first call, checked now. gRPC loads a
// root bundle with OpenSSL's PEM reader, certificate after certificate until one does not
// read, and a bundle with none fails every call with UNAVAILABLE "empty address list". Here
// a bundle without a certificate, or with one that does not parse (gRPC would silently drop
// it and every certificate after it), is a ConfigError naming `source`.
inline void check_root_certificates(std::string_view pem, const std::string& source) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                &BIO_free);
  if (!bio) throw ConfigError(source + ": out of memory reading the certificates");
  int certificates = 0;
  ERR_clear_error();
  // An empty passphrase, as gRPC gives it: OpenSSL never stops to prompt on a terminal.
  while (X509* cert = PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, const_cast<char*>(""))) {
    X509_free(cert);
    ++certificates;
  }
  const unsigned long error = ERR_peek_last_error();
  ERR_clear_error();
  // The loop ends at the end of the text (no further "BEGIN CERTIFICATE") or at a block
  // that does not read.
  const bool ended_cleanly = ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
  if (certificates > 0 && (error == 0 || ended_cleanly)) return;
  const bool private_key = pem.find("PRIVATE KEY-----") != std::string_view::npos;
  if (!ended_cleanly && error != 0) {
    throw ConfigError(source + ": certificate " + std::to_string(certificates + 1) +
                      " of the PEM bundle does not parse (" + ERR_reason_error_string(error) +
                      "); give PEM text (\"-----BEGIN CERTIFICATE-----\" ...) of the CA that "
                      "signed the daemon's certificate");
  }
  throw ConfigError(source + " holds no certificate (" + std::to_string(pem.size()) + " bytes" +
                    (private_key ? ", among them a private key, which does not belong here" : "") +
                    "); give PEM text (\"-----BEGIN CERTIFICATE-----\" ...) of the CA that signed "
                    "the daemon's certificate");
}

// gRPC reads its own trust store path from GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, once per
// process, when the first TLS channel verifies a server against the default roots. An
// unreadable file there makes gRPC fall back to the system's store without a word, and one
// without certificates fails every call; both are refused here, naming the variable.
inline void check_default_roots_file() {
  const char* path = std::getenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH");
  if (path == nullptr || *path == '\0') return;
  const std::string source = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH " + shown(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError(source + " cannot be read (" + std::strerror(errno) +
                      "); gRPC would use the system's trust store instead. Fix or unset it");
  }
  const std::string pem{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  check_root_certificates(pem, source);
}

// What check_options found: where to dial and what kind of way there it is.
struct CheckedTarget {
  std::string target;       // the gRPC target: "unix:..." or "dns:///host:port"
  std::string socket_file;  // the Unix socket's path, exactly; empty over TCP
  bool tls = false;
  bool loopback = false;  // a Unix socket, or a loopback host
};

// Throws ConfigError for options that cannot work or would reach gRPC malformed; returns the
// gRPC target to dial.
inline CheckedTarget check_options(const ClientOptions& o) {
  if (o.socket_path.empty() == o.addr.empty()) {
    throw ConfigError(o.socket_path.empty()
                          ? "ClientOptions: set exactly one of socket_path or addr (neither is set)"
                          : "ClientOptions: set exactly one of socket_path or addr (both are set: "
                            "socket_path " + shown(o.socket_path) + ", addr " + shown(o.addr) + ")");
  }
  check_service_token("ClientOptions::service_token", o.service_token);
  if (o.keepalive_interval.count() < 0) {
    throw ConfigError("ClientOptions::keepalive_interval is negative (" +
                      std::to_string(o.keepalive_interval.count()) + " ms); 0 turns keepalive off");
  }
  if (o.keepalive_interval.count() > 0 && o.keepalive_timeout.count() <= 0) {
    throw ConfigError("ClientOptions::keepalive_timeout is " + std::to_string(o.keepalive_timeout.count()) +
                      " ms; a ping needs at least 1 ms to be answered (keepalive_interval 0 turns "
                      "keepalive off)");
  }
  check_observability_options(o);
  const bool wants_tls = o.tls || o.tls_insecure || !o.tls_root_certs.empty();
  if (!o.socket_path.empty()) {
    if (wants_tls) {
      throw ConfigError("ClientOptions: tls applies to addr only, not to socket_path " +
                        shown(o.socket_path));
    }
    std::string file = socket_file(o.socket_path, "ClientOptions::socket_path");
    std::string target = unix_target(file);
    return {std::move(target), std::move(file), false, true};
  }
  const HostPort address = parse_addr(o.addr, "ClientOptions::addr");
  const bool loopback = is_loopback(address);
  if (o.auth_seed && !wants_tls && !loopback) {
    throw ConfigError("ClientOptions::addr " + shown(o.addr) +
                      " is not a loopback address (localhost, 127.0.0.0/8, ::1); signed calls "
                      "over plaintext TCP are only sent to loopback. Set tls = true (or use "
                      "socket_path)");
  }
  if (!o.tls_root_certs.empty() && !o.tls_insecure) {
    check_root_certificates(o.tls_root_certs, "ClientOptions::tls_root_certs");
  } else if (wants_tls && !o.tls_insecure) {
    check_default_roots_file();
  }
  return {tcp_target(address), {}, wants_tls, loopback};
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
  // Longer than gRPC's int of milliseconds (24.8 days) is the same as that long here.
  const int timeout = static_cast<int>(std::min<long long>(o.keepalive_timeout.count(), INT32_MAX));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, interval);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, timeout);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
}

// Every channel argument the library sets (each is in kOwnedChannelArgs). `target` is what
// check_options(o) returned.
inline void set_library_channel_args(grpc::ChannelArguments& args, const ClientOptions& o,
                                     const CheckedTarget& target) {
  // Events are small but RPC payloads and file progress may not be: lift the 4 MiB default.
  // (What the library sends is checked against ClientOptions::max_message_bytes itself.)
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // Whatever the daemon can send in headers and trailers passes through (kMaxMetadataBytes).
  args.SetInt(GRPC_ARG_MAX_METADATA_SIZE, kMaxMetadataBytes);
  // gRPC sends every call through the proxy named by grpc_proxy, https_proxy or http_proxy
  // (no_grpc_proxy / no_proxy name the exceptions), loopback included. A daemon on this
  // machine is never reached through a proxy, and neither is any daemon in plaintext: the
  // proxy would see every call, a signed one included, and could replay it. Only TLS to a
  // remote host may go through one (a CONNECT tunnel carries TLS end to end, and on a host
  // that reaches the outside only through a proxy it is the one way out).
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, target.tls && !target.loopback ? 1 : 0);
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
// `target` is what check_options(o) returned.
inline std::shared_ptr<grpc::Channel> make_channel(const ClientOptions& o, const CheckedTarget& target,
                                                   std::shared_ptr<const Signer> signer,
                                                   std::shared_ptr<ConnectivityMonitor> connectivity = nullptr) {
  auto creds = transport_credentials(o, signer != nullptr);
  if (signer) {
    creds = grpc::CompositeChannelCredentials(creds, signing_call_credentials(std::move(signer)));
  }
  grpc::ChannelArguments args = o.channel_args;  // none of them owned (check_options)
  set_library_channel_args(args, o, target);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  for (const auto& factory : o.interceptors) {
    interceptors.push_back(std::make_unique<SharedInterceptorFactory>(factory));
  }
  if (connectivity) {
    interceptors.push_back(std::make_unique<ConnectivityInterceptorFactory>(std::move(connectivity)));
  }
  if (interceptors.empty()) return grpc::CreateCustomChannel(target.target, creds, args);
  return grpc::experimental::CreateCustomChannelWithInterceptors(target.target, creds, args, std::move(interceptors));
}

}  // namespace ensemble::detail
