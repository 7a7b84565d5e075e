// Whether a failed attempt to reach the daemon is worth repeating. Waiting for a daemon
// (ServiceOptions::wait_for_daemon, the reconnect policy, Client::wait_until_ready) retries
// what time can mend: a socket that does not exist yet, a daemon that refuses connections
// while it restarts, a registry not up while Tor bootstraps. It gives up at once on what
// only a person can mend, and says what that is:
//   - the socket path names something that is not a socket (a regular file, a directory);
//   - this user may not open the socket, or may not search a directory on its path (EACCES);
//   - a component of the path is not a directory (ENOTDIR), or the path loops (ELOOP);
//   - the TLS handshake fails (a certificate that does not verify, TLS against a plaintext
//     port): the same certificate fails the same way next time.
// gRPC reports all of them alike, as UNAVAILABLE, so a Unix socket's path is examined here
// (what connect() met) and a TCP failure is read from gRPC's text.
//
// Waiting says why through the log sink, not on every attempt: when it starts, whenever the
// reason changes, and after 10, 100, 1000, ... attempts.
#pragma once

#include <ensemble/detail/escape.hpp>
#include <ensemble/errors.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace ensemble::detail {

struct FailureCause {
  bool permanent = false;
  std::string why;  // for a person: "the socket \"/run/x\" does not exist (yet)", ...
};

inline std::string file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a socket";
}

// What stands between this process and the Unix socket at `path` right now.
inline FailureCause examine_socket_path(const std::string& path) {
  const std::string named = "the socket path " + go_quote(path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    switch (err) {
      case ENOENT: return {false, named + " does not exist (yet)"};
      case EACCES:
        return {true, named + " cannot be reached: a directory on it may not be searched by this user (" +
                          std::strerror(err) + ")"};
      case ENOTDIR: return {true, named + " cannot exist: a component of it is not a directory"};
      case ELOOP: return {true, named + " cannot be resolved: its symbolic links loop"};
      default: return {false, named + " cannot be examined: " + std::strerror(err)};
    }
  }
  if (!S_ISSOCK(st.st_mode)) return {true, named + " is " + file_kind(st.st_mode) + ", not a socket"};
  // connect() on a Unix socket needs write permission on it.
  if (::faccessat(AT_FDCWD, path.c_str(), W_OK, AT_EACCESS) != 0 && errno == EACCES) {
    return {true, named + " may not be opened by this user (no write permission on it: " +
                      std::strerror(EACCES) + ")"};
  }
  return {false, {}};  // a socket this user may open: what gRPC said is the whole story
}

// Classifies a failed attempt. `socket_file` is the Client's Unix socket path (empty over
// TCP). Only UNAVAILABLE is examined: the other codes the waiting loops retry (UNIMPLEMENTED
// while Tor bootstraps, a re-registration's ALREADY_EXISTS or DEADLINE_EXCEEDED) are
// temporary by their meaning, and every other code ends the wait anyway.
inline FailureCause classify_failure(const grpc::Status& status, const std::string& socket_file) {
  const std::string text = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    if (text.find("andshake failed") != std::string::npos) {
      return {true, "the TLS handshake failed (" + escaped_text(text) +
                        "); check the certificate, the CA and that the daemon listens with TLS"};
    }
    if (!socket_file.empty()) {
      FailureCause cause = examine_socket_path(socket_file);
      if (!cause.why.empty()) return cause;
    }
  }
  return {false, RpcError::status_name(status.error_code()) + ": " + escaped_text(text)};
}

// The status that ends a wait on a permanent failure: gRPC's code and text, and the cause.
inline grpc::Status with_cause(const grpc::Status& status, const FailureCause& cause) {
  return grpc::Status(status.error_code(),
                      status.error_message() + " [not retried: " + cause.why + "]");
}

// How waiting reports itself: the first failure, each change of reason, then every power of
// ten attempts, so a wait of hours leaves a handful of lines.
class RetryNotes {
 public:
  // The log line for `subject`'s temporary failure `why` at `attempt` (counted from 1), or
  // nothing when it is no news. The caller logs it (LogLevel::warning), outside its locks.
  std::optional<std::string> note(std::string_view subject, const std::string& why, int attempt) {
    const bool changed = why != last_why_;
    const bool news = changed || attempt >= next_reminder_;
    if (changed) next_reminder_ = 10;
    while (next_reminder_ <= attempt) next_reminder_ *= 10;
    last_why_ = why;
    if (!news) return std::nullopt;
    return std::string(subject) + ": " + why + "; retrying (attempt " + std::to_string(attempt) + ")";
  }

 private:
  std::string last_why_;
  long long next_reminder_ = 10;
};

}  // namespace ensemble::detail
