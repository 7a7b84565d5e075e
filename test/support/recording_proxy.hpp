// A stand-in for an HTTP proxy (the kind http_proxy / https_proxy / grpc_proxy name): a TCP
// listener on 127.0.0.1 that records the first line of every connection ("CONNECT
// host:port HTTP/1.1") and closes it. A test points the proxy variables at it and checks
// which calls went its way.
#pragma once

#include "loopback_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_support {

class RecordingProxy {
 public:
  RecordingProxy() {
    listener_ = listen_on_loopback(port_, "recording proxy");
    thread_ = std::thread([this] { run(); });
  }
  RecordingProxy(const RecordingProxy&) = delete;
  RecordingProxy& operator=(const RecordingProxy&) = delete;
  ~RecordingProxy() {
    stopping_ = true;
    thread_.join();
    ::close(listener_);
  }

  // What to put in http_proxy & co.
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // The first line of each connection so far (empty when the client sent nothing).
  std::vector<std::string> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void run() {
    while (!stopping_) {
      pollfd waiting{listener_, POLLIN, 0};
      if (::poll(&waiting, 1, 20) <= 0) continue;
      const int connection = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) continue;
      std::string line;
      pollfd reading{connection, POLLIN, 0};
      char c = 0;
      while (line.size() < 512 && ::poll(&reading, 1, 500) > 0 && ::read(connection, &c, 1) == 1 && c != '\n') {
        if (c != '\r') line += c;
      }
      ::close(connection);
      std::lock_guard lock(mu_);
      requests_.push_back(line);
    }
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

}  // namespace test_support
