// Durations the user gives, turned into waits and deadlines without overflow: a timeout of
// zero or less does not wait, and one too long for the clock waits without limit (adding
// std::chrono::milliseconds::max() to a clock's now() is signed overflow: in practice a
// deadline in the past, so a call failed at once). Delays the library computes from a
// user's numbers (the reconnect backoff, the daemon double's timers) stop at kForever, a
// wait of 100 years, which every clock here can hold.
#pragma once

#include <ensemble/client_options.hpp>
#include <ensemble/errors.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

namespace ensemble::detail {

inline constexpr std::chrono::milliseconds kForever = std::chrono::hours(24 * 365 * 100);

// Waits on `cv` until `ready()` or `timeout` has passed; returns ready().
template <class Predicate>
bool wait_up_to(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                std::chrono::milliseconds timeout, Predicate ready) {
  if (timeout.count() <= 0) return ready();
  const auto now = std::chrono::steady_clock::now();
  if (timeout >= std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::time_point::max() - now)) {
    cv.wait(lock, ready);
    return true;
  }
  return cv.wait_until(lock, now + timeout, ready);
}

// now + `after` on `Clock`; nullopt when that is past what the clock can hold (read: no
// deadline). `after` must not be negative.
template <class Clock>
std::optional<typename Clock::time_point> deadline_after(std::chrono::milliseconds after) {
  const auto now = Clock::now();
  if (after >= std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - now)) {
    return std::nullopt;
  }
  return now + after;
}

// The same on the clock gRPC's alarms and deadlines take.
inline std::optional<std::chrono::system_clock::time_point> system_deadline(std::chrono::milliseconds after) {
  return deadline_after<std::chrono::system_clock>(after);
}

// CallOptions are checked before anything is started: a negative timeout is a ConfigError
// (0 is "no deadline", and a deadline in the past is never what was meant).
inline void check_call_options(const CallOptions& options) {
  if (options.timeout.count() < 0) {
    throw ConfigError("CallOptions::timeout is negative (" + std::to_string(options.timeout.count()) +
                      " ms); use 0 for no deadline");
  }
}

}  // namespace ensemble::detail
