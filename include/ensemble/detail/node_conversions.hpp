// The daemon's node-level responses (GetIdentity, GetStatus, ListContacts, GetDebugInfo,
// Connect) as the plain values of node_types.hpp, and back for the requests that carry one.
#pragma once

#include <ensemble/events.hpp>
#include <ensemble/node_types.hpp>
#include <ensemble/proto/ensemble.pb.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ensemble::detail {

inline ConnectResult to_connect_result(api::ConnectResponse response) {
  return ConnectResult{response.accepted(), std::move(*response.mutable_message())};
}

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

}  // namespace ensemble::detail
