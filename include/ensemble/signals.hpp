// SignalStop: SIGINT and SIGTERM as a std::stop_token, so that Ctrl-C or a supervisor's stop
// (systemd sends SIGTERM) ends a bot cleanly at any moment of its life: before the daemon
// exists, while registering, with turns in flight.
//
//     ensemble::SignalStop stop;                 // from here on, SIGINT/SIGTERM request a stop
//     auto bot = client.service("bot", options);
//     bot->stop_on(stop.token(), std::chrono::seconds(10));  // then drain, up to 10 s
//     bot->start();   // throws RegistrationError (CANCELLED) if the stop comes first
//     bot->wait();    // OK once drained and closed
//
// A signal handler may run on any thread (a gRPC thread included) at any moment, so it must
// not lock, allocate or call into the library. This one only write()s the signal number into
// a pipe, which is async-signal-safe; a watcher thread that the constructor starts (the one
// thread this class owns, joined by its destructor) reads it and requests the stop, so every
// std::stop_callback on token() (Service::stop_on's among them) runs on that thread. A second
// signal while the first is being handled exits at once with 128 + its number
// (Options::second_signal_exits), for a shutdown that hangs.
#pragma once

#include <ensemble/errors.hpp>
#include <ensemble/log.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace ensemble {

namespace detail {
// The write end of the pipe, for the handler. A lock-free atomic, so reading it in a signal
// handler is defined.
inline std::atomic<int> signal_pipe_write{-1};

extern "C" inline void forward_signal_to_pipe(int signal) {
  const int saved = errno;  // the interrupted code may be about to read errno
  const unsigned char byte = static_cast<unsigned char>(signal);
  const int fd = signal_pipe_write.load();
  if (fd >= 0) (void)!::write(fd, &byte, 1);
  errno = saved;
}
}  // namespace detail

class SignalStop {
 public:
  struct Options {
    std::vector<int> signals{SIGINT, SIGTERM};  // each in 1..255
    bool second_signal_exits = true;            // std::_Exit(128 + signal) on the next one
  };

  SignalStop() : SignalStop(Options{}) {}

  // Installs the handlers and starts the watcher thread. One SignalStop at a time per
  // process (signal dispositions are process-wide): a second one throws Error, as does a
  // signal number outside 1..255; ConfigError-free otherwise. Throws Error when the pipe or
  // a handler cannot be set up (with errno's words).
  explicit SignalStop(Options options) : options_(std::move(options)) {
    for (int s : options_.signals) {
      if (s <= 0 || s > 255) throw Error("SignalStop: " + std::to_string(s) + " is not a signal number");
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(std::string("SignalStop: pipe2 failed: ") + std::strerror(errno));
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    int expected = -1;
    if (!detail::signal_pipe_write.compare_exchange_strong(expected, write_fd_)) {
      ::close(read_fd_);
      ::close(write_fd_);
      throw Error("SignalStop: another SignalStop exists in this process; share its token()");
    }
    previous_.resize(options_.signals.size());
    for (std::size_t i = 0; i < options_.signals.size(); ++i) {
      struct sigaction action {};
      action.sa_handler = detail::forward_signal_to_pipe;
      sigemptyset(&action.sa_mask);
      action.sa_flags = SA_RESTART;
      if (::sigaction(options_.signals[i], &action, &previous_[i]) != 0) {
        const int error = errno;
        restore(i);
        detail::signal_pipe_write.store(-1);
        ::close(read_fd_);
        ::close(write_fd_);
        throw Error("SignalStop: cannot handle signal " + std::to_string(options_.signals[i]) + ": " +
                    std::strerror(error));
      }
    }
    watcher_ = std::thread([this] { watch(); });
  }

  SignalStop(const SignalStop&) = delete;
  SignalStop& operator=(const SignalStop&) = delete;

  // Restores the handlers that were there before and joins the watcher thread.
  ~SignalStop() {
    restore(options_.signals.size());
    detail::signal_pipe_write.store(-1);
    const unsigned char finish = 0;  // not a signal number: tells the watcher to return
    (void)!::write(write_fd_, &finish, 1);
    watcher_.join();
    ::close(read_fd_);
    ::close(write_fd_);
  }

  // Stopped at the first signal (or request_stop()).
  std::stop_token token() const noexcept { return source_.get_token(); }

  // The first signal that came, 0 before one did (or when request_stop() came first).
  int signal() const noexcept { return signal_.load(); }

  // As if a signal had come, without one: runs token()'s stop callbacks on this thread.
  void request_stop() noexcept { source_.request_stop(); }

 private:
  void watch() {
    int seen = 0;
    for (;;) {
      unsigned char byte = 0;
      const ssize_t n = ::read(read_fd_, &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || byte == 0) return;
      if (++seen == 1) {
        signal_.store(byte);
        source_.request_stop();
      } else if (options_.second_signal_exits) {
        detail::log(LogLevel::error, "signal " + std::to_string(byte) + " while stopping: exiting without waiting");
        std::_Exit(128 + byte);
      }
    }
  }

  void restore(std::size_t count) noexcept {
    for (std::size_t i = 0; i < count; ++i) ::sigaction(options_.signals[i], &previous_[i], nullptr);
  }

  Options options_;
  std::stop_source source_;
  std::atomic<int> signal_{0};
  std::vector<struct sigaction> previous_;
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::thread watcher_;
};

}  // namespace ensemble
