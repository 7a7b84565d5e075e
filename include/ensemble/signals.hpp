/// @file
/// SignalStop: SIGINT and SIGTERM as a std::stop_token, so that Ctrl-C or a supervisor's stop
/// (systemd sends SIGTERM) ends a bot cleanly at any moment of its life: before the daemon
/// exists, while registering, with turns in flight.
///
///     int main() {
///       ensemble::SignalStop stop;  // first thing: before the Client and its gRPC threads
///       auto client = ensemble::Client::from_env();
///       auto bot = client.service("bot", options);
///       bot->stop_on(stop.token(), std::chrono::seconds(10));  // then drain, up to 10 s
///       bot->start();   // throws RegistrationError (CANCELLED) if the stop comes first
///       bot->wait();    // OK once drained and closed
///     }
///
/// How a signal gets here. The constructor blocks the signals in its own thread, so every
/// thread started after it (gRPC's among them, when the Client comes after) inherits the
/// block: the kernel then keeps a signal pending, and a watcher thread (the one thread this
/// class owns, started by the constructor and joined by the destructor) takes it from a
/// signalfd. A thread started earlier that does not block them still gets them, through a
/// handler that only write()s the signal number into a pipe the watcher also reads
/// (async-signal-safe; it must not lock, allocate or call into the library). Either way the
/// stop is requested on the watcher thread, so every std::stop_callback on token()
/// (Service::stop_on's among them) runs there. Constructing it first thing in main() keeps to
/// the first path, which also works where signal delivery to a thread parked in a raw system
/// call is deferred (ThreadSanitizer). A second signal while the first is being handled exits
/// at once with 128 + its number (Options::second_signal_exits), for a shutdown that hangs.
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
#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
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

/// SIGINT and SIGTERM (or the signals of Options) as a std::stop_token; how the signals get
/// here is in the file's overview. Neither copyable nor movable: the watcher thread is tied
/// to this object.
class SignalStop {
 public:
  /// Which signals stop, and what a second one does.
  struct Options {
    std::vector<int> signals{SIGINT, SIGTERM};  ///< each in 1..255
    bool second_signal_exits = true;            ///< std::_Exit(128 + signal) on the next one
  };

  /// SIGINT and SIGTERM, the second one exiting at once.
  SignalStop() : SignalStop(Options{}) {}

  /// Blocks the signals in this thread, installs the handlers and starts the watcher thread.
  /// One SignalStop at a time per process (signal dispositions are process-wide): a second
  /// one throws Error, as does a signal number outside 1..255. Throws Error when the pipe,
  /// the signalfd or a handler cannot be set up (with errno's words).
  explicit SignalStop(Options options) : options_(std::move(options)) {
    sigemptyset(&set_);
    for (int s : options_.signals) {
      if (s <= 0 || s > 255 || sigaddset(&set_, s) != 0) {
        throw Error("SignalStop: " + std::to_string(s) + " is not a signal number");
      }
    }
    int fds[2];
    // Both ends non-blocking: the handler must never block, and the watcher reads only what
    // poll() said was there (see watch()).
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw Error(std::string("SignalStop: pipe2 failed: ") + std::strerror(errno));
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    int expected = -1;
    if (!detail::signal_pipe_write.compare_exchange_strong(expected, write_fd_)) {
      close_fds();
      throw Error("SignalStop: another SignalStop exists in this process; share its token()");
    }
    signal_fd_ = ::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) {
      const int error = errno;
      detail::signal_pipe_write.store(-1);
      close_fds();
      throw Error(std::string("SignalStop: signalfd failed: ") + std::strerror(error));
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
        close_fds();
        throw Error("SignalStop: cannot handle signal " + std::to_string(options_.signals[i]) + ": " +
                    std::strerror(error));
      }
    }
    ::pthread_sigmask(SIG_BLOCK, &set_, &previous_mask_);
    owner_ = std::this_thread::get_id();
    watcher_ = std::thread([this] { watch(); });
  }

  SignalStop(const SignalStop&) = delete;
  SignalStop& operator=(const SignalStop&) = delete;

  /// Joins the watcher thread and restores the handlers that were there before, and this
  /// thread's signal mask when it is the constructing thread (a signal still pending then
  /// takes its old course).
  ~SignalStop() {
    const unsigned char finish = 0;  // not a signal number: tells the watcher to return
    (void)!::write(write_fd_, &finish, 1);
    watcher_.join();
    restore(options_.signals.size());
    detail::signal_pipe_write.store(-1);
    if (std::this_thread::get_id() == owner_) ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
    close_fds();
  }

  /// Stopped at the first signal (or request_stop()).
  std::stop_token token() const noexcept { return source_.get_token(); }

  /// The first signal that came, 0 before one did (or when request_stop() came first).
  int signal() const noexcept { return signal_.load(); }

  /// As if a signal had come, without one: runs token()'s stop callbacks on this thread.
  void request_stop() noexcept { source_.request_stop(); }

 private:
  // Reads signal numbers from the pipe (the handler's path) and the signalfd (the blocked
  // path) until the destructor writes 0. Both reads are non-blocking because poll() can
  // promise what is gone by the time of the read: a process-wide pending signal makes the
  // signalfd readable, and then the kernel may hand it to a thread that has it unblocked
  // (one started before this object), whose handler sends it through the pipe instead.
  void watch() {
    int seen = 0;
    for (;;) {
      pollfd fds[2] = {{read_fd_, POLLIN, 0}, {signal_fd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      int sig = -1;
      if (fds[1].revents & POLLIN) {
        signalfd_siginfo info{};
        if (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) sig = static_cast<int>(info.ssi_signo);
      } else if (fds[0].revents & (POLLIN | POLLHUP)) {
        unsigned char byte = 0;
        const ssize_t n = ::read(read_fd_, &byte, 1);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0 || byte == 0) return;
        sig = byte;
      }
      if (sig <= 0) continue;
      if (++seen == 1) {
        signal_.store(sig);
        source_.request_stop();
      } else if (options_.second_signal_exits) {
        detail::log(LogLevel::error, "signal " + std::to_string(sig) + " while stopping: exiting without waiting");
        std::_Exit(128 + sig);
      }
    }
  }

  void close_fds() noexcept {
    for (int fd : {read_fd_, write_fd_, signal_fd_}) {
      if (fd >= 0) ::close(fd);
    }
  }

  void restore(std::size_t count) noexcept {
    for (std::size_t i = 0; i < count; ++i) ::sigaction(options_.signals[i], &previous_[i], nullptr);
  }

  Options options_;
  sigset_t set_{};
  sigset_t previous_mask_{};
  std::thread::id owner_;
  std::stop_source source_;
  std::atomic<int> signal_{0};
  std::vector<struct sigaction> previous_;
  int read_fd_ = -1;
  int write_fd_ = -1;
  int signal_fd_ = -1;
  std::thread watcher_;
};

}  // namespace ensemble
