/// @file
/// ensemble::testing::DaemonDouble — an Ensemble daemon in your process, for tests and demos.
///
/// A grpc++ server on the callback API that keeps the real daemon's contract
/// (daemon-protocol.md): admin-key auth on every call (section 4) and the supervised-service
/// token, RegisterService exactly as section 5/5a says (first message the manifest, the same
/// checks, texts and codes, `registered` first, recoverable ServiceErrors, a 256-deep queue
/// per stream that drops the oldest event, request ids `<from_addr>-<n>`, pending requests
/// rejected with "service stream closed", unregister on stream end, a stable address per
/// name), the section 3 extensions (rpc transport, send_bytes → rpc_message,
/// introduce_peers → peer_introduction with a daemon-attested from_service_addr, ConnectAs,
/// inbound max_payload_bytes / rate limits), the node API with Go-style JSON events
/// (section 6), real addresses from real Ed25519 keys (section 7), tor_state "ready".
///
///     ensemble::testing::DaemonDouble daemon({.unix_socket = "/tmp/t/ensemble.sock"});
///     auto channel = grpc::CreateChannel(daemon.unix_target(), ...);
///     ... register a service "echo" with the library ...
///     daemon.wait_registered("echo", 2s);
///     daemon.inject_chat("echo", some_peer, "hi");
///     daemon.wait_for_actions("echo", 1, 2s);        // the bot's reply
///     auto sent = daemon.actions("echo");              // ServiceClientMessage{send_message}
///
/// WHO REACHES WHOM (the admission rules; section 5 items 9-10)
///
/// Identities. Every daemon hosts its node (operator) identity and one identity per
/// registered service. send_message / send_bytes / introduce_peers on a service stream and
/// ConnectAs travel as that service's address; Connect, SendMessage and SendFile travel as
/// the node's address. The receiver's gate sees only that sender address.
///
/// Where an envelope goes. To an identity hosted by this double: delivered here. To one
/// hosted by a double sharing loopback_dir: handed to it. To a service address whose key a
/// daemon holds while the service is not registered: refused, "peer <addr> is not
/// registered" (or "peer unreachable: ..." when that daemon is down but kept its keys in a
/// data dir). To any other valid address: a synthetic peer that accepts everything
/// (peer_inbox() shows what it got) unless marked with set_peer_unreachable(). An invalid
/// address is refused before anything is sent.
///
/// A registered service's gate, applied to every inbound envelope (dial, chat, bytes,
/// introduction) before anything reaches the stream:
///   ACL_PUBLIC     everyone passes.
///   ACL_ALLOWLIST  only manifest.allowlist addresses pass; others are refused with
///                  "not on allowlist".
///   ACL_CONTACTS   only addresses in this daemon's contact store (AddContact) pass; others
///                  are refused with "not in contacts" (the daemon has no per-service
///                  contact store, so its contacts are the ones that count).
/// Then, for chat / bytes / introductions, the manifest's inbound caps: a payload over
/// max_payload_bytes (0 = DaemonDoubleOptions::default_max_payload_bytes, 1 MiB) or a sender
/// over rate_limit_per_minute (token bucket per sender, capacity rate_limit_burst, or the
/// per-minute rate when burst is 0) is refused, and the RECEIVING service gets a ServiceError
/// with code "payload_too_large" (limit_bytes) or "rate_limited" (retry_after_ms), from_addr
/// set. Bytes reach only services registered with transport rpc; services take no files.
/// A dial that passes the gate becomes a connection_request event (request id
/// `<from_addr>-<n>`, n from 1 per stream) and waits for the service's accept / reject (or
/// request_timeout when a test sets one, or the stream's end: "service stream closed").
///
/// Connections. As on the daemon, chat leaves only over an established connection: a chat to
/// a peer this double does not host, with none, is refused "peer <addr> not connected"
/// (stream: ServiceError "send_message: peer <addr> not connected"; SendMessage: INTERNAL
/// "sending message: peer <addr> not connected"). A connection between a hosted identity and
/// a peer is established, both ways, by a dial either way that the other side accepted
/// (Connect, ConnectAs, connection requests), and by anything the peer delivered to that
/// identity (inject_chat and friends included). Identities hosted by one double reach each
/// other without one. Bytes and introductions need none. Connect first, as real bots must. A refusal reaches the sender as the reason in
/// its error ("send_message: not on allowlist", Connect {accepted:false, message:reason}).
///
/// The node's gate: chat from anyone appears on Subscribe as chat_message (Direction
/// "incoming"); a dial from a contact is accepted at once; from anyone else it raises a
/// connection_request node event (payload: the address as a JSON string) and waits for
/// AcceptConnection / RejectConnection(address). The node takes file offers (file_offer
/// event, then AcceptFile / RejectFile), not bytes or introductions.
///
/// Build cost: this header declares the double; its implementation is compiled once into
/// the companion library `ensemble-client-testing` (Meson dependency name and pkg-config
/// module), so a test file that includes it pays for little more than the client library.
///
/// Threading: every member function may be called from any thread. Blocking hooks all take
/// a timeout. Destruction (or stop()) ends open streams with UNAVAILABLE "daemon shutting
/// down", answers every pending decision, and waits for gRPC to finish every call.
#pragma once

#include <ensemble/proto/ensemble.pb.h>
#include <ensemble/testing/options.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ensemble::testing {

/// What a synthetic peer received (peer_inbox), in arrival order.
struct PeerMessage {
  std::string kind;  ///< "chat", "bytes", "dial", "introduction", "file"
  std::string from_addr;  ///< who sent it: a service's or the node's address
  std::string text;     ///< chat text, or the file name for "file"
  std::string payload;  ///< bytes / introduction payload
  std::string peer_addr;   ///< introduction: the peer introduced
  std::string session_id;  ///< introduction
  std::uint64_t size = 0;  ///< file: bytes received
};

/// An Ensemble daemon in your process, for tests and demos (the file's overview has the
/// contract it keeps and an example). Every member may be called from any thread.
class DaemonDouble {
 public:
  /// Starts listening before it returns; throws ensemble::Error when it cannot.
  explicit DaemonDouble(DaemonDoubleOptions options = {});

  DaemonDouble(const DaemonDouble&) = delete;
  DaemonDouble& operator=(const DaemonDouble&) = delete;
  ~DaemonDouble();

  /// Ends every open call, stops listening, leaves the rendezvous directory. Idempotent.
  void stop();

  // ---- where it listens, who it is -------------------------------------------------------

  /// "unix:///abs/path" (bytes a URI would misread percent-encoded, so gRPC dials exactly
  /// that file), or "" without a Unix socket.
  std::string unix_target() const;
  /// The Unix socket's file path, or "" without a Unix socket.
  const std::string& unix_socket_path() const;
  /// "127.0.0.1:PORT" (the bound port when 0 was asked), or "" without TCP.
  std::string tcp_target() const;
  /// The bound TCP port (the free one it picked when 0 was asked), or 0 without TCP.
  int tcp_port() const;
  /// The node (operator) identity.
  const std::string& node_address() const;
  /// The node's onion address (ends in ".onion").
  const std::string& node_onion() const;
  /// The node's Ed25519 public key, from which node_address() is derived.
  const std::array<std::uint8_t, 32>& node_public_key() const;

  /// A supervised-service token bound to `service_name` (section 4): RegisterService with it
  /// in x-service-token needs no signature; a manifest with another name is refused
  /// (PERMISSION_DENIED).
  std::string mint_token(std::string_view service_name);

  // ---- registry --------------------------------------------------------------------------

  /// The address of the service registered as `name` right now, "" when none is.
  std::string service_address(std::string_view name) const;
  /// True once a service is registered as `name`; false if none is within `timeout`.
  bool wait_registered(std::string_view name, std::chrono::milliseconds timeout) const;
  /// True once no service is registered as `name`; false if one still is after `timeout`.
  bool wait_unregistered(std::string_view name, std::chrono::milliseconds timeout) const;

  // ---- inbound traffic from synthetic peers (through the service's gate) --------------
  // Each returns false when `service` is not registered or its gate refused the envelope.

  /// A chat from the synthetic peer `from_addr` to `service` (a chat_message event);
  /// `ts_ms` is its timestamp in Unix milliseconds, 0 for now.
  bool inject_chat(std::string_view service, std::string_view from_addr, std::string_view text,
                   std::int64_t ts_ms = 0);
  /// Bytes from the synthetic peer `from_addr` to an RPC-transport `service` (an rpc_message
  /// event).
  bool inject_bytes(std::string_view service, std::string_view from_addr,
                    std::string_view payload);

  /// Returns the request id the service sees, or "" when the gate refused the dial (see
  /// decision() for what the service answers).
  std::string inject_connection_request(std::string_view service, std::string_view from_addr);

  /// An introduction as if the service at ev.from_service_addr() had sent it.
  bool inject_introduction(std::string_view service, const api::ServicePeerIntroductionEvent& ev);

  /// Any event type with any payload bytes, straight into the event queue (no gate): for
  /// unknown types and undecodable payloads.
  bool inject_event(std::string_view service, std::string_view type,
                    std::string_view payload_bytes);

  /// Benchmark hook: `count` chat events written as fast as the stream takes them, with flow
  /// control instead of the drop queue. Blocks until done, the stream ends or `timeout`;
  /// returns how many were written.
  std::uint64_t push_chat_burst(std::string_view service, std::string_view from_addr,
                                std::size_t count, std::string_view text,
                                std::chrono::milliseconds timeout = std::chrono::minutes(5));

  /// A chat from a synthetic peer to the node (a chat_message event on Subscribe).
  bool inject_node_chat(std::string_view from_addr, std::string_view text);

  /// Any node event (type, JSON payload text) to every current Subscribe caller, e.g.
  /// "peer_online" or "tor_ready", or a marker of the test's own. Subscribe sends nothing,
  /// not even its headers, before its first event, so publishing a marker until a
  /// subscription has received one is how a test knows the subscription is in place.
  void publish_node_event(std::string_view type, std::string_view payload_json);

  /// A dial from a synthetic peer to the node: a connection_request node event, answered by
  /// AcceptConnection / RejectConnection. The outcome lands in decision(from_addr).
  void inject_node_connection_request(std::string_view from_addr);

  // ---- what services did --------------------------------------------------------------

  /// Every message `service` sent after its manifest, in arrival order (kept across
  /// reconnects under the same name; empty when record_traffic is off).
  std::vector<api::ServiceClientMessage> actions(std::string_view service) const;
  /// How many messages `service` sent after its manifest (counted even when record_traffic is
  /// off).
  std::uint64_t action_count(std::string_view service) const;
  /// True once action_count(service) reaches `count`; false if it has not within `timeout`.
  bool wait_for_actions(std::string_view service, std::size_t count,
                        std::chrono::milliseconds timeout) const;
  /// Called for every action as it arrives, on a gRPC thread, before it is handled; must not
  /// block. Replaces any previous observer; pass {} to remove.
  void set_action_observer(
      std::function<void(std::string_view service, const api::ServiceClientMessage&)> observer);

  /// Events the service's queue dropped because it was full (all its streams so far).
  std::uint64_t dropped_events(std::string_view service) const;
  /// Node events (Subscribe) dropped because a subscriber's queue was full; the node stream
  /// drops the newest (section 6).
  std::uint64_t dropped_node_events() const;

  /// What became of a connection request: "accepted", "rejected: <reason>" (the service's
  /// reason, "service stream closed", "connection request timed out"); nullopt while
  /// pending or unknown.
  std::optional<std::string> decision(std::string_view request_id) const;
  /// decision(request_id) once there is one; nullopt if it is still pending after `timeout`.
  std::optional<std::string> wait_decision(std::string_view request_id,
                                           std::chrono::milliseconds timeout) const;

  // ---- synthetic peers ----------------------------------------------------------------

  /// What the synthetic peer at `address` received, in arrival order.
  std::vector<PeerMessage> peer_inbox(std::string_view address) const;
  /// How many messages the synthetic peer at `address` received.
  std::uint64_t peer_inbox_count(std::string_view address) const;
  /// True once peer_inbox_count(address) reaches `count`; false if it has not within `timeout`.
  bool wait_peer_inbox(std::string_view address, std::size_t count,
                       std::chrono::milliseconds timeout) const;
  /// An unreachable synthetic peer refuses everything with "peer <addr> is unreachable".
  void set_peer_unreachable(std::string_view address, bool unreachable = true);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ensemble::testing
