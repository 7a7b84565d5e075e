/// @file
/// Typed decoders for the node events that report state (Client::events()): a peer
/// connection's progress (connection_state), Tor's start-up (tor_bootstrap) and its end
/// (tor_ready). Like DaemonChatMessage, each from_event() returns nullopt for another event
/// type or a payload it cannot read, and never throws.
///
/// The numbers are the daemon's own (daemon-protocol.md section 10). A number this version
/// does not know stays visible as itself (raw_state) and is never given a wrong name: a
/// newer daemon may add states.
#pragma once

#include <ensemble/node_events.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ensemble {

/// The daemon's connection states, by its numbering.
enum class ConnectionState : int {
  discovering = 0,  ///< looking the peer up
  signaling = 1,  ///< setting the connection up through the signalling channel
  exchanging_ips = 2,  ///< exchanging addresses with the peer
  nat_traversal = 3,  ///< getting through NAT to the peer
  connected = 4,  ///< connected directly
  connected_tor = 5,  ///< connected, relayed over Tor
  disconnected = 6,  ///< the connection ended
  failed = 7,  ///< the dial failed
  reconnecting = 8,  ///< dialling again after the connection was lost
};

/// The daemon's name for a state ("exchanging-ips", "connected-tor", ...).
constexpr std::string_view to_string(ConnectionState s) noexcept {
  switch (s) {
    case ConnectionState::discovering: return "discovering";
    case ConnectionState::signaling: return "signaling";
    case ConnectionState::exchanging_ips: return "exchanging-ips";
    case ConnectionState::nat_traversal: return "nat-traversal";
    case ConnectionState::connected: return "connected";
    case ConnectionState::connected_tor: return "connected-tor";
    case ConnectionState::disconnected: return "disconnected";
    case ConnectionState::failed: return "failed";
    case ConnectionState::reconnecting: return "reconnecting";
  }
  return "unknown";
}

/// The named state for a daemon number, or nullopt for a number this version does not know.
constexpr std::optional<ConnectionState> connection_state_from_int(std::int64_t n) noexcept {
  if (n < 0 || n > static_cast<int>(ConnectionState::reconnecting)) return std::nullopt;
  return static_cast<ConnectionState>(n);
}

/// One connection_state event: `{"PeerAddr":<addr>,"State":<int>,"Error":<text>}` (snake_case
/// peer_addr / state / error read too).
struct DaemonConnectionState {
  std::string peer_addr{};  ///< the peer whose connection changed
  std::int64_t raw_state = 0;                ///< the number as the daemon sent it
  std::optional<ConnectionState> state{};    ///< nullopt: a number this version does not know
  std::string error{};  ///< the daemon's error text, empty when none

  /// True in both connected states (direct and over Tor).
  bool connected() const noexcept {
    return state == ConnectionState::connected || state == ConnectionState::connected_tor;
  }
  /// "connected", "nat-traversal", or "unknown state 9".
  std::string state_name() const {
    return state ? std::string(to_string(*state)) : "unknown state " + std::to_string(raw_state);
  }

  /// The event decoded, or nullopt when it is not a connection_state event or its payload has
  /// no integer State. Never throws.
  static std::optional<DaemonConnectionState> from_event(const DaemonEvent& event) noexcept {
    try {
      if (event.type != node_event_type::connection_state || !event.payload.is_object()) return std::nullopt;
      const nlohmann::json* n = detail::find_key(event.payload, {"State", "state"});
      if (!n || !n->is_number_integer()) return std::nullopt;
      DaemonConnectionState s;
      s.raw_state = n->get<std::int64_t>();
      s.state = connection_state_from_int(s.raw_state);
      s.peer_addr = detail::string_at(event.payload, {"PeerAddr", "peer_addr", "peer"});
      s.error = detail::string_at(event.payload, {"Error", "error"});
      return s;
    } catch (...) {
      return std::nullopt;
    }
  }
};

/// Tor start-up progress, `{"percent":<int>,"summary":<text>}`, while GetStatus says
/// tor_state "bootstrapping".
struct TorBootstrap {
  int percent = 0;  ///< 0..100, as Tor reports it
  std::string summary{};  ///< Tor's words for the current step

  /// The event decoded, or nullopt when it is not a tor_bootstrap event or its payload has no
  /// numeric percent. Never throws.
  static std::optional<TorBootstrap> from_event(const DaemonEvent& event) noexcept {
    try {
      if (event.type != node_event_type::tor_bootstrap || !event.payload.is_object()) return std::nullopt;
      const nlohmann::json* p = detail::find_key(event.payload, {"percent", "Percent"});
      if (!p || !p->is_number()) return std::nullopt;
      TorBootstrap b;
      b.percent = static_cast<int>(p->is_number_integer() ? p->get<std::int64_t>() : p->get<double>());
      b.summary = detail::string_at(event.payload, {"summary", "Summary"});
      return b;
    } catch (...) {
      return std::nullopt;
    }
  }
};

/// Tor is up: GetStatus says "ready" from now on and RegisterService works. The payload is
/// the node's onion address as a JSON string, or null when the daemon has none to tell.
struct TorReady {
  /// The node's onion address; nullopt when the daemon sent none.
  std::optional<std::string> onion{};

  /// The event decoded, or nullopt when it is not a tor_ready event or its payload is neither a
  /// JSON string nor null. Never throws.
  static std::optional<TorReady> from_event(const DaemonEvent& event) noexcept {
    try {
      if (event.type != node_event_type::tor_ready) return std::nullopt;
      TorReady r;
      if (event.raw_payload.empty()) return r;  // nothing to tell, like null
      if (event.payload.is_string() && event.payload.get_ref<const std::string&>() != event.raw_payload) {
        r.onion = event.payload.get<std::string>();  // a JSON string, not unparsable raw text
      } else if (!event.payload.is_null()) {
        return std::nullopt;
      }
      return r;
    } catch (...) {
      return std::nullopt;
    }
  }
};

}  // namespace ensemble
