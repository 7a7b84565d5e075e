/// @file
/// Result<T>: what a callback-form call hands its callback, the value or the error that the
/// blocking form would have thrown. Nothing here throws until value() is asked of a failure.
#pragma once

#include <ensemble/errors.hpp>

#include <exception>
#include <optional>
#include <utility>
#include <variant>

namespace ensemble {

template <class T>
/// The value of a call that succeeded, or the exception it failed with (see the file's
/// overview). Movable and copyable when T is.
class Result {
 public:
  /// A success holding `value`.
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  /// A failure holding `error`, the exception the blocking form would have thrown.
  Result(std::exception_ptr error) : state_(std::in_place_index<1>, std::move(error)) {}

  /// True when the call succeeded and value() returns.
  bool ok() const noexcept { return state_.index() == 0; }
  /// ok().
  explicit operator bool() const noexcept { return ok(); }

  /// The value; rethrows the typed error (e.g. RpcError) when the call failed.
  T& value() & {
    rethrow_if_error();
    return std::get<0>(state_);
  }
  /// The value, moved out of a temporary Result; rethrows the error as value() does.
  T&& value() && {
    rethrow_if_error();
    return std::get<0>(std::move(state_));
  }

  /// The error as thrown by the blocking form; null when ok().
  std::exception_ptr error() const noexcept {
    return ok() ? nullptr : std::get<1>(state_);
  }

  /// Convenience for the common case: the gRPC status of a failed call, if it was one.
  std::optional<grpc::Status> status() const {
    if (ok()) return std::nullopt;
    try {
      std::rethrow_exception(std::get<1>(state_));
    } catch (const RpcError& e) {
      return e.status();
    } catch (...) {
      return grpc::Status(grpc::StatusCode::UNKNOWN, "not an RPC error");
    }
  }

 private:
  void rethrow_if_error() const {
    if (!ok()) std::rethrow_exception(std::get<1>(state_));
  }

  std::variant<T, std::exception_ptr> state_;
};

/// Calls whose success carries no value.
struct Done {};

}  // namespace ensemble
