// Small measuring tools for the benchmark: clocks, one-shot signals with timeouts, an
// arrival tracker fed by the daemon double's action observer, resident memory, load, and
// the summary statistics the report uses.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <malloc.h>
#include <time.h>
#include <unistd.h>

namespace bench {

using Clock = std::chrono::steady_clock;

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Something a run waits for that must not hang the benchmark: every wait has a timeout and
// a timeout is an error that ends the program with a message, never a silent bad number.
struct Timeout : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Set once (from any thread), waited for with a timeout. Records when it was set, so the
// end of a run is timed where it happened, not where the waiter woke up.
class Signal {
 public:
  void set() {
    const auto now = Clock::now();
    std::lock_guard lock(mu_);
    if (set_) return;
    set_ = true;
    when_ = now;
    cv_.notify_all();
  }
  Clock::time_point wait(std::chrono::milliseconds timeout, const char* what) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return set_; })) {
      throw Timeout(std::string(what) + ": timed out");
    }
    return when_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool set_ = false;
  Clock::time_point when_;
};

// Counts the actions the double receives from one service (the one being measured), fed by
// DaemonDouble::set_action_observer. Installed once for the whole program, so the observer
// is a plain pointer (no allocation per action in the double) and never outlives what it
// points to; watch() retargets it between runs. The lock costs the double the same for the
// library, the raw baseline and the ceiling.
class ArrivalTracker {
 public:
  void watch(std::string service) {
    std::lock_guard lock(mu_);
    name_ = std::move(service);
    count_.store(0, std::memory_order_relaxed);
    want_ = UINT64_MAX;
  }

  void on_action(std::string_view service) {
    const auto now = Clock::now();
    std::lock_guard lock(mu_);
    if (service != name_) return;
    const auto n = count_.load(std::memory_order_relaxed) + 1;
    count_.store(n, std::memory_order_release);
    last_ = now;
    if (n >= want_) cv_.notify_all();  // only the arrival someone waits for wakes anyone
  }

  // Blocks until `n` actions have arrived; returns when the n-th did.
  Clock::time_point wait_count(std::uint64_t n, std::chrono::milliseconds timeout, const char* what) {
    std::unique_lock lock(mu_);
    want_ = n;
    if (!cv_.wait_for(lock, timeout, [&] { return count_.load(std::memory_order_relaxed) >= n; })) {
      throw Timeout(std::string(what) + ": only " + std::to_string(count_.load()) + " of " +
                    std::to_string(n) + " arrived before the timeout");
    }
    want_ = UINT64_MAX;
    return last_;
  }

  // Lock-free, for a sender that keeps a bounded window of messages in flight.
  std::uint64_t count() const { return count_.load(std::memory_order_acquire); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string name_;
  std::atomic<std::uint64_t> count_{0};
  std::uint64_t want_ = UINT64_MAX;
  Clock::time_point last_;
};

// CPU time of the whole process (every thread), in seconds.
inline double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Resident set size of this process, from /proc/self/statm.
inline std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Bytes malloc has handed out and not had back, over every arena. Unlike resident memory
// it ignores allocator slack and untouched pages: the two together tell a real per-object
// cost from fragmentation.
inline std::uint64_t heap_in_use_bytes() { return ::mallinfo2().uordblks; }

// The 1, 5 and 15 minute load averages.
inline std::array<double, 3> load_average() {
  std::array<double, 3> load{};
  std::ifstream in("/proc/loadavg");
  in >> load[0] >> load[1] >> load[2];
  return load;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t mid = v.size() / 2;
  return v.size() % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// Nearest-rank percentile of an already sorted sample, p in (0, 100].
inline double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace bench
