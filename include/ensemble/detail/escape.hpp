// How the library shows text it did not write: values from options and the environment in
// ConfigError texts, and the daemon's or a peer's words in exception texts and log lines.
// Such text may hold a newline (a forged second log line), an ANSI escape (a terminal that
// changes colour, moves the cursor or retitles the window) or an invisible character that
// makes two different values look the same. Every one of them is shown escaped, so what is
// printed is one line of visible characters and says exactly what was there.
//
// Three forms, for three uses:
//   shown()        a value the user gave (a path, an address, an environment variable):
//                  quoted, every byte outside printable ASCII as \xNN, cut after 200 bytes.
//   escaped_text() words from the daemon or a peer inside a sentence (a status message, an
//                  error text): printable Unicode kept as it is, everything else escaped as
//                  Go's %q escapes it, no quotes added.
//   go_quote()     Go's strconv.Quote exactly (the daemon's %q), for texts that must match
//                  the daemon's byte for byte (the daemon double's errors, AddressError).
#pragma once

#include <ensemble/detail/go_printable.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

namespace ensemble::detail {

// One UTF-8 sequence at the start of `s`, as Go's utf8.DecodeRuneInString reads it: its
// code point and length, or length 0 when the first byte does not start a valid sequence
// (shortest form only, no surrogates, nothing above U+10FFFF).
struct DecodedRune {
  char32_t rune = 0;
  std::size_t size = 0;
};

inline DecodedRune decode_rune(std::string_view s) noexcept {
  if (s.empty()) return {};
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char c = p[0];
  if (c < 0x80) return {c, 1};
  std::size_t size = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  char32_t rune = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    size = 2;
    rune = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    size = 3;
    rune = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    size = 4;
    rune = c & 0x07;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return {};
  }
  if (s.size() < size || p[1] < lo || p[1] > hi) return {};
  rune = (rune << 6) | (p[1] & 0x3F);
  for (std::size_t k = 2; k < size; ++k) {
    if (p[k] < 0x80 || p[k] > 0xBF) return {};
    rune = (rune << 6) | (p[k] & 0x3F);
  }
  return {rune, size};
}

// Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols and U+0020.
inline bool is_go_printable(char32_t rune) noexcept {
  if (rune < 0x80) return rune >= 0x20 && rune < 0x7F;
  const auto* end = std::end(kGoPrintable);
  const auto* it = std::upper_bound(std::begin(kGoPrintable), end, rune,
                                    [](char32_t r, const CodePointRange& range) { return r < range.first; });
  return it != std::begin(kGoPrintable) && rune <= (it - 1)->last;
}

// How append_escaped() shows what it escapes.
enum class Escape {
  go_quoted,  // Go's strconv.Quote: printable Unicode kept, '"' and '\\' backslashed
  go_text,    // the same without the quoting of '"' and '\\': words inside our sentence
  bytes,      // every byte outside printable ASCII as \xNN (\t, \n, \r by name): exact bytes
};

// Appends `text` with every rune Go's %q would escape escaped the same way (\n, \x1b,
// \u2028, \U000e0001, \xff for a byte that is not UTF-8), or in Escape::bytes, every byte
// that is not printable ASCII.
inline void append_escaped(std::string& out, std::string_view text, Escape how) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto hex = [&](std::uint32_t value, int digits) {
    for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) out += kHex[(value >> shift) & 0xF];
  };
  while (!text.empty()) {
    DecodedRune r = decode_rune(text);
    if (how == Escape::bytes && r.size > 1) r = {};  // only ASCII stands for itself
    if (r.size == 0) {
      out += "\\x";
      hex(static_cast<unsigned char>(text.front()), 2);
      text.remove_prefix(1);
      continue;
    }
    const std::string_view bytes = text.substr(0, r.size);
    text.remove_prefix(r.size);
    if (how != Escape::go_text && (r.rune == '"' || r.rune == '\\')) {
      out += '\\';
      out += static_cast<char>(r.rune);
      continue;
    }
    if (is_go_printable(r.rune)) {
      out += bytes;
      continue;
    }
    switch (r.rune) {
      case '\a': out += how == Escape::bytes ? "\\x07" : "\\a"; break;
      case '\b': out += how == Escape::bytes ? "\\x08" : "\\b"; break;
      case '\f': out += how == Escape::bytes ? "\\x0c" : "\\f"; break;
      case '\v': out += how == Escape::bytes ? "\\x0b" : "\\v"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (r.rune < 0x20 || r.rune == 0x7F) {
          out += "\\x";
          hex(r.rune, 2);
        } else if (r.rune < 0x10000) {
          out += "\\u";
          hex(r.rune, 4);
        } else {
          out += "\\U";
          hex(r.rune, 8);
        }
    }
  }
}

// Go's strconv.Quote (what the daemon's %q writes).
inline std::string go_quote(std::string_view text) {
  std::string out = "\"";
  append_escaped(out, text, Escape::go_quoted);
  out += '"';
  return out;
}

// Words from the daemon or a peer, for a sentence of ours: visible as they are, invisible
// and control characters escaped, no quotes added.
inline std::string escaped_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(out, text, Escape::go_text);
  return out;
}

// A value as an error message shows it: in quotes, printable ASCII as is and every other byte
// escaped (\r, \n, \t, \xNN), so that an invisible character is seen. Cut after 200 bytes.
inline std::string shown(std::string_view value) {
  constexpr std::size_t kMaxShown = 200;
  std::string out = "\"";
  append_escaped(out, value.substr(0, kMaxShown), Escape::bytes);
  out += '"';
  if (value.size() > kMaxShown) out += "... (" + std::to_string(value.size()) + " bytes)";
  return out;
}

inline std::string shown(char c) { return shown(std::string_view(&c, 1)); }

}  // namespace ensemble::detail
