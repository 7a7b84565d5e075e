/// @file
/// The node event stream (Subscribe): everything that happens on the node itself, as
/// DaemonEvent{type, payload} values, and DaemonChatMessage, the decoder for the chats the
/// OPERATOR identity sends and receives (Client::connect / Client::send).
///
/// This is not the per-service stream: a registered Service gets its own chats through
/// on_chat(). Replies to what Client::send sent arrive here, as "chat_message" events.
///
///   auto sub = client.events([](const ensemble::DaemonEvent& ev) {
///     if (auto msg = ensemble::DaemonChatMessage::from_event(ev); msg && msg->incoming()) {
///       std::cout << msg->from_addr << ": " << msg->text << "\n";
///     }
///   });
///   ...
///   sub->cancel();            // or just drop `sub`
///   grpc::Status end = sub->wait();   // CANCELLED after cancel()
///
/// Payloads are JSON made by the daemon's Go encoding/json, so keys are Go field names
/// (daemon-protocol.md section 6). The node echoes its own sends as chat_message events with
/// Direction "outgoing"; keep only incoming() ones to see replies.
#pragma once

#include <ensemble/client_options.hpp>
#include <ensemble/detail/bounded_json.hpp>
#include <ensemble/detail/node_event_json.hpp>
#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/connection.hpp>
#include <ensemble/detail/read_stream.hpp>
#include <ensemble/events.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace ensemble {

/// Wire names of DaemonEvent.type. A daemon may also send types not listed here (an
/// internal type without a name arrives as "unknown_<n>").
namespace node_event_type {
/// Tor start-up progress: TorBootstrap.
inline constexpr std::string_view tor_bootstrap = "tor_bootstrap";
inline constexpr std::string_view tor_ready = "tor_ready";  ///< Tor is up: TorReady
/// A peer found through discovery.
inline constexpr std::string_view peer_discovered = "peer_discovered";
/// A peer dials the operator; answer with Client::accept_connection / reject_connection.
inline constexpr std::string_view connection_request = "connection_request";
/// A peer connection's progress: DaemonConnectionState.
inline constexpr std::string_view connection_state = "connection_state";
/// A chat to or from the operator: DaemonChatMessage.
inline constexpr std::string_view chat_message = "chat_message";
/// A peer offers the operator a file: DaemonFileOffer.
inline constexpr std::string_view file_offer = "file_offer";
inline constexpr std::string_view file_progress = "file_progress";  ///< progress of a file transfer
inline constexpr std::string_view peer_online = "peer_online";  ///< a peer came online
inline constexpr std::string_view error = "error";  ///< an error the daemon reports
}  // namespace node_event_type

/// One node event. payload is the parsed JSON. A payload that cannot be taken as JSON is kept
/// as a JSON string holding the raw text, and problem says why: it is not JSON at all, or it
/// is nested deeper than 64 levels (a depth no daemon payload has; values nested that deep
/// would make every later copy, comparison or dump() of the event recurse deeply enough to
/// overflow a thread's stack). So nothing is lost and nothing throws. raw_payload is the text
/// exactly as the daemon sent it. (Raw text may be invalid UTF-8, which payload.dump()
/// refuses unless given an error handler.) A plain value: copy it and keep it beyond the
/// handler as you like.
struct DaemonEvent {
  std::string type{};  ///< the event type: one of node_event_type, or a newer one
  nlohmann::json payload{};  ///< the parsed JSON (see above for text that is not JSON)
  std::string raw_payload{};  ///< the payload text exactly as sent
  std::string problem{};  ///< empty: payload is the parsed JSON

  /// Builds the event as the stream delivers it. Never throws on bad JSON.
  static DaemonEvent from_wire(std::string type, std::string raw) {
    DaemonEvent ev;
    ev.type = std::move(type);
    std::string why;
    if (auto parsed = detail::parse_bounded_json(raw, why)) {
      ev.payload = std::move(*parsed);
    } else {
      ev.payload = raw;
      ev.problem = "payload " + why + "; kept as raw text";
    }
    ev.raw_payload = std::move(raw);
    return ev;
  }
};


/// A chat sent or received by the node's operator identity, decoded from a chat_message
/// event. Direction is "incoming" (a peer wrote to the operator) or "outgoing" (the node's
/// echo of its own Client::send).
struct DaemonChatMessage {
  std::string id{};  ///< the daemon's message id
  std::string from_addr{};  ///< the sender's address
  std::string to_addr{};  ///< the recipient's address
  std::string text{};  ///< the chat's text
  Timestamp sent_at{};               ///< the Unix epoch when the payload carries no time
  std::optional<Timestamp> acked_at{};  ///< set once the peer acknowledged it
  std::string direction{};  ///< "incoming" or "outgoing"

  /// True when a peer wrote to the operator (direction "incoming").
  bool incoming() const noexcept { return direction == "incoming"; }

  /// The chat in `event`, or nullopt when the event is another type, its payload is not a
  /// JSON object, or it lacks a sender or text (both must be non-empty strings). Reads the
  /// daemon's Go keys (ID, From, To, Text, SentAt, AckedAt, Direction) and the snake_case
  /// forms other daemons and doubles emit (id, from_addr/from, to_addr/to, text, ts or
  /// sent_at, acked_at, direction); times may be RFC 3339 text or Unix milliseconds. Never
  /// throws.
  static std::optional<DaemonChatMessage> from_event(const DaemonEvent& event) noexcept {
    try {
      if (event.type != node_event_type::chat_message || !event.payload.is_object()) return std::nullopt;
      const nlohmann::json& p = event.payload;
      DaemonChatMessage m;
      m.from_addr = detail::string_at(p, {"From", "from_addr", "from"});
      m.text = detail::string_at(p, {"Text", "text"});
      if (m.from_addr.empty() || m.text.empty()) return std::nullopt;
      m.id = detail::string_at(p, {"ID", "id"});
      m.to_addr = detail::string_at(p, {"To", "to_addr", "to"});
      m.direction = detail::string_at(p, {"Direction", "direction"});
      if (const auto* t = detail::find_key(p, {"SentAt", "sent_at", "ts"})) {
        if (auto parsed = detail::json_time(*t)) m.sent_at = *parsed;
      }
      if (const auto* t = detail::find_key(p, {"AckedAt", "acked_at"})) m.acked_at = detail::json_time(*t);
      return m;
    } catch (...) {
      return std::nullopt;  // allocation failure; a decoder must not throw
    }
  }
};

/// A file a peer offers to the operator, decoded from a file_offer event. Answer it with
/// Client::accept_file(transfer_id, save_dir) or Client::reject_file(transfer_id).
struct DaemonFileOffer {
  std::string transfer_id{};  ///< what Client::accept_file / reject_file take
  std::string from_addr{};  ///< the offering peer's address
  std::string filename{};  ///< the file's name as the peer gives it
  std::uint64_t size = 0;  ///< the file's size in bytes, as the peer states it

  /// The offer in `event`, or nullopt when the event is another type, the payload is not a
  /// JSON object, or it has no transfer id. Reads Go keys (TransferID, From / FromAddr,
  /// Filename, Size) and snake_case (transfer_id, from_addr / from, filename, size). Never
  /// throws.
  static std::optional<DaemonFileOffer> from_event(const DaemonEvent& event) noexcept {
    try {
      if (event.type != node_event_type::file_offer || !event.payload.is_object()) return std::nullopt;
      const nlohmann::json& p = event.payload;
      DaemonFileOffer offer;
      offer.transfer_id = detail::string_at(p, {"TransferID", "transfer_id"});
      if (offer.transfer_id.empty()) return std::nullopt;
      offer.from_addr = detail::string_at(p, {"From", "FromAddr", "from_addr", "from"});
      offer.filename = detail::string_at(p, {"Filename", "filename"});
      if (const auto* size = detail::find_key(p, {"Size", "size"}); size && size->is_number_unsigned()) {
        offer.size = size->get<std::uint64_t>();
      }
      return offer;
    } catch (...) {
      return std::nullopt;
    }
  }
};

class EventSubscription;

namespace detail {
// Starts a subscription on `conn`. Client::events() is the public way in.
inline std::shared_ptr<EventSubscription> open_events(std::shared_ptr<Connection> conn,
                                                      std::function<void(const DaemonEvent&)> on_event,
                                                      std::function<void(const grpc::Status&)> on_end,
                                                      const CallOptions& options);
}  // namespace detail

/// A live Subscribe call. Get one from Client::events().
///
/// Threading: on_event runs on a gRPC thread, one event at a time, in the order received;
/// the next event is not read until it returns. The daemon's per-subscriber queue drops
/// the NEWEST events when it is full, so keep on_event short and hand slow work to a
/// thread of your own. An exception escaping on_event is printed to stderr and the stream
/// goes on. on_end runs once, on a gRPC thread, with the final status, before wait()
/// returns. cancel(), wait(), wait_for() and done() may be called from any thread; wait()
/// and wait_for() throw Error from inside this stream's own callbacks.
///
/// When it is in place: the daemon delivers the events that happen after it has set the
/// subscription up, and it says nothing until then. It sends its response headers together
/// with the first event, so nothing tells a client that a subscription without events is
/// live (events_received() > 0 is the only proof). Subscribe before you do what causes the
/// events you want (a dial causes connection_state events, a send causes replies), and where
/// the very first one matters, wait for an event you caused yourself: examples/
/// operator_chat.cpp waits for its own dial's connection_state before it sends.
///
/// Lifetime: when the last shared_ptr copy goes, the subscription is cancelled and, unless
/// that happens on a gRPC callback thread, the release waits until on_end has run; after
/// it (or wait()) returns no callback of this subscription runs again, and both callbacks
/// have been destroyed. Discarding the handle events() returns ends the call at once. Do
/// not capture the shared_ptr in its own callbacks (a cycle: it would only end with its
/// Client). Destroying the Client cancels every subscription and waits for them; handles
/// you still hold stay valid and report the end status.
class EventSubscription final : private detail::ReadStream<api::DaemonEvent> {
  using Base = detail::ReadStream<api::DaemonEvent>;

 public:
  /// What the event callback is: called with each event, in order.
  using EventHandler = std::function<void(const DaemonEvent&)>;
  /// What the end callback is: called once with the final status.
  using EndHandler = std::function<void(const grpc::Status&)>;

  /// Ends the subscription; its status becomes CANCELLED (unless it had already ended).
  using Base::cancel;
  /// The final status: CANCELLED after cancel(), DEADLINE_EXCEEDED after the CallOptions
  /// timeout, UNAVAILABLE when the daemon went away, UNAUTHENTICATED / PERMISSION_DENIED for
  /// auth. Blocks until the end.
  using Base::wait;
  using Base::wait_for;
  using Base::done;

  /// Events handed to on_event so far.
  std::uint64_t events_received() const noexcept { return received_.load(std::memory_order_relaxed); }

 private:
  friend std::shared_ptr<EventSubscription> detail::open_events(std::shared_ptr<detail::Connection>,
                                                                 EventHandler, EndHandler,
                                                                 const CallOptions&);

  EventSubscription(std::shared_ptr<detail::Connection> conn, EventHandler on_event, EndHandler on_end)
      : Base(std::move(conn), "Subscribe", api::SubscribeRequest{}), on_event_(std::move(on_event)), on_end_(std::move(on_end)) {}

  void on_message(api::DaemonEvent& message) override {
    received_.fetch_add(1, std::memory_order_relaxed);
    if (!on_event_) return;
    const DaemonEvent event =
        DaemonEvent::from_wire(std::move(*message.mutable_type()), std::move(*message.mutable_payload()));
    detail::call_user_callback({.call = "Subscribe"}, "a node event", "handler", on_event_, event);
  }

  void on_end(const grpc::Status& status) override {
    if (on_end_) detail::call_user_callback({.call = "Subscribe"}, "a node event", "on_end handler", on_end_, status);
  }

  void drop_callbacks() noexcept override {
    EventHandler on_event = std::move(on_event_);
    EndHandler on_end = std::move(on_end_);
  }

  // Installed before the call starts and dropped in OnDone, after the last reaction, so
  // reactions read them unlocked.
  EventHandler on_event_;
  EndHandler on_end_;
  api::SubscribeRequest request_;
  std::atomic<std::uint64_t> received_{0};
};


}  // namespace ensemble
