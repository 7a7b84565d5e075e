// JSON from the wire, parsed only when its nesting is bounded. nlohmann::json parses any
// depth without recursion, but copying, comparing and dumping a value recurse once per
// level: a node event nested 100,000 deep (a 200 KB payload a peer can make the daemon
// forward) parses fine and then overflows the stack of the handler that copies it. The
// daemon's own payloads are two or three levels deep; kMaxJsonDepth leaves room for any
// honest one and keeps every later recursion within a few tens of kilobytes of stack.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace ensemble::detail {

inline constexpr std::size_t kMaxJsonDepth = 64;

// True when `text`, read as JSON, opens more than `limit` arrays and objects inside one
// another. A linear scan that skips strings (and the escapes in them), so no amount of
// nesting costs stack here.
inline bool json_nesting_exceeds(std::string_view text, std::size_t limit) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > limit) return true;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default: break;
    }
  }
  return false;
}

// `text` parsed, or nullopt with `problem` set: not JSON, or nested deeper than
// kMaxJsonDepth. Never throws on bad input.
inline std::optional<nlohmann::json> parse_bounded_json(std::string_view text, std::string& problem) {
  if (json_nesting_exceeds(text, kMaxJsonDepth)) {
    problem = "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return std::nullopt;
  }
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    problem = "not JSON";
    return std::nullopt;
  }
  // In place: nlohmann::json converts itself to std::optional, and a null would become nullopt.
  return std::optional<nlohmann::json>(std::in_place, std::move(value));
}

}  // namespace ensemble::detail
