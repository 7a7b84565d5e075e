/// @file
/// Where the library's diagnostics go: one process-wide sink, stderr by default.
///
/// The library reports what it cannot hand back to a caller (a handler or callback that
/// threw on a gRPC thread, a seed file that others can read, why it is still waiting for a
/// daemon: detail/failure.hpp, when the wait starts, when its reason changes, after 10, 100,
/// ... attempts) and what an operator wants to see in a log (a service registered,
/// registered again after a reconnect). Each diagnostic is a LogRecord: a level, one line of
/// text (text from the daemon or a peer in it is escaped), and the service or the call it
/// concerns. Route them into the application's own logging with set_log_sink(), in either
/// of two forms:
///
///     ensemble::set_log_sink([](const ensemble::LogRecord& r) {      // the whole record
///       spdlog::log(r.level == ensemble::LogLevel::error ? spdlog::level::err : spdlog::level::info,
///                   "[{}] {}", r.service, r.message);
///     });
///     ensemble::set_log_sink([](ensemble::LogLevel level, std::string_view message) { ... });
///
/// A record sink gets every level; a (level, message) sink, like the default (stderr), gets
/// warnings and errors only.
///
/// Threads: the sink runs on whichever thread has something to report (often a gRPC
/// thread), possibly on several at once, so it must be thread-safe; it must not block for
/// long or call back into a Client. An exception escaping it is swallowed and the message
/// goes to stderr instead. set_log_sink() may be called at any time from any thread; a
/// message being logged meanwhile goes to the sink that was set when it started.
#pragma once

#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

namespace ensemble {

/// How much a log record matters, least first.
enum class LogLevel {
  debug,    ///< detail for finding a fault; nothing here yet, kept for such detail
  info,     ///< the normal course of things an operator wants in a log (a service registered)
  warning,  ///< something is wrong but the library carried on as asked (a world-readable seed)
  error,    ///< something failed that nobody else was told of (a handler threw)
};

/// The level's name as spelled in the enum ("debug", "info", "warning", "error").
inline std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: break;
  }
  return "error";
}

/// One diagnostic. Every string_view is valid only during the sink's call.
struct LogRecord {
  LogLevel level = LogLevel::error;  ///< how much it matters
  /// One line without a trailing newline that reads on its own, the service and call
  /// included: `a handler of service "echo" threw: boom`.
  std::string_view message{};
  /// The name of the service it concerns ("echo"), or empty.
  std::string_view service{};
  /// The gRPC method it concerns, as the daemon's API names it ("GetStatus", "Subscribe",
  /// "SendFile", "RegisterService"), or empty.
  std::string_view call{};
};

/// The record form of a sink.
using LogRecordSink = std::function<void(const LogRecord& record)>;
/// The shorter (level, message) form of a sink.
using LogSink = std::function<void(LogLevel level, std::string_view message)>;

namespace detail {

struct LogState {
  std::mutex mu;
  std::shared_ptr<const LogRecordSink> sink;  // null: stderr
};

inline LogState& log_state() {
  static LogState state;
  return state;
}

// The default: warnings and errors, one line each, "ensemble: WARNING: <message>" or
// "ensemble: <message>".
inline void log_to_stderr(const LogRecord& record) noexcept {
  if (record.level < LogLevel::warning) return;
  std::fprintf(stderr, "ensemble: %s%.*s\n", record.level == LogLevel::warning ? "WARNING: " : "",
               static_cast<int>(record.message.size()), record.message.data());
}

inline void log(const LogRecord& record) noexcept {
  std::shared_ptr<const LogRecordSink> sink;
  {
    std::lock_guard lock(log_state().mu);
    sink = log_state().sink;
  }
  if (sink) {
    try {
      (*sink)(record);
      return;
    } catch (...) {
    }
  }
  log_to_stderr(record);
}

// What a diagnostic concerns, for log() below.
struct LogSubject {
  std::string_view service{};
  std::string_view call{};
};

inline void log(LogLevel level, std::string_view message, LogSubject about = {}) noexcept {
  log(LogRecord{level, message, about.service, about.call});
}

}  // namespace detail

/// Sends every diagnostic of the library to `sink` from now on; an empty sink restores
/// stderr. Process-wide, like the diagnostics it routes.
inline void set_log_sink(LogRecordSink sink) {
  auto shared = sink ? std::make_shared<const LogRecordSink>(std::move(sink)) : nullptr;
  std::lock_guard lock(detail::log_state().mu);
  detail::log_state().sink = std::move(shared);
}

/// The same for a sink that takes the level and the message only. It gets warnings and
/// errors, as before records existed: what it was written for.
inline void set_log_sink(LogSink sink) {
  if (!sink) {
    set_log_sink(LogRecordSink{});
    return;
  }
  set_log_sink(LogRecordSink([sink = std::move(sink)](const LogRecord& record) {
    if (record.level >= LogLevel::warning) sink(record.level, record.message);
  }));
}

/// Restores stderr; also what set_log_sink({}) and set_log_sink(nullptr) mean.
inline void set_log_sink(std::nullptr_t) { set_log_sink(LogRecordSink{}); }

}  // namespace ensemble
