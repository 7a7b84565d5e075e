// Small helpers the daemon double's parts share: clocks, random ids, Go-style time text.
#pragma once

#include <ensemble/auth.hpp>
#include <ensemble/detail/bounded_json.hpp>
#include <ensemble/detail/hex.hpp>

#include <sodium.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

namespace ensemble::testing::detail {

using Clock = std::function<std::chrono::system_clock::time_point()>;

inline std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// `bytes` random bytes as lowercase hex: message ids, transfer ids and service tokens.
inline std::string random_hex(std::size_t bytes) {
  ensemble::detail::ensure_sodium();
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  return ensemble::detail::hex_encode(
      std::span(reinterpret_cast<const std::uint8_t*>(raw.data()), raw.size()));
}

// A JSON file another process wrote (a peer daemon's rendezvous entry, a contact store),
// trusted in nothing: nullopt when it cannot be read, is not JSON or nests deeper than the
// library allows for JSON from the wire (ensemble/detail/bounded_json.hpp).
inline std::optional<nlohmann::json> read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::string problem;
  return ensemble::detail::parse_bounded_json(text, problem);
}

// j[key] when it is a string (a number), else `fallback`: a value of another shape is
// ignored, never an exception.
inline std::string json_string_or(const nlohmann::json& j, const char* key, std::string fallback) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}
inline std::int64_t json_int_or(const nlohmann::json& j, const char* key, std::int64_t fallback) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : fallback;
}

// Go's time.Time JSON form (RFC 3339 with nanoseconds, trailing zeros trimmed, "Z" for UTC),
// because node event payloads are Go structs marshalled by encoding/json.
inline std::string go_time_json(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ns_total = duration_cast<nanoseconds>(t.time_since_epoch()).count();
  std::int64_t secs = ns_total / 1'000'000'000;
  std::int64_t nanos = ns_total % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --secs;
  }
  const std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char head[32];
  std::strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = head;
  if (nanos != 0) {
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%09lld", static_cast<long long>(nanos));
    std::string f = frac;
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  out += 'Z';
  return out;
}

// RFC 4648 base32, lowercase, no padding: the alphabet of Tor v3 onion labels.
inline std::string base32_lower(std::span<const std::uint8_t> data) {
  static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (std::uint8_t b : data) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out.push_back(alphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(alphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

}  // namespace ensemble::testing::detail
