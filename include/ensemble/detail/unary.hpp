// The two shapes of every unary call: blocking (value or a thrown RpcError) and callback
// (gRPC's callback unary API; the callback gets a Result). Each public call is one line on
// top of these, so deadlines, error typing and cancellation on Client destruction are
// written once.
#pragma once

#include <ensemble/client_options.hpp>
#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/connection.hpp>
#include <ensemble/detail/deadline.hpp>
#include <ensemble/detail/wire_check.hpp>
#include <ensemble/errors.hpp>
#include <ensemble/result.hpp>

#include <grpcpp/client_context.h>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace ensemble::detail {

// `options` passed check_call_options(). A timeout of 0, or one too long for the clock
// (std::chrono::milliseconds::max()), sets no deadline.
inline void apply_call_options(grpc::ClientContext& context, const CallOptions& options) {
  if (options.timeout.count() <= 0) return;
  if (auto deadline = system_deadline(options.timeout)) context.set_deadline(*deadline);
}

// A call on a Client that is gone (a Service's connect_peer after ~Client): the channel
// has been released, so nothing is sent.
[[noreturn]] inline void throw_client_gone(const char* name) {
  throw RpcError(name, grpc::Status(grpc::StatusCode::CANCELLED,
                                    "the Client this call belongs to was destroyed"));
}

// `invoke(stub, context, request, response)` runs the synchronous stub method; `convert`
// maps the response to the public value type. The call is in the registry while it runs,
// so destroying the Client from another thread cancels it (and waits for it).
template <class Response, class Request, class Invoke, class Convert>
auto blocking_call(Connection& conn, const char* name, const Request& request,
                   const CallOptions& options, Invoke invoke, Convert convert) {
  check_call_options(options);
  check_outgoing(request, name, conn.max_message_bytes);
  struct Blocking final : LiveCall {
    grpc::ClientContext context;
    void cancel_call() noexcept override { context.TryCancel(); }
  };
  auto call = std::make_unique<Blocking>();
  apply_call_options(call->context, options);
  if (!conn.calls.add(call.get())) throw_client_gone(name);
  Response response;
  grpc::Status status = invoke(*conn.stub, &call->context, request, &response);
  conn.calls.remove(call.get());
  call.reset();
  if (!status.ok()) throw RpcError(name, std::move(status));
  return convert(std::move(response));
}

// `start(async_stub, context, request, response, on_done)` starts the callback-API call.
// The callback runs on a gRPC thread, exactly once, with the value or the RpcError, and is
// destroyed right after, before the call leaves the registry: once ~Client has returned
// the callback neither runs nor is destroyed (it may own what the caller frees next).
template <class Response, class Request, class Start, class Convert, class Value>
void callback_call(std::shared_ptr<Connection> conn, const char* name, Request request,
                   const CallOptions& options, Start start, Convert convert,
                   std::function<void(Result<Value>)> callback) {
  struct Pending final : LiveCall {
    std::shared_ptr<Connection> conn;
    const char* name;
    std::mutex context_mu;  // cancel_call() (any thread) against finish() dropping the context
    std::optional<grpc::ClientContext> context{std::in_place};
    Request request;
    Response response;
    Convert convert;
    std::function<void(Result<Value>)> callback;

    Pending(std::shared_ptr<Connection> c, const char* n, Request r, Convert cv,
            std::function<void(Result<Value>)> cb)
        : conn(std::move(c)), name(n), request(std::move(r)), convert(std::move(cv)),
          callback(std::move(cb)) {}
    void cancel_call() noexcept override {
      std::lock_guard lock(context_mu);
      if (context) context->TryCancel();
    }

    void finish(grpc::Status status) {
      CallbackScope scope;
      std::unique_ptr<Pending> owner(this);
      auto result = status.ok() ? Result<Value>(convert(std::move(response)))
                                : Result<Value>(std::make_exception_ptr(
                                      RpcError(name, std::move(status))));
      {
        auto user_callback = std::move(callback);
        call_user_callback({.call = name}, name, "callback", user_callback, std::move(result));
      }
      // The context holds the channel, which the Client releases on its own thread once
      // the registry is idle: drop it before leaving the registry.
      {
        std::lock_guard lock(context_mu);
        context.reset();
      }
      conn->calls.remove(this);
    }
  };

  // Thrown here, to the caller, like every other argument error: nothing was started.
  check_call_options(options);
  check_outgoing(request, name, conn->max_message_bytes);
  auto* pending = new Pending(std::move(conn), name, std::move(request), std::move(convert),
                              std::move(callback));
  apply_call_options(*pending->context, options);
  if (!pending->conn->calls.add(pending)) {
    delete pending;  // the callback is destroyed here, on the caller's thread, unrun
    throw_client_gone(name);
  }
  start(pending->conn->stub->async(), &*pending->context, &pending->request,
        &pending->response, [pending](grpc::Status status) { pending->finish(std::move(status)); });
}

}  // namespace ensemble::detail
