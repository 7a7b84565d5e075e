// Base58 with the Bitcoin alphabet, the encoding under Ensemble addresses. Big-number
// conversion, still quadratic: callers that take untrusted input bound its length first.
// Decoding is on every Service send (the address check), so it works in 32-bit limbs.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ensemble::detail {

inline constexpr std::string_view kBase58Alphabet =
    "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

// Digit value of every byte; -1 for characters outside the alphabet (0, O, I, l, and
// everything non-alphanumeric).
inline constexpr auto kBase58Values = [] {
  std::array<std::int8_t, 256> values{};
  values.fill(-1);
  for (std::size_t i = 0; i < kBase58Alphabet.size(); ++i) {
    values[static_cast<unsigned char>(kBase58Alphabet[i])] = static_cast<std::int8_t>(i);
  }
  return values;
}();

constexpr int base58_digit_value(char c) noexcept { return kBase58Values[static_cast<unsigned char>(c)]; }

inline std::string base58_encode(std::span<const std::uint8_t> bytes) {
  std::size_t zeros = 0;
  while (zeros < bytes.size() && bytes[zeros] == 0) ++zeros;

  // Base-58 digits, least significant first. log(256)/log(58) < 1.37.
  std::vector<std::uint8_t> digits;
  digits.reserve((bytes.size() - zeros) * 137 / 100 + 1);
  for (std::size_t i = zeros; i < bytes.size(); ++i) {
    unsigned carry = bytes[i];
    for (auto& d : digits) {
      carry += static_cast<unsigned>(d) << 8;
      d = static_cast<std::uint8_t>(carry % 58);
      carry /= 58;
    }
    while (carry != 0) {
      digits.push_back(static_cast<std::uint8_t>(carry % 58));
      carry /= 58;
    }
  }

  std::string out(zeros, '1');
  out.reserve(zeros + digits.size());
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) out.push_back(kBase58Alphabet[*it]);
  return out;
}

// Every Service action to a peer checks its address, so this is on the send path: digits
// are folded in five at a time (58^5 < 2^32) into 32-bit limbs, which makes one multiply-add
// pass over the number per five characters instead of one byte-wise pass per character.
inline std::optional<std::vector<std::uint8_t>> base58_decode(std::string_view text) {
  std::size_t ones = 0;
  while (ones < text.size() && text[ones] == '1') ++ones;

  // The number, in 32-bit limbs, least significant first.
  std::vector<std::uint32_t> limbs;
  limbs.reserve((text.size() - ones) * 733 / 4000 + 1);
  for (std::size_t i = ones; i < text.size();) {
    std::uint32_t scale = 1;
    std::uint32_t chunk = 0;
    for (int k = 0; k < 5 && i < text.size(); ++k, ++i) {
      const int value = base58_digit_value(text[i]);
      if (value < 0) return std::nullopt;
      chunk = chunk * 58 + static_cast<std::uint32_t>(value);
      scale *= 58;
    }
    std::uint64_t carry = chunk;  // limb * scale + carry < 2^64 for any 32-bit limb and scale
    for (auto& limb : limbs) {
      carry += static_cast<std::uint64_t>(limb) * scale;
      limb = static_cast<std::uint32_t>(carry);
      carry >>= 32;
    }
    if (carry != 0) limbs.push_back(static_cast<std::uint32_t>(carry));
  }

  // Leading '1's are leading zero bytes; the number follows, big-endian, without the zero
  // bytes at the top of its most significant limb.
  std::vector<std::uint8_t> out(ones, 0);
  out.reserve(ones + limbs.size() * 4);
  bool leading = true;
  for (auto it = limbs.rbegin(); it != limbs.rend(); ++it) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      const auto byte = static_cast<std::uint8_t>(*it >> shift);
      if (leading && byte == 0) continue;
      leading = false;
      out.push_back(byte);
    }
  }
  return out;
}

}  // namespace ensemble::detail
