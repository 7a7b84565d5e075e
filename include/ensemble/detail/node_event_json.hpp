// Reading the daemon's node event JSON (the fields DaemonChatMessage::from_event and
// DaemonFileOffer::from_event take): RFC 3339 times as Go writes them, and keys that older
// and newer daemons spell differently.
#pragma once

#include <ensemble/events.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace ensemble {

namespace detail {

// Reads "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)", the RFC 3339 form Go's
// encoding/json writes for time.Time. The fraction may have any number of digits; it is
// truncated to milliseconds. Anything else is nullopt.
inline std::optional<Timestamp> parse_rfc3339(std::string_view s) noexcept {
  using namespace std::chrono;
  std::size_t i = 0;
  auto digits = [&](std::size_t n, int& out) {
    if (i + n > s.size()) return false;
    int v = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const char c = s[i + k];
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
    }
    out = v;
    i += n;
    return true;
  };
  auto expect = [&](auto accept) {
    if (i >= s.size() || !accept(s[i])) return false;
    ++i;
    return true;
  };
  auto is = [](char want) { return [want](char c) { return c == want; }; };

  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!digits(4, y) || !expect(is('-')) || !digits(2, mo) || !expect(is('-')) || !digits(2, d)) {
    return std::nullopt;
  }
  if (!expect([](char c) { return c == 'T' || c == 't' || c == ' '; })) return std::nullopt;
  if (!digits(2, h) || !expect(is(':')) || !digits(2, mi) || !expect(is(':')) || !digits(2, sec)) {
    return std::nullopt;
  }
  if (h > 23 || mi > 59 || sec > 60) return std::nullopt;
  int millis = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    std::size_t count = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (count < 3) millis = millis * 10 + (s[i] - '0');
      ++count;
      ++i;
    }
    if (count == 0) return std::nullopt;
    for (std::size_t k = count; k < 3; ++k) millis *= 10;
  }
  int offset_minutes = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    const int sign = s[i] == '-' ? -1 : 1;
    ++i;
    int oh = 0, om = 0;
    if (!digits(2, oh) || !expect(is(':')) || !digits(2, om) || oh > 23 || om > 59) return std::nullopt;
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;

  const year_month_day date{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!date.ok()) return std::nullopt;
  const sys_days days{date};
  return time_point_cast<milliseconds>(days) + hours(h) + minutes(mi) + seconds(sec) +
         milliseconds(millis) - minutes(offset_minutes);
}

// A time as a JSON value: RFC 3339 text, or a number of Unix milliseconds. Go's zero time
// ("0001-01-01T00:00:00Z", what an unset time.Time marshals to) and null are "no time".
inline std::optional<Timestamp> json_time(const nlohmann::json& v) noexcept {
  if (v.is_number_integer()) return timestamp_from_unix_ms(v.get<std::int64_t>());
  if (v.is_number_float()) {
    const double ms = v.get<double>();
    // Outside about +-285,000 years the conversion would be undefined; no daemon sends that.
    if (!(ms > -9e15 && ms < 9e15)) return std::nullopt;
    return timestamp_from_unix_ms(static_cast<std::int64_t>(ms));
  }
  if (!v.is_string()) return std::nullopt;
  const auto t = parse_rfc3339(v.get_ref<const std::string&>());
  if (t && std::chrono::year_month_day{std::chrono::floor<std::chrono::days>(*t)}.year() ==
               std::chrono::year{1}) {
    return std::nullopt;
  }
  return t;
}

// The first of `keys` present in `object` (null counts as absent).
inline const nlohmann::json* find_key(const nlohmann::json& object,
                                      std::initializer_list<const char*> keys) noexcept {
  for (const char* key : keys) {
    auto it = object.find(key);
    if (it != object.end() && !it->is_null()) return &*it;
  }
  return nullptr;
}

inline std::string string_at(const nlohmann::json& object, std::initializer_list<const char*> keys) {
  const nlohmann::json* v = find_key(object, keys);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

}  // namespace detail

}  // namespace ensemble
