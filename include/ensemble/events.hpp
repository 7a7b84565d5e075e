/// @file
/// The events a registered service receives, as plain C++ values. Decoding them from the
/// daemon's messages (detail/event_decoding.hpp) never throws: a type this version does not
/// know, or a payload that does not parse, becomes an UnknownEvent that says which, so a
/// newer daemon can never crash an older bot.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace ensemble {

/// Daemon timestamps are Unix milliseconds.
using Timestamp = std::chrono::sys_time<std::chrono::milliseconds>;

/// The Timestamp of `ms` milliseconds since the Unix epoch, as the daemon counts time.
inline Timestamp timestamp_from_unix_ms(std::int64_t ms) noexcept {
  return Timestamp(std::chrono::milliseconds(ms));
}
/// The daemon's form of `t`: milliseconds since the Unix epoch.
inline std::int64_t unix_ms(Timestamp t) noexcept { return t.time_since_epoch().count(); }

/// Wire names of ServiceEvent.type.
namespace event_type {
inline constexpr std::string_view chat_message = "chat_message";  ///< ChatMessage
inline constexpr std::string_view connection_request = "connection_request";  ///< ConnectionRequest
inline constexpr std::string_view rpc_message = "rpc_message";  ///< RpcMessage
inline constexpr std::string_view peer_introduction = "peer_introduction";  ///< PeerIntroduction
}  // namespace event_type

/// An inbound chat for the service.
struct ChatMessage {
  std::string from_addr;  ///< the sender's address
  std::string text;  ///< the chat's text, as the peer sent it
  Timestamp ts;  ///< the daemon's timestamp of the message
};

/// A peer asks to connect; answer with accept_connection(request_id) or
/// reject_connection(request_id, reason). The daemon keeps it pending until then, and
/// rejects it with "service stream closed" if the stream ends first.
struct ConnectionRequest {
  std::string request_id;  ///< what accept_connection / reject_connection take
  std::string from_addr;  ///< the dialling peer's address
};

/// Raw bytes for an RPC-transport service (usually a serialized protobuf of the peers' own).
struct RpcMessage {
  std::string from_addr;  ///< the sender's address
  std::string payload;  ///< the bytes, as the peer sent them
  Timestamp ts;  ///< the daemon's timestamp of the message
};

/// Another service introduced this one to a peer. from_service_addr is attested by the daemon
/// (the introducer cannot forge it); replay protection (session_id, expires_at) is the
/// receiver's job.
struct PeerIntroduction {
  std::string from_service_addr;  ///< the introducing service, attested by the daemon
  std::string peer_addr;  ///< the peer being introduced
  std::string session_id;  ///< the introducer's id for this introduction
  Timestamp expires_at;  ///< after this the introduction should not be honoured
  std::string role_hint;  ///< the introducer's hint of the peer's role, free text
  std::string payload;  ///< the introducer's own bytes
};

/// Something this version cannot decode, passed on rather than lost:
///   - an event of a type it does not know: type and payload as sent, problem empty;
///   - an event of a known type whose payload did not parse: problem says so;
///   - a message of a kind it does not know (a newer daemon's ServiceServerMessage that is
///     neither `registered`, nor an event, nor an error): type empty, payload the message's
///     bytes as received, problem naming its field number.
/// Counted in ServiceStats::events_received like every other event.
struct UnknownEvent {
  std::string type;  ///< the event type as sent; empty for an unknown message kind
  std::string payload;  ///< the bytes as received
  std::string problem;  ///< what could not be decoded, empty for a type merely unknown
};

/// A recoverable error the daemon reported on an open stream (the stream stays open).
/// Branch on kind, never on the message text.
struct ServiceError {
  /// What kind of error, from the wire code.
  enum class Kind {
    plain,              ///< only `message` is meaningful
    payload_too_large,  ///< an inbound envelope exceeded max_payload_bytes; see limit_bytes
    rate_limited,       ///< inbound traffic exceeded the rate limit; see retry_after
  };
  Kind kind = Kind::plain;  ///< branch on this
  std::string message;  ///< the daemon's text, for people
  std::string code;  ///< the wire code: "", "payload_too_large", "rate_limited" or newer
  std::uint64_t limit_bytes = 0;  ///< payload_too_large: the daemon's limit
  std::chrono::milliseconds retry_after{0};  ///< rate_limited: when to try again
  std::string from_addr;  ///< the peer whose envelope was refused, when the daemon says
};

/// One event of the service's stream, decoded from the daemon's ServiceEvent message (never a
/// failure: what this version cannot decode is an UnknownEvent).
using ServiceEvent = std::variant<ChatMessage, ConnectionRequest, RpcMessage, PeerIntroduction,
                                  UnknownEvent>;

/// Events the library itself had to drop: its read-ahead queue (ServiceOptions::
/// event_queue_capacity) was full, so the `count` oldest queued events were discarded, the
/// daemon's own policy. Coalesced: one report covers every drop since the previous one, and
/// it comes before the next event that was kept.
struct EventsDropped {
  std::uint64_t count = 0;  ///< how many were dropped, at least 1
};

/// Everything a service's stream delivers, in the daemon's order: what next_event() returns
/// (see Service::next_event), and what the handlers receive one alternative at a time.
using InboundEvent = std::variant<ChatMessage, ConnectionRequest, RpcMessage, PeerIntroduction,
                                  UnknownEvent, ServiceError, EventsDropped>;

}  // namespace ensemble
