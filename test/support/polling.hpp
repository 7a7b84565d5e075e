// Small helpers the service-level tests share: a stand-in peer address, a poll for a
// condition that gRPC threads make true, and the options of a service that waits for its
// daemon.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/service_options.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace test_support {

// A valid address for tests, the same for the same tag: a remote peer nobody hosts.
inline std::string peer_address(std::uint8_t tag) {
  std::array<std::uint8_t, 32> key{};
  key.fill(tag);
  return ensemble::address_from_public_key(key);
}

// Polls `done` until it holds or `timeout` passes; the final answer is `done()` itself, so
// a condition that became true at the last moment still counts.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return done();
}

// A service whose start() waits for a daemon that is not there yet, retrying with this
// backoff (ServiceOptions::wait_for_daemon, paced by the reconnect policy's numbers).
inline ensemble::ServiceOptions waiting_options(std::chrono::milliseconds initial_backoff,
                                                std::chrono::milliseconds max_backoff) {
  ensemble::ServiceOptions options;
  options.wait_for_daemon = true;
  options.reconnect.initial_backoff = initial_backoff;
  options.reconnect.max_backoff = max_backoff;
  return options;
}

}  // namespace test_support
