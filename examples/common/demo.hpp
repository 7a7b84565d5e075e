// What the --demo runs share: a daemon in this process and a way to wait for events.
//
// DemoDaemon is the library's own daemon double (<ensemble/testing/daemon_double.hpp>) on a
// Unix socket in a fresh temporary directory, with a freshly generated admin key, so a demo
// signs its calls exactly as a bot does against a real daemon. Everything it makes is
// removed when it goes. It is compiled once, in demo_daemon.cpp, rather than in every
// example: the double is most of what an example costs to compile.
#pragma once

#include "output.hpp"

#include <ensemble/ensemble.hpp>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>

namespace ensemble::testing {
class DaemonDouble;
}

namespace examples {

class DemoDaemon {
 public:
  DemoDaemon();
  ~DemoDaemon();  // ends every stream, stops listening, removes the directory

  DemoDaemon(const DemoDaemon&) = delete;
  DemoDaemon& operator=(const DemoDaemon&) = delete;

  // How a bot reaches this daemon: its socket, signing with its admin seed.
  ensemble::ClientOptions client_options() const;

  // The double itself, for what only a test harness does (inject events, read actions);
  // include <ensemble/testing/daemon_double.hpp> to use it.
  ensemble::testing::DaemonDouble& daemon() { return *daemon_; }

 private:
  std::filesystem::path dir_;
  ensemble::Seed admin_seed_;
  std::unique_ptr<ensemble::testing::DaemonDouble> daemon_;
};

// Counts things that happen on gRPC's threads so the demo's main thread can wait for them.
class Tally {
 public:
  void add() {
    std::lock_guard lock(mu_);
    ++count_;
    changed_.notify_all();
  }
  // True once the count reaches `at_least`; false if `timeout` passes first.
  bool wait_for(int at_least, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return count_ >= at_least; });
  }
  int count() const {
    std::lock_guard lock(mu_);
    return count_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  int count_ = 0;
};

// How long a demo waits for any one thing before it calls the run a failure.
inline constexpr std::chrono::seconds kDemoPatience{10};

}  // namespace examples
