/// @file
/// Ensemble addresses (daemon-protocol.md section 7): Base58Check of version byte 0x21,
/// RIPEMD-160(SHA-256(Ed25519 public key)) and a 4-byte double-SHA-256 checksum. Validation
/// follows the daemon's rule exactly: decodes, at least 25 bytes, version 0x21, checksum over
/// everything but the last 4 bytes matches.
///
/// All functions are thread-safe.
#pragma once

#include <ensemble/detail/base58.hpp>
#include <ensemble/detail/escape.hpp>
#include <ensemble/errors.hpp>

#include <openssl/evp.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ensemble {

namespace detail {

inline constexpr std::uint8_t kAddressVersion = 0x21;
inline constexpr std::size_t kAddressMinBytes = 1 + 20 + 4;  // version + hash160 + checksum
// The daemon has no upper bound, but real addresses are 34 characters; the bound keeps the
// quadratic Base58 decode cheap on hostile input.
inline constexpr std::size_t kAddressMaxChars = 256;

using Sha256 = std::array<std::uint8_t, crypto_hash_sha256_BYTES>;

inline Sha256 sha256(std::span<const std::uint8_t> data) noexcept {
  Sha256 out{};
  // libsodium's hash functions need no sodium_init and cannot fail.
  crypto_hash_sha256(out.data(), data.data(), data.size());
  return out;
}

// libsodium has no RIPEMD-160; OpenSSL does. Since OpenSSL 3.0.7 it is in the default
// provider again; 3.0.0-3.0.6 kept it only in the legacy provider, which this reports.
inline std::array<std::uint8_t, 20> ripemd160(std::span<const std::uint8_t> data) {
  std::array<std::uint8_t, 20> out{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &length, EVP_ripemd160(), nullptr) != 1 ||
      length != out.size()) {
    throw Error("RIPEMD-160 is not available from this OpenSSL (3.0.0 to 3.0.6 offer it only "
                "through the legacy provider); it is needed to derive Ensemble addresses");
  }
  return out;
}

inline std::array<std::uint8_t, 4> address_checksum(std::span<const std::uint8_t> payload) {
  const Sha256 first = sha256(payload);
  const Sha256 second = sha256(first);
  return {second[0], second[1], second[2], second[3]};
}

// The last address this thread found valid. Every Service action to a peer is checked
// (a Base58 decode and a double SHA-256, about a microsecond: a tenth of what the whole
// send costs), and a bot mostly sends to the peer it just sent to or heard from, so one
// remembered answer saves nearly all of them. Only exact matches count; the function stays
// pure.
struct LastValidAddress {
  std::array<char, 64> text{};
  std::size_t size = 0;  // 0: nothing remembered

  bool matches(std::string_view address) const noexcept {
    return address.size() == size && std::memcmp(address.data(), text.data(), size) == 0;
  }
  void remember(std::string_view address) noexcept {
    if (address.size() > text.size()) return;
    std::memcpy(text.data(), address.data(), address.size());
    size = address.size();
  }
};
inline thread_local LastValidAddress last_valid_address;

}  // namespace detail

/// True when `address` is a valid Ensemble address. Never throws, whatever the input.
inline bool is_valid_address(std::string_view address) noexcept {
  if (address.empty() || address.size() > detail::kAddressMaxChars) return false;
  if (detail::last_valid_address.matches(address)) return true;
  try {
    const auto data = detail::base58_decode(address);
    if (!data || data->size() < detail::kAddressMinBytes) return false;
    if ((*data)[0] != detail::kAddressVersion) return false;
    const std::span<const std::uint8_t> all(*data);
    const auto checksum = detail::address_checksum(all.first(all.size() - 4));
    const auto given = all.last(4);
    if (!std::equal(checksum.begin(), checksum.end(), given.begin())) return false;
    detail::last_valid_address.remember(address);
    return true;
  } catch (...) {
    return false;  // allocation failure: not provably valid
  }
}

namespace detail {

// A real address is 34 characters; quoting more of a wrong value tells the reader nothing,
// and an error message must not grow with whatever the caller passed in.
inline std::string quote_address_for_error(std::string_view value) {
  constexpr std::size_t shown = 64;
  if (value.size() <= shown) return go_quote(value);
  return go_quote(value.substr(0, shown)) + "... (" + std::to_string(value.size()) + " bytes)";
}

}  // namespace detail

/// Throws AddressError unless `address` is valid. `field` names where the value came from
/// (e.g. "manifest.allowlist[0]", "to_addr"); the message quotes the value as the daemon does
/// (its first 64 bytes, for a longer one).
inline void require_valid_address(std::string_view address, std::string_view field) {
  if (!is_valid_address(address)) {
    throw AddressError(std::string(field) + " " + detail::quote_address_for_error(address) +
                       " is not a valid ensemble address");
  }
}

/// The address of an Ed25519 public key, as the daemon derives it.
inline std::string address_from_public_key(std::span<const std::uint8_t, 32> public_key) {
  const detail::Sha256 sha = detail::sha256(public_key);
  const auto hash160 = detail::ripemd160(sha);

  std::array<std::uint8_t, detail::kAddressMinBytes> full{};
  full[0] = detail::kAddressVersion;
  std::copy(hash160.begin(), hash160.end(), full.begin() + 1);
  const auto checksum = detail::address_checksum(std::span(full).first(21));
  std::copy(checksum.begin(), checksum.end(), full.begin() + 21);
  return detail::base58_encode(full);
}

/// True for a Tor v3 onion endpoint: 56 base32 characters (RFC 4648 alphabet, either case)
/// followed by ".onion". Checks the shape only, not the embedded key or checksum.
inline bool is_onion_address(std::string_view host) noexcept {
  constexpr std::string_view suffix = ".onion";
  constexpr std::size_t label_length = 56;
  if (host.size() != label_length + suffix.size()) return false;
  if (host.substr(label_length) != suffix) return false;
  for (char c : host.substr(0, label_length)) {
    const bool base32 = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
    if (!base32) return false;
  }
  return true;
}

}  // namespace ensemble
