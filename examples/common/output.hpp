// Printing from the examples. Handlers run on gRPC's threads while main prints too, so each
// line is built first and written whole under one lock, then flushed at once: a reader on a
// pipe (a test, `| grep`) sees every line as it happens, never two lines interleaved. Lines
// carry peers' and the daemon's words (chats, error texts), so each is printed escaped
// (ensemble::escaped): a newline or a terminal escape in a chat cannot forge a line of output
// or take over the terminal.
#pragma once

#include <ensemble/text.hpp>

#include <cstdio>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>

namespace examples {

inline std::mutex& output_mutex() {
  static std::mutex mu;
  return mu;
}

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream line;
  (line << ... << parts);
  return line.str();
}

// One line to stdout.
template <class... Parts>
void say(const Parts&... parts) {
  const std::string line = ensemble::escaped(concat(parts...)) + "\n";
  std::lock_guard lock(output_mutex());
  std::cout << line << std::flush;
}

// One line to stderr.
template <class... Parts>
void complain(const Parts&... parts) {
  const std::string line = ensemble::escaped(concat(parts...)) + "\n";
  std::lock_guard lock(output_mutex());
  std::cerr << line << std::flush;
}

// Bytes as printable text: ASCII as is, everything else as \xNN, so binary RPC payloads
// print safely.
inline std::string printable(std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out += c;
    } else {
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

// Addresses are 34 characters; the first 8 are enough to tell peers apart in a demo.
inline std::string short_addr(std::string_view address) {
  return address.size() > 10 ? std::string(address.substr(0, 8)) + "..." : std::string(address);
}

}  // namespace examples
