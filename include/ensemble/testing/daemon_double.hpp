// ensemble::testing::DaemonDouble — an Ensemble daemon in your process, for tests and demos.
//
// A grpc++ server on the callback API that keeps the real daemon's contract
// (daemon-protocol.md): admin-key auth on every call (section 4) and the supervised-service
// token, RegisterService exactly as section 5/5a says (first message the manifest, the same
// checks, texts and codes, `registered` first, recoverable ServiceErrors, a 256-deep queue
// per stream that drops the oldest event, request ids `<from_addr>-<n>`, pending requests
// rejected with "service stream closed", unregister on stream end, a stable address per
// name), the section 3 extensions (rpc transport, send_bytes → rpc_message,
// introduce_peers → peer_introduction with a daemon-attested from_service_addr, ConnectAs,
// inbound max_payload_bytes / rate limits), the node API with Go-style JSON events
// (section 6), real addresses from real Ed25519 keys (section 7), tor_state "ready".
//
//     ensemble::testing::DaemonDouble daemon({.unix_socket = "/tmp/t/ensemble.sock"});
//     auto channel = grpc::CreateChannel(daemon.unix_target(), ...);
//     ... register a service "echo" with the library ...
//     daemon.wait_registered("echo", 2s);
//     daemon.inject_chat("echo", some_peer, "hi");
//     daemon.wait_for_actions("echo", 1, 2s);        // the bot's reply
//     auto sent = daemon.actions("echo");              // ServiceClientMessage{send_message}
//
// WHO REACHES WHOM (the admission rules; section 5 items 9-10)
//
// Identities. Every daemon hosts its node (operator) identity and one identity per
// registered service. send_message / send_bytes / introduce_peers on a service stream and
// ConnectAs travel as that service's address; Connect, SendMessage and SendFile travel as
// the node's address. The receiver's gate sees only that sender address.
//
// Where an envelope goes. To an identity hosted by this double: delivered here. To one
// hosted by a double sharing loopback_dir: handed to it. To a service address whose key a
// daemon holds while the service is not registered: refused, "peer <addr> is not
// registered" (or "peer unreachable: ..." when that daemon is down but kept its keys in a
// data dir). To any other valid address: a synthetic peer that accepts everything
// (peer_inbox() shows what it got) unless marked with set_peer_unreachable(). An invalid
// address is refused before anything is sent.
//
// A registered service's gate, applied to every inbound envelope (dial, chat, bytes,
// introduction) before anything reaches the stream:
//   ACL_PUBLIC     everyone passes.
//   ACL_ALLOWLIST  only manifest.allowlist addresses pass; others are refused with
//                  "not on allowlist".
//   ACL_CONTACTS   only addresses in this daemon's contact store (AddContact) pass; others
//                  are refused with "not in contacts" (the daemon has no per-service
//                  contact store, so its contacts are the ones that count).
// Then, for chat / bytes / introductions, the manifest's inbound caps: a payload over
// max_payload_bytes (0 = DaemonDoubleOptions::default_max_payload_bytes, 1 MiB) or a sender
// over rate_limit_per_minute (token bucket per sender, capacity rate_limit_burst, or the
// per-minute rate when burst is 0) is refused, and the RECEIVING service gets a ServiceError
// with code "payload_too_large" (limit_bytes) or "rate_limited" (retry_after_ms), from_addr
// set. Bytes reach only services registered with transport rpc; services take no files.
// A dial that passes the gate becomes a connection_request event (request id
// `<from_addr>-<n>`, n from 1 per stream) and waits for the service's accept / reject (or
// request_timeout, or the stream's end: "service stream closed"). Chat needs no prior dial:
// each message passes the gate on its own. A refusal reaches the sender as the reason in
// its error ("send_message: not on allowlist", Connect {accepted:false, message:reason}).
//
// The node's gate: chat from anyone appears on Subscribe as chat_message (Direction
// "incoming"); a dial from a contact is accepted at once; from anyone else it raises a
// connection_request node event (payload: the address as a JSON string) and waits for
// AcceptConnection / RejectConnection(address). The node takes file offers (file_offer
// event, then AcceptFile / RejectFile), not bytes or introductions.
//
// Threading: every member function may be called from any thread. Blocking hooks all take
// a timeout. Destruction (or stop()) ends open streams with UNAVAILABLE "daemon shutting
// down", answers every pending decision, and waits for gRPC to finish every call.
#pragma once

#include <ensemble/proto/ensemble.grpc.pb.h>
#include <ensemble/testing/detail/api_service.hpp>
#include <ensemble/testing/detail/core.hpp>
#include <ensemble/testing/detail/files.hpp>
#include <ensemble/testing/detail/rendezvous.hpp>
#include <ensemble/testing/options.hpp>

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ensemble::testing {

class DaemonDouble {
 public:
  // Starts listening before it returns; throws ensemble::Error when it cannot.
  explicit DaemonDouble(DaemonDoubleOptions options = {}) {
    if (options.unix_socket.empty() && options.tcp_address.empty()) {
      options.tcp_address = "127.0.0.1:0";
    }
    core_ = std::make_unique<detail::Core>(options);
    files_ = std::make_unique<detail::FileTransfers>(core_.get());
    api_ = std::make_unique<detail::ApiService>(core_.get(), files_.get());
    core_->start_rendezvous();

    grpc::ServerBuilder builder;
    if (!options.unix_socket.empty()) {
      unix_path_ = std::filesystem::absolute(options.unix_socket).string();
      if (detail::unix_socket_alive(unix_path_)) {
        throw Error("something already listens on " + unix_path_);
      }
      std::error_code ec;
      std::filesystem::remove(unix_path_, ec);
      builder.AddListeningPort("unix:" + unix_path_, grpc::InsecureServerCredentials());
    }
    if (!options.tcp_address.empty()) {
      const auto colon = options.tcp_address.rfind(':');
      tcp_host_ = colon == std::string::npos ? "127.0.0.1" : options.tcp_address.substr(0, colon);
      if (tcp_host_.empty() || tcp_host_ == "0.0.0.0") tcp_host_ = "127.0.0.1";
      if (tcp_host_ == "[::]") tcp_host_ = "[::1]";
      builder.AddListeningPort(options.tcp_address, grpc::InsecureServerCredentials(), &tcp_port_);
    }
    builder.RegisterService(api_.get());
    builder.SetMaxReceiveMessageSize(64 << 20);
    server_ = builder.BuildAndStart();
    if (!server_ || (!options.tcp_address.empty() && tcp_port_ == 0)) {
      server_.reset();
      core_->begin_stop();
      core_->stop_peers();
      throw Error("daemon double could not listen on " +
                  (options.unix_socket.empty() ? options.tcp_address
                                               : options.unix_socket + " / " + options.tcp_address));
    }
  }

  DaemonDouble(const DaemonDouble&) = delete;
  DaemonDouble& operator=(const DaemonDouble&) = delete;
  ~DaemonDouble() { stop(); }

  // Ends every open call, stops listening, leaves the rendezvous directory. Idempotent.
  void stop() {
    std::lock_guard lock(stop_mu_);
    if (!server_) return;
    core_->begin_stop();
    files_->stop();
    // Every call has been told to finish; the grace period only covers clients that do not
    // let a call complete (one that never reads, or a synchronous client whose thread is
    // elsewhere), which are then cancelled.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    server_.reset();
    core_->stop_peers();
    if (!unix_path_.empty()) {
      std::error_code ec;
      std::filesystem::remove(unix_path_, ec);
    }
  }

  // ---- where it listens, who it is -------------------------------------------------------

  // "unix:///abs/path", or "" without a Unix socket.
  std::string unix_target() const { return unix_path_.empty() ? "" : "unix://" + unix_path_; }
  const std::string& unix_socket_path() const { return unix_path_; }
  // "127.0.0.1:PORT" (the bound port when 0 was asked), or "" without TCP.
  std::string tcp_target() const {
    return tcp_port_ == 0 ? "" : tcp_host_ + ":" + std::to_string(tcp_port_);
  }
  int tcp_port() const { return tcp_port_; }
  // The node (operator) identity.
  const std::string& node_address() const { return core_->node().address; }
  const std::string& node_onion() const { return core_->node().onion; }
  const std::array<std::uint8_t, 32>& node_public_key() const { return core_->node().public_key; }

  // A supervised-service token bound to `service_name` (section 4): RegisterService with it
  // in x-service-token needs no signature; a manifest with another name is refused
  // (PERMISSION_DENIED).
  std::string mint_token(std::string_view service_name) { return core_->mint_token(service_name); }

  // ---- registry --------------------------------------------------------------------------

  // The address of the service registered as `name` right now, "" when none is.
  std::string service_address(std::string_view name) const {
    auto s = core_->service(name);
    return s ? s->address() : std::string();
  }
  bool wait_registered(std::string_view name, std::chrono::milliseconds timeout) const {
    return core_->wait_service(name, true, timeout);
  }
  bool wait_unregistered(std::string_view name, std::chrono::milliseconds timeout) const {
    return core_->wait_service(name, false, timeout);
  }

  // ---- inbound traffic from synthetic peers (through the service's gate) --------------
  // Each returns false when `service` is not registered or its gate refused the envelope.

  bool inject_chat(std::string_view service, std::string_view from_addr, std::string_view text,
                   std::int64_t ts_ms = 0) {
    detail::Envelope env = envelope(detail::lb::ENVELOPE_CHAT, from_addr);
    env.set_text(std::string(text));
    env.set_ts_ms(ts_ms);
    return deliver(service, std::move(env));
  }

  bool inject_bytes(std::string_view service, std::string_view from_addr,
                    std::string_view payload) {
    detail::Envelope env = envelope(detail::lb::ENVELOPE_BYTES, from_addr);
    env.set_payload(std::string(payload));
    return deliver(service, std::move(env));
  }

  // Returns the request id the service sees, or "" when the gate refused the dial (see
  // decision() for what the service answers).
  std::string inject_connection_request(std::string_view service, std::string_view from_addr) {
    auto s = core_->service(service);
    if (!s) return {};
    detail::Envelope env = envelope(detail::lb::ENVELOPE_DIAL, from_addr);
    env.set_to_addr(s->address());
    return s->deliver(env, [](detail::Outcome) {});
  }

  // An introduction as if the service at ev.from_service_addr() had sent it.
  bool inject_introduction(std::string_view service, const api::ServicePeerIntroductionEvent& ev) {
    detail::Envelope env = envelope(detail::lb::ENVELOPE_INTRODUCTION, ev.from_service_addr());
    env.set_peer_addr(ev.peer_addr());
    env.set_session_id(ev.session_id());
    env.set_expires_at_ms(ev.expires_at_ms());
    env.set_role_hint(ev.role_hint());
    env.set_payload(ev.payload());
    return deliver(service, std::move(env));
  }

  // Any event type with any payload bytes, straight into the event queue (no gate): for
  // unknown types and undecodable payloads.
  bool inject_event(std::string_view service, std::string_view type,
                    std::string_view payload_bytes) {
    auto s = core_->service(service);
    if (!s) return false;
    api::ServiceServerMessage msg;
    msg.mutable_event()->set_type(std::string(type));
    msg.mutable_event()->set_payload(std::string(payload_bytes));
    return s->inject_raw(std::move(msg));
  }

  // Benchmark hook: `count` chat events written as fast as the stream takes them, with flow
  // control instead of the drop queue. Blocks until done, the stream ends or `timeout`;
  // returns how many were written.
  std::uint64_t push_chat_burst(std::string_view service, std::string_view from_addr,
                                std::size_t count, std::string_view text,
                                std::chrono::milliseconds timeout = std::chrono::minutes(5)) {
    auto s = core_->service(service);
    if (!s) return 0;
    return s->burst(std::string(from_addr), count, std::string(text), timeout);
  }

  // A chat from a synthetic peer to the node (a chat_message event on Subscribe).
  bool inject_node_chat(std::string_view from_addr, std::string_view text) {
    detail::Envelope env = envelope(detail::lb::ENVELOPE_CHAT, from_addr);
    env.set_to_addr(node_address());
    env.set_text(std::string(text));
    bool ok = false;
    core_->deliver_inbound(env, [&ok](detail::Outcome o) { ok = o.ok; });
    return ok;
  }

  // A dial from a synthetic peer to the node: a connection_request node event, answered by
  // AcceptConnection / RejectConnection. The outcome lands in decision(from_addr).
  void inject_node_connection_request(std::string_view from_addr) {
    detail::Envelope env = envelope(detail::lb::ENVELOPE_DIAL, from_addr);
    env.set_to_addr(node_address());
    core_->deliver_inbound(env, [core = core_.get(), from = std::string(from_addr)](detail::Outcome o) {
      core->on_decision("node", from, o.ok ? "accepted" : "rejected: " + o.reason);
    });
  }

  // ---- what services did --------------------------------------------------------------

  // Every message `service` sent after its manifest, in arrival order (kept across
  // reconnects under the same name; empty when record_traffic is off).
  std::vector<api::ServiceClientMessage> actions(std::string_view service) const {
    return core_->actions(service);
  }
  std::uint64_t action_count(std::string_view service) const {
    return core_->action_count(service);
  }
  bool wait_for_actions(std::string_view service, std::size_t count,
                        std::chrono::milliseconds timeout) const {
    return core_->wait_for_actions(service, count, timeout);
  }
  // Called for every action as it arrives, on a gRPC thread, before it is handled; must not
  // block. Replaces any previous observer; pass {} to remove.
  void set_action_observer(
      std::function<void(std::string_view service, const api::ServiceClientMessage&)> observer) {
    core_->set_action_observer(std::move(observer));
  }

  // Events the service's queue dropped because it was full (all its streams so far).
  std::uint64_t dropped_events(std::string_view service) const {
    return core_->dropped_events(service);
  }
  // Node events (Subscribe) dropped because a subscriber's queue was full; the node stream
  // drops the newest (section 6).
  std::uint64_t dropped_node_events() const { return core_->dropped_node_events(); }

  // What became of a connection request: "accepted", "rejected: <reason>" (the service's
  // reason, "service stream closed", "connection request timed out"); nullopt while
  // pending or unknown.
  std::optional<std::string> decision(std::string_view request_id) const {
    return core_->decision(request_id);
  }
  std::optional<std::string> wait_decision(std::string_view request_id,
                                           std::chrono::milliseconds timeout) const {
    return core_->wait_decision(request_id, timeout);
  }

  // ---- synthetic peers ----------------------------------------------------------------

  std::vector<PeerMessage> peer_inbox(std::string_view address) const {
    return core_->peer_inbox(address);
  }
  std::uint64_t peer_inbox_count(std::string_view address) const {
    return core_->peer_inbox_count(address);
  }
  bool wait_peer_inbox(std::string_view address, std::size_t count,
                       std::chrono::milliseconds timeout) const {
    return core_->wait_peer_inbox(address, count, timeout);
  }
  // An unreachable synthetic peer refuses everything with "peer <addr> is unreachable".
  void set_peer_unreachable(std::string_view address, bool unreachable = true) {
    core_->set_unreachable(std::string(address), unreachable);
  }

 private:
  static detail::Envelope envelope(detail::lb::EnvelopeKind kind, std::string_view from) {
    detail::Envelope env;
    env.set_kind(kind);
    env.set_from_addr(std::string(from));
    return env;
  }

  bool deliver(std::string_view service, detail::Envelope env) {
    auto s = core_->service(service);
    if (!s) return false;
    env.set_to_addr(s->address());
    bool ok = false;
    s->deliver(env, [&ok](detail::Outcome o) { ok = o.ok; });  // synchronous for these kinds
    return ok;
  }

  std::unique_ptr<detail::Core> core_;
  std::unique_ptr<detail::FileTransfers> files_;
  std::unique_ptr<detail::ApiService> api_;
  std::unique_ptr<grpc::Server> server_;
  std::mutex stop_mu_;
  std::string unix_path_;
  std::string tcp_host_;
  int tcp_port_ = 0;
};

}  // namespace ensemble::testing
