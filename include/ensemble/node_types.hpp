/// @file
/// Plain C++ results of node-level calls, so users never touch generated protobuf types.
///
/// Conventions: times the daemon sends as Unix milliseconds are Timestamp
/// (std::chrono::sys_time<milliseconds>); where the daemon uses 0 for "never" or "not
/// known" the field is std::optional and 0 becomes std::nullopt. Public keys are the 32 raw
/// Ed25519 bytes (PublicKey, the type Signer::public_key() returns); a key the daemon did
/// not send, or one that is not 32 bytes long, is std::nullopt. All of these are plain
/// values: copy them, keep them, use them from any thread.
#pragma once

#include <ensemble/events.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ensemble {

/// The answer to a dial (Client::connect as the operator, Service::connect_peer as the
/// service). A refused or impossible dial is a value, not an exception: accepted == false
/// and message says why.
struct ConnectResult {
  bool accepted = false;  ///< whether the peer took the dial
  std::string message;  ///< the daemon's reason ("connected" on success)
};

namespace detail {
inline ConnectResult to_connect_result(api::ConnectResponse response) {
  return ConnectResult{response.accepted(), std::move(*response.mutable_message())};
}
}  // namespace detail

// ---- Node-level results (Client::get_identity, get_status, list_contacts, ...) ----

/// An Ed25519 public key: 32 raw bytes.
using PublicKey = std::array<std::uint8_t, 32>;

/// The node's own (operator) identity: what peers see when Client::connect / Client::send
/// dial them.
struct NodeIdentity {
  std::string address{};  ///< the node's Ensemble address
  std::optional<PublicKey> public_key{};  ///< the node's public key
};

/// What GetStatus reports about the node (Client::get_status).
struct NodeStatus {
  std::string tor_state{};  ///< "bootstrapping", "ready" or "disabled" (a newer daemon may add more)
  int peer_count = 0;  ///< peers the node is connected to
  std::string onion_addr{};  ///< the node's onion address
  std::chrono::milliseconds uptime{0};  ///< how long the daemon has run (the real daemon sends 0)
  int rt_size = 0;  ///< peers in the DHT routing table
};

/// One entry of the node's contact list. The daemon fills what it knows; a real daemon
/// today reports only address and alias, so everything else may be empty.
struct Contact {
  std::string address{};  ///< the contact's Ensemble address
  std::string alias{};  ///< the name the operator gave it
  std::optional<PublicKey> public_key{};  ///< its public key, when known
  std::string onion_address{};  ///< its onion address, when known
  std::optional<Timestamp> added_at{};  ///< when it was added
  std::optional<Timestamp> last_seen{};  ///< when the node last heard from it
  bool online = false;  ///< whether it is connected now
};

/// What Client::add_contact sends: Client.add_contact({.address = a, .alias = "jeff"}).
/// Adding an address that is already a contact overwrites its alias and key.
struct NewContact {
  std::string address{};  ///< the address to add
  std::string alias{};  ///< a name for it
  std::optional<PublicKey> public_key{};  ///< its public key, if known
};

/// A peer in the DHT routing table.
struct DhtNode {
  std::string address{};  ///< the peer's Ensemble address
  std::string onion_addr{};  ///< its onion address
  std::optional<Timestamp> last_seen{};  ///< when the node last heard from it
};

/// One peer connection as the node's connector sees it.
struct PeerState {
  std::string address{};  ///< the peer's Ensemble address
  std::string state{};  ///< the connection's state, in the daemon's words
  std::string error{};  ///< the last error on it, or empty
};

/// What GetDebugInfo reports: the node's view of the network (Client::get_debug_info).
struct DebugInfo {
  int rt_size = 0;  ///< peers in the DHT routing table
  std::vector<DhtNode> rt_peers{};  ///< the routing table's entries
  std::vector<PeerState> connections{};  ///< the peer connections
  std::string onion_addr{};  ///< the node's onion address
};

namespace detail {

inline std::optional<PublicKey> to_public_key(const std::string& bytes) noexcept {
  if (bytes.size() != PublicKey{}.size()) return std::nullopt;
  PublicKey key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(bytes[i]);
  return key;
}

inline std::string from_public_key(const std::optional<PublicKey>& key) {
  if (!key) return {};
  return std::string(reinterpret_cast<const char*>(key->data()), key->size());
}

// 0 is the daemon's "never" / "not known".
inline std::optional<Timestamp> to_optional_time(std::int64_t unix_ms) noexcept {
  if (unix_ms == 0) return std::nullopt;
  return timestamp_from_unix_ms(unix_ms);
}

inline NodeIdentity to_node_identity(api::GetIdentityResponse r) {
  return NodeIdentity{std::move(*r.mutable_address()), to_public_key(r.public_key())};
}

inline NodeStatus to_node_status(api::GetStatusResponse r) {
  return NodeStatus{std::move(*r.mutable_tor_state()), r.peer_count(),
                    std::move(*r.mutable_onion_addr()), std::chrono::milliseconds(r.uptime_ms()),
                    r.rt_size()};
}

inline std::vector<Contact> to_contacts(api::ListContactsResponse r) {
  std::vector<Contact> out;
  out.reserve(static_cast<std::size_t>(r.contacts_size()));
  for (auto& c : *r.mutable_contacts()) {
    out.push_back(Contact{std::move(*c.mutable_address()), std::move(*c.mutable_alias()),
                          to_public_key(c.public_key()), std::move(*c.mutable_onion_address()),
                          to_optional_time(c.added_at()), to_optional_time(c.last_seen()),
                          c.online()});
  }
  return out;
}

inline DebugInfo to_debug_info(api::GetDebugInfoResponse r) {
  DebugInfo out;
  out.rt_size = r.rt_size();
  out.onion_addr = std::move(*r.mutable_onion_addr());
  out.rt_peers.reserve(static_cast<std::size_t>(r.rt_peers_size()));
  for (auto& n : *r.mutable_rt_peers()) {
    out.rt_peers.push_back(DhtNode{std::move(*n.mutable_address()), std::move(*n.mutable_onion_addr()),
                                   to_optional_time(n.last_seen())});
  }
  out.connections.reserve(static_cast<std::size_t>(r.connections_size()));
  for (auto& p : *r.mutable_connections()) {
    out.connections.push_back(PeerState{std::move(*p.mutable_address()), std::move(*p.mutable_state()),
                                        std::move(*p.mutable_error())});
  }
  return out;
}

}  // namespace detail

}  // namespace ensemble
