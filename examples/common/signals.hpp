// Ctrl-C (SIGINT) and SIGTERM as an ordinary callback on an ordinary thread.
//
// A signal handler may run on any thread (gRPC's included) at any moment, so it must not
// lock, allocate or call into the library. This one only write()s the signal number into a
// pipe, which is async-signal-safe; a watcher thread reads the pipe and runs the callback,
// which is free to call Service::close() and print. A second signal while the first is
// being handled exits at once (128 + signal), for a shutdown that hangs.
#pragma once

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

namespace examples {

namespace detail {
// The write end of the pipe, for the handler. Lock-free atomic, so reading it in a handler
// is defined.
inline std::atomic<int> signal_pipe_write{-1};

extern "C" inline void forward_signal(int signal) {
  const int saved = errno;  // the interrupted code may be about to read errno
  const unsigned char byte = static_cast<unsigned char>(signal);
  const int fd = signal_pipe_write.load();
  if (fd >= 0) (void)!::write(fd, &byte, 1);
  errno = saved;
}
}  // namespace detail

// Construct once, early in main (one instance at a time). The callback runs on the watcher
// thread, once, for the first SIGINT or SIGTERM.
class OnSignal {
 public:
  explicit OnSignal(std::function<void(int)> callback) : callback_(std::move(callback)) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    detail::signal_pipe_write.store(write_fd_);
    struct sigaction action {};
    action.sa_handler = detail::forward_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &action, &old_int_);
    ::sigaction(SIGTERM, &action, &old_term_);
    watcher_ = std::thread([this] { watch(); });
  }

  OnSignal(const OnSignal&) = delete;
  OnSignal& operator=(const OnSignal&) = delete;

  ~OnSignal() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    detail::signal_pipe_write.store(-1);
    const unsigned char stop = 0;  // not a signal number: tells the watcher to finish
    (void)!::write(write_fd_, &stop, 1);
    watcher_.join();
    ::close(read_fd_);
    ::close(write_fd_);
  }

 private:
  void watch() {
    int seen = 0;
    for (;;) {
      unsigned char byte = 0;
      const ssize_t n = ::read(read_fd_, &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || byte == 0) return;
      if (++seen == 1) {
        callback_(byte);
      } else {
        std::fprintf(stderr, "second signal: exiting without waiting\n");
        std::_Exit(128 + byte);
      }
    }
  }

  std::function<void(int)> callback_;
  int read_fd_ = -1;
  int write_fd_ = -1;
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  std::thread watcher_;
};

}  // namespace examples
