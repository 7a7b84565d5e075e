// A loopback TCP proxy a test can freeze: it forwards bytes both ways until freeze(), then
// keeps every connection open and forwards nothing, like a daemon that hangs without
// closing its sockets. One thread, poll(); for tests only (blocking writes, small traffic).
#pragma once

#include "loopback_socket.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace test_support {

class FreezableProxy {
 public:
  explicit FreezableProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = listen_on_loopback(port_, "freezable proxy");
    thread_ = std::thread([this] { run(); });
  }
  FreezableProxy(const FreezableProxy&) = delete;
  FreezableProxy& operator=(const FreezableProxy&) = delete;
  ~FreezableProxy() {
    stop_ = true;
    thread_.join();
    for (auto [a, b] : pairs_) {
      ::close(a);
      ::close(b);
    }
    ::close(listen_fd_);
  }

  int port() const { return port_; }
  void freeze() { frozen_ = true; }

 private:
  void run() {
    std::vector<char> buffer(1 << 16);
    while (!stop_) {
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      const bool frozen = frozen_;
      if (!frozen) {
        for (auto [a, b] : pairs_) {
          // A side that reached EOF is polled as -1 (ignored), so it cannot spin.
          fds.push_back({done_.count(a) ? -1 : a, POLLIN, 0});
          fds.push_back({done_.count(b) ? -1 : b, POLLIN, 0});
        }
      }
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      if (fds[0].revents & POLLIN) accept_one();
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const auto& pair = pairs_[(i - 1) / 2];
        const int from = fds[i].fd;
        const int to = from == pair.first ? pair.second : pair.first;
        const ssize_t n = ::read(from, buffer.data(), buffer.size());
        if (n <= 0) {
          done_.insert(from);
          ::shutdown(to, SHUT_WR);
          continue;
        }
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::write(to, buffer.data() + off, static_cast<std::size_t>(n - off));
          if (w <= 0) break;
          off += w;
        }
      }
    }
  }

  void accept_one() {
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) return;
    const int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = loopback_address(target_port_);
    if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(client);
      ::close(server);
      return;
    }
    pairs_.emplace_back(client, server);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<std::pair<int, int>> pairs_;  // (client side, daemon side); the thread's own
  std::set<int> done_;                      // sides that reached EOF; the thread's own
  std::atomic<bool> frozen_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace test_support
