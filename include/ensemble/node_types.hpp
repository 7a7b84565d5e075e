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

}  // namespace ensemble
