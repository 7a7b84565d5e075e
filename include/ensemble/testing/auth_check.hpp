/// @file
/// The daemon's server-side admin-key check (daemon-protocol.md sections 4 and 5a), for test
/// servers and the daemon double. It reproduces the real daemon's order of checks, status
/// codes and texts word for word, so a client tested against it sees what a real daemon says.
#pragma once

#include <ensemble/auth.hpp>
#include <ensemble/detail/hex.hpp>

#include <grpcpp/support/status.h>
#include <grpcpp/support/string_ref.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string_view>

namespace ensemble::testing {

/// How far the signed timestamp may be from the server's clock, either way. Exactly this far
/// still passes.
inline constexpr std::chrono::seconds kAuthFreshness{300};

namespace detail {

// The first value of `key`, or "" when absent: the daemon treats an empty value as missing.
inline std::string_view first_metadata_value(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata, std::string_view key) {
  const auto it = metadata.lower_bound(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end() || it->first != grpc::string_ref(key.data(), key.size())) return {};
  return std::string_view(it->second.data(), it->second.size());
}

// Base-10 int64 with an optional sign and nothing else, as Go's strconv.ParseInt(s, 10, 64)
// accepts it.
inline std::optional<std::int64_t> parse_go_int64(std::string_view text) noexcept {
  bool negative = false;
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  const std::uint64_t limit = negative
      ? static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1
      : static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (limit - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  if (negative) {
    return value == limit ? std::numeric_limits<std::int64_t>::min()
                          : -static_cast<std::int64_t>(value);
  }
  return static_cast<std::int64_t>(value);
}

// |now - unix_seconds| > kAuthFreshness, at the clock's full precision (the daemon compares
// time.Since(time.Unix(ts, 0)), nanoseconds included), without overflow for any int64.
inline bool outside_freshness(std::int64_t unix_seconds,
                              std::chrono::system_clock::time_point now) noexcept {
  using namespace std::chrono;
  const auto now_ns = duration_cast<nanoseconds>(now.time_since_epoch()).count();
  const std::int64_t now_s = now_ns / 1'000'000'000;
  // Far away in whole seconds: decided without multiplying unix_seconds up to nanoseconds.
  const std::int64_t margin = kAuthFreshness.count() + 2;
  if (unix_seconds < now_s - margin || unix_seconds > now_s + margin) return true;
  std::int64_t age_ns = now_ns - unix_seconds * 1'000'000'000;
  if (age_ns < 0) age_ns = -age_ns;
  return age_ns > duration_cast<nanoseconds>(kAuthFreshness).count();
}

}  // namespace detail

/// Checks one call's metadata against the daemon's admin key, as the daemon does: OK, or the
/// status the daemon would end the call with.
inline grpc::Status check_admin_auth(
    const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata,
    const std::array<std::uint8_t, 32>& admin_key, std::chrono::system_clock::time_point now) {
  using grpc::Status;
  using grpc::StatusCode;

  if (client_metadata.empty()) return Status(StatusCode::UNAUTHENTICATED, "missing metadata");

  const auto pubkey_hex = detail::first_metadata_value(client_metadata, kPubkeyHeader);
  const auto timestamp = detail::first_metadata_value(client_metadata, kTimestampHeader);
  const auto signature_hex = detail::first_metadata_value(client_metadata, kSignatureHeader);
  if (pubkey_hex.empty() || timestamp.empty() || signature_hex.empty()) {
    return Status(StatusCode::UNAUTHENTICATED, "missing auth headers");
  }

  std::array<std::uint8_t, 32> pubkey{};
  if (!ensemble::detail::hex_decode_into(pubkey_hex, pubkey)) {
    return Status(StatusCode::UNAUTHENTICATED, "invalid public key");
  }
  if (pubkey != admin_key) {
    return Status(StatusCode::PERMISSION_DENIED, "unauthorized public key");
  }

  const auto unix_seconds = detail::parse_go_int64(timestamp);
  if (!unix_seconds) return Status(StatusCode::UNAUTHENTICATED, "invalid timestamp");
  if (detail::outside_freshness(*unix_seconds, now)) {
    return Status(StatusCode::UNAUTHENTICATED, "timestamp too old");
  }

  const auto signature = ensemble::detail::hex_decode(signature_hex);
  if (!signature) return Status(StatusCode::UNAUTHENTICATED, "invalid signature encoding");
  // A well-formed hex string of the wrong length is a bad signature, not a bad encoding.
  if (signature->size() != 64 ||
      !verify_signature(admin_key, timestamp,
                        std::span<const std::uint8_t, 64>(signature->data(), 64))) {
    return Status(StatusCode::UNAUTHENTICATED, "invalid signature");
  }
  return Status::OK;
}

/// The same check against the system clock.
inline grpc::Status check_admin_auth(
    const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata,
    const std::array<std::uint8_t, 32>& admin_key) {
  return check_admin_auth(client_metadata, admin_key, std::chrono::system_clock::now());
}

}  // namespace ensemble::testing
