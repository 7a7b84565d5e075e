// What the --demo runs share: a daemon in this process and a way to wait for events.
//
// DemoDaemon is the library's own daemon double (<ensemble/testing/daemon_double.hpp>) on a
// Unix socket in a fresh temporary directory, with a freshly generated admin key, so a demo
// signs its calls exactly as a bot does against a real daemon. Everything it makes is
// removed when it goes.
#pragma once

#include "output.hpp"

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

namespace examples {

class DemoDaemon {
 public:
  DemoDaemon() : dir_(make_temp_dir()), admin_seed_(ensemble::Seed::generate()) {
    ensemble::testing::DaemonDoubleOptions options;
    options.unix_socket = (dir_ / "ensemble.sock").string();
    options.admin_key = ensemble::Signer(admin_seed_).public_key();
    daemon_ = std::make_unique<ensemble::testing::DaemonDouble>(options);
    say("daemon: double listening on ", daemon_->unix_target(), " (operator ",
        short_addr(daemon_->node_address()), ")");
  }

  DemoDaemon(const DemoDaemon&) = delete;
  DemoDaemon& operator=(const DemoDaemon&) = delete;

  ~DemoDaemon() {
    daemon_.reset();  // ends every stream, then stops listening
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // How a bot reaches this daemon: its socket, signing with its admin seed.
  ensemble::ClientOptions client_options() const {
    ensemble::ClientOptions options;
    options.socket_path = daemon_->unix_socket_path();
    options.auth_seed = admin_seed_;
    return options;
  }

  ensemble::testing::DaemonDouble& daemon() { return *daemon_; }

 private:
  static std::filesystem::path make_temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ensemble-demo-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("cannot make a temporary directory from " + pattern);
    }
    return pattern;
  }

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
