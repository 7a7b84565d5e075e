// The one shape of every server-streaming call (Subscribe, SendFile): a
// grpc::ClientReadReactor that reads until the daemon ends the call, hands each message to
// the derived class, and reports the final status exactly once. The public handles
// (EventSubscription, FileTransfer) derive from it privately, so users never see the
// reactor's Start* methods.
//
// Lifetime, as for Service: two references keep the object alive, the user's (the
// shared_ptr handed out; its deleter calls release_from_owner) and the stream's (dropped at
// the very end of OnDone). Whichever goes last deletes. The call is registered in the
// Client's CallRegistry from just before StartCall until the end of OnDone, so destroying
// the Client cancels it and waits for it.
//
// Reactions: only OnReadDone starts operations (the next read), and the first read is
// started before StartCall, so no hold is needed: gRPC cannot run OnDone while a read is
// pending, and no operation is ever started from outside a reaction.
#pragma once

#include <ensemble/client_options.hpp>
#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/connection.hpp>
#include <ensemble/detail/unary.hpp>
#include <ensemble/detail/wire_check.hpp>
#include <ensemble/errors.hpp>

#include <grpcpp/client_context.h>
#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace ensemble::detail {

template <class Response>
class ReadStream : public grpc::ClientReadReactor<Response>, private LiveCall {
 public:
  ReadStream(const ReadStream&) = delete;
  ReadStream& operator=(const ReadStream&) = delete;

  // Any thread, any number of times, also after the end (then it does nothing). The call
  // ends with CANCELLED unless it had already ended.
  void cancel() noexcept {
    std::lock_guard lock(context_mu_);
    if (context_) context_->TryCancel();
  }

  // Blocks until OnDone has run (and with it the derived class's on_end) and returns the
  // final status; by then the stream's callbacks have been destroyed. Throws Error from
  // inside one of this stream's own callbacks, where the end cannot arrive until the
  // callback returns (it would wait forever).
  grpc::Status wait() const {
    refuse_inside_own_callback("wait()");
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return finished_; });
    return status_;
  }

  // The same with a limit; nullopt when the stream has not ended within `timeout` (one too
  // long for the clock: no limit, as wait(); zero or negative: a look without waiting).
  std::optional<grpc::Status> wait_for(std::chrono::milliseconds timeout) const {
    refuse_inside_own_callback("wait_for()");
    std::unique_lock lock(mu_);
    if (!detail::wait_up_to(changed_, lock, timeout, [&] { return finished_; })) return std::nullopt;
    return status_;
  }

  // True once the stream has ended (wait() would not block).
  bool done() const {
    std::lock_guard lock(mu_);
    return finished_;
  }

 protected:
  // `request` is the call's one request, checked here (wire_check.hpp) so that no
  // server-streaming call can skip the check; a bad one throws before anything exists.
  template <class Request>
  ReadStream(std::shared_ptr<Connection> conn, const char* call, const Request& request)
      : conn_(std::move(conn)) {
    check_outgoing(request, call, conn_->max_message_bytes);
  }
  ~ReadStream() override = default;

  // Registers the call and starts it. `bind(async_stub, context, reactor)` calls the
  // generated stub's callback method, e.g. async->Subscribe(ctx, &request_, reactor).
  // Canonical order (gRPC's callback examples): bind, first read, then StartCall.
  template <class Bind>
  void start(const CallOptions& options, Bind bind) {
    apply_call_options(*context_, options);
    if (!conn_->calls.add(this)) {
      // Only a live Client starts streams, so this does not happen; if it did, the handle
      // must still report an end rather than hang its release.
      std::lock_guard lock(mu_);
      status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the Client was destroyed");
      finished_ = true;
      refs_.fetch_sub(1, std::memory_order_acq_rel);  // no stream will drop its reference
      return;
    }
    bind(conn_->stub->async(), &*context_, static_cast<grpc::ClientReadReactor<Response>*>(this));
    this->StartRead(&incoming_);
    this->StartCall();
  }

  // One message, on a gRPC thread, inside a reaction. The next read starts only when this
  // returns, so a slow on_message slows the stream down (the daemon then drops events).
  virtual void on_message(Response& message) = 0;
  // Once, in OnDone, before wait() is released: the last thing this stream reports.
  virtual void on_end(const grpc::Status& status) = 0;
  // Right after on_end: destroy every user callable the derived class holds, so none is
  // destroyed after wait(), the release or ~Client has returned.
  virtual void drop_callbacks() noexcept = 0;

  // The user's shared_ptr is gone: cancel, and wait for the end unless this is a gRPC
  // callback thread (there the end cannot come before this reaction returns).
  void release_from_owner() {
    cancel();
    if (!on_callback_thread()) wait();
    unref();
  }

  const std::shared_ptr<Connection>& connection() const noexcept { return conn_; }

 private:
  void OnReadDone(bool ok) final {
    CallbackScope scope(this);
    if (!ok) return;  // the stream has ended; OnDone follows
    on_message(incoming_);
    this->StartRead(&incoming_);  // also after a cancel: gRPC answers with ok == false
  }

  void OnDone(const grpc::Status& status) final {
    CallbackScope scope(this);
    on_end(status);
    drop_callbacks();
    {
      // The context holds the channel, which the Client releases on its own thread once
      // the registry is idle: drop it before leaving the registry.
      std::lock_guard lock(context_mu_);
      context_.reset();
    }
    {
      // Ending and leaving the registry happen under one lock, so both views agree: once
      // wait() or done() says "ended" the Client no longer counts the call, and once the
      // Client's destructor has seen it leave, done() is true. (Lock order mu_ -> registry;
      // the registry never calls back into code that takes mu_.)
      std::lock_guard lock(mu_);
      status_ = status;
      finished_ = true;
      conn_->calls.remove(this);
      changed_.notify_all();
    }
    unref();  // the stream's reference; may delete this
  }

  void cancel_call() noexcept final { cancel(); }

  void refuse_inside_own_callback(const char* what) const {
    if (inside_callback_of(this)) {
      throw Error(std::string(what) +
                  " called from inside one of this stream's own callbacks: the stream cannot "
                  "end until that callback returns. cancel() and return instead");
    }
  }

  void unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  const std::shared_ptr<Connection> conn_;
  // Never held while calling into the registry (close_and_cancel_all() calls cancel() under its lock).
  std::mutex context_mu_;
  std::optional<grpc::ClientContext> context_{std::in_place};
  Response incoming_;  // gRPC reads into it; must stay put until OnReadDone

  std::atomic<int> refs_{2};  // the user's shared_ptr + the live stream
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  bool finished_ = false;
  grpc::Status status_;
};

}  // namespace ensemble::detail
