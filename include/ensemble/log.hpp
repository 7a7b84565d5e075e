// Where the library's diagnostics go: one process-wide sink, stderr by default.
//
// The library reports only what it cannot hand back to a caller: a handler or callback
// that threw on a gRPC thread, a seed file that others can read, why it is still waiting for
// a daemon (detail/failure.hpp: when the wait starts, when its reason changes, after 10,
// 100, ... attempts). Every message is one line: text from the daemon or a peer in it is
// escaped. Route those into the application's own logging with set_log_sink():
//
//     ensemble::set_log_sink([](ensemble::LogLevel level, std::string_view message) {
//       spdlog::log(level == ensemble::LogLevel::error ? spdlog::level::err : spdlog::level::warn,
//                   "{}", message);
//     });
//
// Threads: the sink runs on whichever thread has something to report (often a gRPC
// thread), possibly on several at once, so it must be thread-safe; it must not block for
// long or call back into a Client. An exception escaping it is swallowed and the message
// goes to stderr instead. set_log_sink() may be called at any time from any thread; a
// message being logged meanwhile goes to the sink that was set when it started.
#pragma once

#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

namespace ensemble {

enum class LogLevel {
  warning,  // something is wrong but the library carried on as asked (a world-readable seed)
  error,    // something failed that nobody else was told of (a handler threw)
};

inline std::string_view to_string(LogLevel level) noexcept {
  return level == LogLevel::warning ? "warning" : "error";
}

// `message` is one line without a trailing newline, e.g. `a handler of service "echo"
// threw: boom`; it is valid only during the call.
using LogSink = std::function<void(LogLevel level, std::string_view message)>;

namespace detail {

struct LogState {
  std::mutex mu;
  std::shared_ptr<const LogSink> sink;  // null: stderr
};

inline LogState& log_state() {
  static LogState state;
  return state;
}

// The default: one line, "ensemble: WARNING: <message>" or "ensemble: <message>".
inline void log_to_stderr(LogLevel level, std::string_view message) noexcept {
  std::fprintf(stderr, "ensemble: %s%.*s\n", level == LogLevel::warning ? "WARNING: " : "",
               static_cast<int>(message.size()), message.data());
}

inline void log(LogLevel level, std::string_view message) noexcept {
  std::shared_ptr<const LogSink> sink;
  {
    std::lock_guard lock(log_state().mu);
    sink = log_state().sink;
  }
  if (sink) {
    try {
      (*sink)(level, message);
      return;
    } catch (...) {
    }
  }
  log_to_stderr(level, message);
}

}  // namespace detail

// Sends every diagnostic of the library to `sink` from now on; an empty sink restores
// stderr. Process-wide, like the diagnostics it routes.
inline void set_log_sink(LogSink sink) {
  auto shared = sink ? std::make_shared<const LogSink>(std::move(sink)) : nullptr;
  std::lock_guard lock(detail::log_state().mu);
  detail::log_state().sink = std::move(shared);
}

}  // namespace ensemble
