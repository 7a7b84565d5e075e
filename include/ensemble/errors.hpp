/// @file
/// The exceptions ensemble-cpp throws. Every one derives from ensemble::Error, so a caller can
/// catch the family or a single kind. Messages name what was wrong (which file, which
/// variable, which address, which field) so they can be shown to a user as they are.
#pragma once

#include <ensemble/detail/escape.hpp>

#include <grpcpp/support/status.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace ensemble {

/// Base of every ensemble-cpp exception.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Invalid client or service configuration: both or neither of socket_path/addr, a missing
/// environment variable, an option out of range. Thrown at construction, before any I/O.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A seed that cannot be used: wrong length, unreadable file, non-hex text.
class AuthError : public Error {
 public:
  using Error::Error;
};

/// A string that is not a valid Ensemble address (Base58Check, version 0x21).
class AddressError : public Error {
 public:
  using Error::Error;
};

/// A call the daemon answered with a non-OK gRPC status. code() and daemon_message() are the
/// status as the daemon sent it; what() adds the call's name for context and shows the
/// daemon's text with control and invisible characters escaped (a newline as `\n`, an ANSI
/// escape as `\x1b`), so that printing what() never prints more than one visible line.
class RpcError : public Error {
 public:
  /// `call` is the RPC's name as the daemon's API spells it ("GetStatus"); `status` is the
  /// daemon's answer, kept whole.
  RpcError(std::string call, grpc::Status status)
      : Error(call + " failed: " + status_name(status.error_code()) + ": " +
              detail::escaped_text(status.error_message()) + hint(status)),
        call_(std::move(call)),
        status_(std::move(status)) {}

  /// The status code the daemon sent.
  grpc::StatusCode code() const noexcept { return status_.error_code(); }
  /// By value: grpc::Status::error_message() returns a copy, so a reference would dangle.
  std::string daemon_message() const { return status_.error_message(); }
  /// The whole status as the daemon sent it (code, message, details).
  const grpc::Status& status() const noexcept { return status_; }
  /// The RPC that failed ("GetStatus", "RegisterService", ...).
  const std::string& call() const noexcept { return call_; }

  /// What to do about a status, for the ones a user can fix: appended to what() so a log line
  /// says how to recover, not just what went wrong. Empty when there is no generic advice.
  static std::string hint(const grpc::Status& status) {
    const std::string text = status.error_message();
    switch (status.error_code()) {
      case grpc::StatusCode::UNAUTHENTICATED:
        if (text == "timestamp too old") {
          return " (this machine's clock and the daemon's differ by more than 5 minutes: "
                 "correct the clock, e.g. enable NTP)";
        }
        if (text == "missing metadata" || text == "missing auth headers") {
          return " (the daemon requires signed calls: set ClientOptions::auth_seed, or "
                 "ENSEMBLE_AUTH_SEED for Client::from_env)";
        }
        if (text == "invalid signature") {
          return " (the signature does not match the public key: the seed and the key sent "
                 "disagree, or something altered the call)";
        }
        return {};
      case grpc::StatusCode::PERMISSION_DENIED:
        if (text == "unauthorized public key") {
          return " (this seed is not the daemon's admin key: use the matching seed, or start "
                 "the daemon with this seed's public key; ensemble-keygen --show SEEDFILE "
                 "prints it)";
        }
        return {};
      case grpc::StatusCode::UNAVAILABLE:
        // A cause the library found (detail/failure.hpp) says more than a guess.
        if (text.find("[not retried: ") != std::string::npos) return {};
        return " (is the daemon running, and is this its socket or address?)";
      default:
        return {};
    }
  }

  /// The code's name as gRPC spells it ("DEADLINE_EXCEEDED"); a code gRPC does not define is
  /// "status N".
  static std::string status_name(grpc::StatusCode code) {
    switch (code) {
      case grpc::StatusCode::OK: return "OK";
      case grpc::StatusCode::CANCELLED: return "CANCELLED";
      case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
      case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
      case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
      case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
      case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
      case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
      case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
      case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
      case grpc::StatusCode::ABORTED: return "ABORTED";
      case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
      case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
      case grpc::StatusCode::INTERNAL: return "INTERNAL";
      case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
      case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
      case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
      default: return "status " + std::to_string(static_cast<int>(code));
    }
  }

 protected:
  /// For subclasses that word what() themselves (RegistrationError).
  RpcError(std::string call, grpc::Status status, std::string what)
      : Error(std::move(what)), call_(std::move(call)), status_(std::move(status)) {}

 private:
  std::string call_;
  grpc::Status status_;
};

/// RegisterService ended before the daemon sent `registered`: name taken (ALREADY_EXISTS), a
/// bad manifest (INVALID_ARGUMENT), auth (UNAUTHENTICATED / PERMISSION_DENIED), nothing
/// listening (UNAVAILABLE), a registry not up yet while Tor bootstraps (UNIMPLEMENTED), no
/// answer within ServiceOptions::registration_timeout (DEADLINE_EXCEEDED), or cancel()
/// while waiting (CANCELLED). daemon_message() is the daemon's own text.
class RegistrationError : public RpcError {
 public:
  /// `service_name` is the name the service registered under; `status` how RegisterService
  /// ended.
  RegistrationError(std::string service_name, grpc::Status status)
      : RpcError("RegisterService", status,
                 "registering service \"" + service_name + "\" failed: " +
                     status_name(status.error_code()) + ": " +
                     detail::escaped_text(status.error_message()) + hint(status)),
        service_name_(std::move(service_name)) {}

  /// The name of the service that failed to register.
  const std::string& service_name() const noexcept { return service_name_; }

 private:
  std::string service_name_;
};

/// An argument the daemon would refuse (an empty text, an empty request id), or a message it
/// would end the call for (a string field that is not valid UTF-8, a message over
/// ClientOptions::max_message_bytes); thrown before anything is queued or sent, with the
/// call, the field and the offset, or the size and the limit.
class InvalidArgumentError : public Error {
 public:
  using Error::Error;
};

/// An action (send, accept, reject, ...) on a service whose stream is not open: never
/// started, closed by the user, or ended by the daemon. Nothing was queued.
class ServiceClosedError : public Error {
 public:
  using Error::Error;
};

}  // namespace ensemble
