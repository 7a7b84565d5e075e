// Checks for the values a Client hands to gRPC: socket paths, TCP addresses, metadata values
// and the environment variables they come from. Left to gRPC, a bad one is reinterpreted (a
// '#' in a "unix:" target cuts the path short) or fails far from its cause (a 117-byte path:
// "UNKNOWN: Failed to create secure client channel"; a "\r" in a metadata value: an
// assertion that aborts the process and logs the value). Here each becomes a ConfigError at
// construction that names where the value came from (`source`: "ClientOptions::socket_path",
// "ENSEMBLE_SOCKET", ...) and what is wrong with it. Secrets are never quoted.
#pragma once

#include <ensemble/detail/escape.hpp>
#include <ensemble/errors.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace ensemble::detail {

inline bool is_ascii_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Environment variables are refused, never trimmed, when they start or end with whitespace:
// they hold paths, names and secrets, where a changed byte means another file or a wrong
// token, and the daemon's supervisor never adds any. The usual cause is a hand-written
// environment file (CRLF line endings, a stray space). `secret`: the message shows the
// offending character and the length, not the value.
inline void check_env_surroundings(std::string_view variable, std::string_view value, bool secret) {
  if (value.empty()) return;
  const bool leading = is_ascii_space(value.front());
  if (!leading && !is_ascii_space(value.back())) return;
  const char c = leading ? value.front() : value.back();
  throw ConfigError(std::string(variable) +
                    (secret ? " (" + std::to_string(value.size()) + " bytes, not shown)"
                            : " " + shown(value)) +
                    (leading ? " starts" : " ends") + " with whitespace " + shown(c) +
                    "; surrounding whitespace in ENSEMBLE_* variables is refused, not trimmed" +
                    (c == '\r' || c == '\n' ? " (an environment file with CRLF line endings?)" : ""));
}

// The supervised-service token goes out as gRPC metadata (x-service-token). gRPC's rule for a
// non-binary metadata value (grpc 1.51, grpc_header_nonbin_value_is_legal) is: every byte
// printable ASCII, 0x20 to 0x7E. A value that breaks it is not refused by gRPC but fails an
// assertion when the call starts, killing the process and logging the value, so it must not
// reach gRPC. A space at either end is refused too: no minted token has one, and HTTP/2
// (RFC 9113, section 8.2.1) forbids a field value that starts or ends with whitespace, so a
// daemon may refuse the call. The token is a secret: messages give offsets and bytes, never
// the text.
inline void check_service_token(std::string_view source, std::string_view token) {
  const auto where = [&](std::size_t i) {
    return " at offset " + std::to_string(i) + " of its " + std::to_string(token.size()) +
           " bytes (the token is not shown)";
  };
  for (std::size_t i = 0; i < token.size(); ++i) {
    const auto byte = static_cast<unsigned char>(token[i]);
    if (byte < 0x20 || byte > 0x7e) {
      throw ConfigError(std::string(source) + " has the byte " + shown(token[i]) + where(i) +
                        "; it is sent as gRPC metadata, which takes printable ASCII only "
                        "(0x20 to 0x7E)");
    }
  }
  if (!token.empty() && (token.front() == ' ' || token.back() == ' ')) {
    throw ConfigError(std::string(source) + " has a space" +
                      where(token.front() == ' ' ? 0 : token.size() - 1) +
                      "; a service token never starts or ends with one");
  }
}

// ---- Unix socket paths ----

// The longest path connect() takes: sun_path holds it with its terminating NUL.
inline constexpr std::size_t kMaxSocketPathBytes = sizeof(sockaddr_un{}.sun_path) - 1;

inline constexpr std::string_view kSocketPathForms =
    "accepted forms: a path (\"/run/ensemble/sock\", \"api.sock\", dialled exactly as "
    "written), \"unix:PATH\" or \"unix:///ABSOLUTE/PATH\"";

// The file a socket_path value names. A bare path is the file, byte for byte. The "unix:"
// forms are there for values copied from gRPC targets; in them '%', '?' and '#' would mean
// one thing to gRPC's URI parser and another to a reader, so they are refused there.
inline std::string socket_file(std::string_view value, std::string_view source) {
  const std::string named = std::string(source) + " " + shown(value);
  std::string_view path = value;
  if (value.starts_with("unix://")) {
    path = value.substr(7);
    if (!path.starts_with('/')) {
      throw ConfigError(named + " is not a socket path: after \"unix://\" comes a host name by "
                        "URI rules, so this form needs an absolute path (\"unix:///x\"); " +
                        std::string(kSocketPathForms));
    }
  } else if (value.starts_with("unix:")) {
    path = value.substr(5);
  }
  if (path.size() != value.size() && path.find_first_of("%?#") != std::string_view::npos) {
    throw ConfigError(named + " has '%', '?' or '#', which a \"unix:\" URI reads as an escape, a "
                      "query or a fragment; give the bare path instead: it is dialled exactly "
                      "as written");
  }
  if (path.empty()) throw ConfigError(named + " names no path; " + std::string(kSocketPathForms));
  if (const auto nul = path.find('\0'); nul != std::string_view::npos) {
    throw ConfigError(named + " has a NUL byte at offset " + std::to_string(nul) +
                      ", which no path can hold");
  }
  // "//x" is "/x" to the kernel, but gRPC 1.51 dials no path that starts with "//".
  while (path.starts_with("//")) path.remove_prefix(1);
  if (path.size() > kMaxSocketPathBytes) {
    throw ConfigError(named + " is " + std::to_string(path.size()) +
                      " bytes long; a Unix socket path can be at most " +
                      std::to_string(kMaxSocketPathBytes) +
                      " bytes on this system (sockaddr_un::sun_path). Use a shorter path, e.g. "
                      "through a symlink to the socket's directory");
  }
  return std::string(path);
}

// The gRPC target that dials exactly the file `path`. gRPC reads a "unix:" target as a URI:
// it cuts the path at '?' or '#' and decodes "%XX". So every byte other than [A-Za-z0-9-._~/]
// goes in percent-encoded, and gRPC's decoding gives back the very bytes. `path` comes from
// socket_file, so it has one leading '/' at most: "unix://x" would make x a host name.
inline std::string unix_target(std::string_view path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string target = "unix:";
  for (char c : path) {
    const auto byte = static_cast<unsigned char>(c);
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
    if (plain) {
      target += c;
    } else {
      target += '%';
      target += kHex[byte >> 4];
      target += kHex[byte & 0xf];
    }
  }
  return target;
}

// ---- TCP addresses ----

struct HostPort {
  std::string host;  // without brackets
  std::string port;  // decimal, 1 to 65535
  bool ipv6 = false;  // given in brackets
};

inline constexpr std::string_view kAddrForms =
    "accepted forms: \"HOST:PORT\" (\"localhost:9090\", \"daemon.lan:9090\", "
    "\"127.0.0.1:9090\") or \"[IPV6]:PORT\" (\"[::1]:9090\"), PORT from 1 to 65535";

inline bool is_host_name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

// "localhost" in any case, with or without the root's trailing dot (RFC 6761 keeps the name
// for loopback).
inline bool is_localhost(std::string_view host) noexcept {
  if (host.ends_with('.')) host.remove_suffix(1);
  constexpr std::string_view name = "localhost";
  if (host.size() != name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = host[i];
    if (((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c) != name[i]) return false;
  }
  return true;
}

// The host as gRPC's resolvers dial it, or a refusal. gRPC 1.51's default resolver
// (c-ares) takes only dotted quads as IPv4 addresses and asks DNS about everything else but
// "localhost", so the other forms the C library reads as IPv4 ("127.1", "0x7f.0.0.1",
// "2130706433", "0177.0.0.1") and "localhost." would go to a DNS server and never connect.
// Each is rewritten to the form gRPC dials (the dotted quad; "localhost" without the dot, in
// the case given), which means the same address to every resolver (GRPC_DNS_RESOLVER=native
// reads both forms alike). A name
// that no resolver can answer is refused: a last label of digits only is no DNS name (RFC
// 3696, section 2) and not an IPv4 address either ("256.1.1.1", "1.2.3.4.5", "127.0.0.1."),
// and an empty label, a label over 63 bytes or a name over 253 bytes break RFC 1035.
template <class Refuse>
std::string dialable_host(const std::string& host, const Refuse& bad) {
  if (is_localhost(host)) return host.back() == '.' ? host.substr(0, host.size() - 1) : host;
  in_addr parsed{};
  // parse_addr let only [A-Za-z0-9._-] through, so inet_aton sees no trailing text.
  if (::inet_aton(host.c_str(), &parsed) != 0) {
    char dotted[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &parsed, dotted, sizeof dotted);
    return dotted;
  }
  std::string_view name = host;
  if (name.size() > 1 && name.back() == '.') name.remove_suffix(1);  // the root: "daemon.lan."
  if (name.size() > 253) throw bad("the host name is " + std::to_string(name.size()) + " bytes long; DNS allows 253");
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = name.find('.', start);
    const std::string_view label = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty()) throw bad("the host name has an empty label (\"..\", or a '.' at its start)");
    if (label.size() > 63) {
      throw bad("the host name has a label of " + std::to_string(label.size()) + " bytes; DNS allows 63");
    }
    if (dot == std::string_view::npos) {
      if (label.find_first_not_of("0123456789") == std::string_view::npos) {
        throw bad(shown(host) + " is not an IPv4 address, and a name whose last label is all digits "
                  "is no host name either");
      }
      break;
    }
    start = dot + 1;
  }
  return host;
}

// Splits "host:port" or "[v6]:port" the way gRPC does (more than one ':' without brackets is
// an IPv6 address with no port to gRPC, so it is refused here) and checks each part: a host
// name or IPv4 address holds only [A-Za-z0-9._-], so no character in it means anything to a
// URI parser.
inline HostPort parse_addr(std::string_view addr, std::string_view source) {
  const auto bad = [&](const std::string& why) {
    return ConfigError(std::string(source) + " " + shown(addr) + " is not host:port (" + why +
                       "); " + std::string(kAddrForms));
  };
  HostPort result;
  std::string_view port;
  if (addr.starts_with('[')) {
    const auto close = addr.find(']');
    if (close == std::string_view::npos) throw bad("no ']' closes the IPv6 address");
    result.host = std::string(addr.substr(1, close - 1));
    result.ipv6 = true;
    if (addr.substr(close + 1, 1) != ":") throw bad("no \":PORT\" after the ']'");
    port = addr.substr(close + 2);
    // An optional zone ("%eth0") follows the address, as gRPC allows.
    const std::string address = result.host.substr(0, result.host.find('%'));
    in6_addr parsed{};
    if (::inet_pton(AF_INET6, address.c_str(), &parsed) != 1) {
      throw bad(shown(address) + " is not an IPv6 address");
    }
    const std::string_view zone = std::string_view(result.host).substr(address.size());
    if (zone == "%") throw bad("no zone after the '%'");
    for (char c : zone.substr(zone.empty() ? 0 : 1)) {
      if (!is_host_name_char(c)) throw bad("the zone has the character " + shown(c));
    }
  } else {
    const auto colon = addr.rfind(':');
    if (colon == std::string_view::npos) throw bad("no port");
    result.host = std::string(addr.substr(0, colon));
    port = addr.substr(colon + 1);
    if (result.host.empty()) throw bad("no host");
    for (char c : result.host) {
      if (!is_host_name_char(c) && c != ':') throw bad("the host has the character " + shown(c));
    }
    if (result.host.find(':') != std::string::npos) {
      throw bad("more than one ':'; an IPv6 address goes in brackets, e.g. \"[::1]:9090\"");
    }
  }
  int number = 0;
  for (char c : port) {
    if (c < '0' || c > '9' || number > 65535) {
      number = -1;
      break;
    }
    number = number * 10 + (c - '0');
  }
  if (port.empty()) throw bad("no port");
  if (number < 1 || number > 65535) throw bad("the port " + shown(port) + " is not a number from 1 to 65535");
  result.port = std::string(port);
  if (!result.ipv6) result.host = dialable_host(result.host, bad);
  return result;
}

// The gRPC target for a checked address. The explicit "dns:///" keeps gRPC from reading the
// host as a URI scheme ("unix:9090" would otherwise dial a Unix socket named "9090"). A zone's
// '%' is the one byte that needs escaping.
inline std::string tcp_target(const HostPort& address) {
  std::string host;
  for (char c : address.host) host += c == '%' ? std::string("%25") : std::string(1, c);
  return "dns:///" + (address.ipv6 ? "[" + host + "]" : host) + ":" + address.port;
}

// True when `address` (from parse_addr, so already in the form gRPC dials) is this machine's
// loopback: "localhost" (in any case, given with or without the root's trailing dot),
// 127.0.0.0/8 (given in any IPv4 form the C library reads:
// 127.0.0.1, 127.1, 0x7f.0.0.1, 2130706433), and ::1 or ::ffff:127.x.y.z in any IPv6
// spelling. No other name counts, whatever it resolves to today ("127.evil.com" is a name).
// Whatever the resolver makes of a host, gRPC's local-TCP credentials refuse a peer that is
// not loopback; this check makes the mistake an early, clear one.
inline bool is_loopback(const HostPort& address) {
  if (address.ipv6) {
    in6_addr parsed{};
    const std::string without_zone = address.host.substr(0, address.host.find('%'));
    if (::inet_pton(AF_INET6, without_zone.c_str(), &parsed) != 1) return false;
    return IN6_IS_ADDR_LOOPBACK(&parsed) || (IN6_IS_ADDR_V4MAPPED(&parsed) && parsed.s6_addr[12] == 127);
  }
  if (is_localhost(address.host)) return true;
  in_addr parsed{};
  return ::inet_pton(AF_INET, address.host.c_str(), &parsed) == 1 && (ntohl(parsed.s_addr) >> 24) == 127;
}

}  // namespace ensemble::detail
