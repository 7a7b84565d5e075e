// A TCP relay on 127.0.0.1 that is slow to accept: each connection waits `accept_delay` in
// the kernel's backlog before it is accepted and relayed, byte for byte, to 127.0.0.1:PORT.
// It stands in for anything slow between a client and its daemon (a TLS daemon across a
// network, a loaded host), so a test can check that connecting does not time out early.
#pragma once

#include "loopback_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace test_support {

class DelayingProxy {
 public:
  DelayingProxy(int upstream_port, std::chrono::milliseconds accept_delay)
      : upstream_port_(upstream_port), delay_(accept_delay) {
    listener_ = listen_on_loopback(port_, "delaying proxy");
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  DelayingProxy(const DelayingProxy&) = delete;
  DelayingProxy& operator=(const DelayingProxy&) = delete;

  // Stops accepting, cuts every relayed connection and waits for its threads.
  ~DelayingProxy() {
    stopping_ = true;
    acceptor_.join();
    ::close(listener_);
    std::vector<std::thread> relays;
    {
      std::lock_guard lock(mu_);
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
      relays.swap(relays_);
    }
    for (auto& t : relays) t.join();
  }

  int port() const { return port_; }
  // Connections accepted (and so delayed) so far.
  int accepted() const { return accepted_; }

 private:
  // Polls in short slices so that the destructor is never kept waiting long.
  bool wait_readable(int fd) const {
    pollfd p{fd, POLLIN, 0};
    while (!stopping_) {
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  void accept_loop() {
    while (wait_readable(listener_)) {
      // The connection is pending in the backlog; the delay counts from there.
      const auto until = std::chrono::steady_clock::now() + delay_;
      while (!stopping_ && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (stopping_) return;
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      ++accepted_;
      const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      const sockaddr_in address = loopback_address(upstream_port_);
      if (upstream < 0 ||
          ::connect(upstream, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        if (upstream >= 0) ::close(upstream);
        ::close(client);
        continue;
      }
      std::lock_guard lock(mu_);
      open_fds_.push_back(client);
      open_fds_.push_back(upstream);
      relays_.emplace_back([this, client, upstream] { relay(client, upstream); });
    }
  }

  // Copies both ways until either side closes, then closes both.
  void relay(int a, int b) {
    char buffer[16384];
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    bool open = true;
    while (open && !stopping_) {
      if (::poll(fds, 2, 20) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
        if (n <= 0) {
          open = false;
          break;
        }
        for (ssize_t sent = 0; sent < n;) {
          const ssize_t w = ::write(fds[1 - i].fd, buffer + sent, static_cast<std::size_t>(n - sent));
          if (w <= 0) {
            open = false;
            break;
          }
          sent += w;
        }
      }
    }
    std::lock_guard lock(mu_);
    std::erase(open_fds_, a);
    std::erase(open_fds_, b);
    ::close(a);
    ::close(b);
  }

  const int upstream_port_;
  const std::chrono::milliseconds delay_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> open_fds_;
  std::vector<std::thread> relays_;
};

}  // namespace test_support
