// Helpers for the node-level tests: a daemon double with a signed Client on its Unix
// socket, a second client's worth of helpers (waiting for a callback's Result, for a
// condition, for events), and addresses nobody hosts.
#pragma once

#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "tempdir.hpp"

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace node_test {

using namespace std::chrono_literals;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

inline ensemble::Seed admin_seed() {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(0x40 + i);
  return ensemble::Seed::from_bytes(bytes);
}

// A valid address that no daemon hosts (the double routes it to a synthetic peer).
inline std::string stranger_address() {
  return ensemble::address_from_public_key(ensemble::Signer(ensemble::Seed::generate()).public_key());
}

// The daemon sends Subscribe's headers with its first event (daemon-protocol.md section
// 10), so nothing tells a client that its subscription is in place until an event arrives.
// This publishes a marker event ("test.subscribed", which the tests' handlers ignore) until
// `sub` has received something.
inline bool await_subscribed(DaemonDouble& daemon, const ensemble::EventSubscription& sub,
                             std::chrono::milliseconds timeout = 5s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (sub.events_received() == 0) {
    if (std::chrono::steady_clock::now() > until) return false;
    daemon.publish_node_event("test.subscribed", "{}");
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// One daemon double (admin-key auth on, socket in a private temp dir) and a Client signed
// with the admin seed. `loopback_dir` joins a shared rendezvous so two nodes reach each
// other.
struct Node {
  explicit Node(std::filesystem::path loopback_dir = {},
                std::function<void(DaemonDoubleOptions&)> tweak = {})
      : daemon(make_options(dir, std::move(loopback_dir), std::move(tweak))),
        client({.socket_path = daemon.unix_socket_path(), .auth_seed = admin_seed()}) {}

  static DaemonDoubleOptions make_options(const test_support::TempDir& dir, std::filesystem::path loopback_dir,
                                          const std::function<void(DaemonDoubleOptions&)>& tweak) {
    DaemonDoubleOptions o;
    o.unix_socket = (dir / "api.sock").string();
    o.admin_key = ensemble::Signer(admin_seed()).public_key();
    o.loopback_dir = std::move(loopback_dir);
    if (tweak) tweak(o);
    return o;
  }

  test_support::TempDir dir;
  DaemonDouble daemon;
  ensemble::Client client;
};

// Runs a callback-form call and waits for its Result (fails the test by throwing on a
// hang rather than hanging the suite).
template <class T, class Start>
ensemble::Result<T> await(Start start, std::chrono::milliseconds timeout = 10s) {
  auto promise = std::make_shared<std::promise<ensemble::Result<T>>>();
  auto future = promise->get_future();
  start([promise](ensemble::Result<T> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(timeout) != std::future_status::ready) throw std::runtime_error("callback never ran");
  return future.get();
}

// Polls `condition` until it holds or `timeout` passes.
inline bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Collects node events from a subscription's handler thread for the test thread.
class EventLog {
 public:
  void operator()(const ensemble::DaemonEvent& ev) {
    std::lock_guard lock(mu_);
    events_.push_back(ev);
    changed_.notify_all();
  }

  // The first event (from the start) that satisfies `match`, waiting up to `timeout`.
  std::optional<ensemble::DaemonEvent> wait_for(const std::function<bool(const ensemble::DaemonEvent&)>& match,
                                                std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    std::optional<ensemble::DaemonEvent> found;
    changed_.wait_for(lock, timeout, [&] {
      for (const auto& ev : events_) {
        if (match(ev)) {
          found = ev;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  std::optional<ensemble::DaemonEvent> wait_type(std::string_view type, std::chrono::milliseconds timeout = 10s) {
    return wait_for([type](const ensemble::DaemonEvent& ev) { return ev.type == type; }, timeout);
  }

  std::vector<ensemble::DaemonEvent> snapshot() const {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<ensemble::DaemonEvent> events_;
};

// Exception matchers for CHECK_THROWS_MATCHES.
template <class E>
auto what_contains(std::string text) {
  return Catch::Predicate<E>(
      [text](const E& e) { return std::string(e.what()).find(text) != std::string::npos; },
      "what() contains \"" + text + "\"");
}

inline auto rpc_code(grpc::StatusCode code) {
  return Catch::Predicate<ensemble::RpcError>([code](const ensemble::RpcError& e) { return e.code() == code; },
                                              "RpcError " + ensemble::RpcError::status_name(code));
}

inline auto rpc_error(grpc::StatusCode code, std::string message) {
  return Catch::Predicate<ensemble::RpcError>(
      [code, message](const ensemble::RpcError& e) { return e.code() == code && e.daemon_message() == message; },
      "RpcError " + ensemble::RpcError::status_name(code) + " \"" + message + "\"");
}

}  // namespace node_test
