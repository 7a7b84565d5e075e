// Durations the user passes (CallOptions::timeout, ServiceOptions::registration_timeout, the
// reconnect backoff, the timeouts of wait_for(), flush(), next_event(), ...) turned into
// deadlines and waits without overflow. `now + std::chrono::milliseconds::max()` overflows
// the clock's nanoseconds (undefined behaviour; in practice a deadline in the past, so the
// call fails at once), and so does a condition variable's wait_for with such a timeout.
//
// The rule everywhere: a duration of kForever (100 years) or more means "no limit"; every
// shorter one is honoured exactly. 100 years from now fits every clock involved (system_clock
// and steady_clock count nanoseconds in 64 bits: about 292 years; gRPC's deadlines too).
#pragma once

#include <ensemble/client_options.hpp>
#include <ensemble/errors.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>

namespace ensemble::detail {

inline constexpr std::chrono::milliseconds kForever = std::chrono::hours(24 * 365 * 100);

// `limit` from now on `Clock`, or nullopt when there is none (`limit` of kForever or more).
// `limit` must not be negative.
template <class Clock>
std::optional<typename Clock::time_point> deadline_after(std::chrono::milliseconds limit) {
  if (limit >= kForever) return std::nullopt;
  return Clock::now() + limit;
}

// A wait of the user's `timeout` for `done()` on `cv` (a negative timeout: no wait, only a
// look). Returns what done() returned last, as condition_variable::wait_for does.
template <class CondVar, class Lock, class Done>
bool wait_for(CondVar& cv, Lock& lock, std::chrono::milliseconds timeout, Done done) {
  if (timeout >= kForever) {
    cv.wait(lock, done);
    return true;
  }
  return cv.wait_for(lock, std::max(timeout, std::chrono::milliseconds(0)), done);
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
