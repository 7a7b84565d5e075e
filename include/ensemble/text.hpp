/// @file
/// Showing text the bot did not write. A chat, a peer's error text, a daemon's status message
/// or an event type may hold a newline (a forged second line in a log), an ANSI escape (a
/// terminal that changes colour, moves the cursor or retitles its window) or an invisible
/// character that makes two different names look alike. The library's own exception texts and
/// log lines show such text escaped; escaped() does the same for what a bot prints itself.
#pragma once

#include <ensemble/detail/escape.hpp>

#include <string>
#include <string_view>

namespace ensemble {

/// `text` with every character that is not visible escaped the way Go's \%q escapes it (the
/// daemon's own quoting): "\n", "\x1b", "\u2028", and "\xff" for a byte that is not UTF-8.
/// Letters, digits, punctuation and symbols of every script stay as they are, and so does the
/// space. No quotes are added. The result is one line of visible text. Any thread.
inline std::string escaped(std::string_view text) { return detail::escaped_text(text); }

}  // namespace ensemble
