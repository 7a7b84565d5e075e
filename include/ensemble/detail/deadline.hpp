// Durations the user gives, turned into waits and deadlines without overflow: a timeout of
// zero or less does not wait, and one too long for the clock waits without limit (adding
// std::chrono::milliseconds::max() to a clock's now() is signed overflow).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

namespace ensemble::detail {

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

// now + `after` on the clock gRPC's alarms and deadlines take; nullopt when that is past
// what the clock can hold (read: no deadline). `after` must not be negative.
inline std::optional<std::chrono::system_clock::time_point> system_deadline(std::chrono::milliseconds after) {
  const auto now = std::chrono::system_clock::now();
  if (after >= std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::time_point::max() - now)) {
    return std::nullopt;
  }
  return now + after;
}

}  // namespace ensemble::detail
