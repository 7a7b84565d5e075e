// What a Client shares with the services and calls it started: the channel, the stub, the
// token, and a registry of live calls so that destroying the Client can cancel them and wait.
//
// Who releases the channel: the Client, on the thread that destroys it. Every call leaves
// the registry only after it has dropped everything that refers to the channel (its
// ClientContext), so once the registry is idle the Client holds the last reference and
// releases it itself: no channel is destroyed on a gRPC callback thread (which can
// deadlock) and no thread is started for it. Services and handles that outlive the Client
// keep the Connection (its registry says "closed"), not the channel.
#pragma once

#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/connectivity.hpp>
#include <ensemble/proto/ensemble.grpc.pb.h>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

namespace ensemble::detail {

// Something cancellable that is running on the channel (a service stream, a unary call).
class LiveCall {
 public:
  virtual void cancel_call() noexcept = 0;

 protected:
  ~LiveCall() = default;
};

class CallRegistry {
 public:
  // False once the Client has shut down: nothing new may start on its channel.
  [[nodiscard]] bool add(LiveCall* call) {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    calls_.insert(call);
    return true;
  }

  // The last thing a finishing call does with the registry. Notifies under the lock so the
  // waiter cannot destroy the registry between our unlock and our notify.
  void remove(LiveCall* call) {
    std::lock_guard lock(mu_);
    calls_.erase(call);
    if (calls_.empty()) idle_.notify_all();
  }

  // The Client is going: refuse new calls and cancel the running ones.
  void close_and_cancel_all() {
    std::lock_guard lock(mu_);
    closed_ = true;
    for (LiveCall* call : calls_) call->cancel_call();
  }


  void wait_idle() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return calls_.empty(); });
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return calls_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable idle_;
  std::unordered_set<LiveCall*> calls_;
  bool closed_ = false;
};

// channel and stub are used only by a call that is in the registry (between a successful
// calls.add() and its calls.remove()), so the Client may release them once the registry is
// closed and idle.
struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<api::EnsembleService::Stub> stub;
  std::string service_token;
  CallRegistry calls;
  // ClientOptions::max_message_bytes: the check_outgoing() limit (wire_check.hpp).
  std::size_t max_message_bytes = 0;
  // The Unix socket's path (empty over TCP): what failure.hpp examines when a call fails.
  std::string socket_file{};
  // ClientOptions::on_connectivity, when set: its interceptor is on the channel.
  std::shared_ptr<ConnectivityMonitor> connectivity{};

  // The Client's end: refuse new calls, cancel the running ones, wait for them to let go of
  // the channel, and release it on this thread. From a gRPC callback thread (a Client
  // destroyed inside a handler) the calls cannot end before that handler returns, so it
  // only cancels; the channel then goes with the last reference to the Connection.
  void shut_down() {
    calls.close_and_cancel_all();
    const bool on_grpc_thread = on_callback_thread();
    // What the cancelled calls end with says nothing about the daemon: no more reports.
    if (connectivity) connectivity->close(/*wait=*/!on_grpc_thread);
    if (on_grpc_thread) return;
    calls.wait_idle();
    stub.reset();
    channel.reset();
  }
};

inline std::shared_ptr<Connection> make_connection(std::shared_ptr<grpc::Channel> channel,
                                                   std::string service_token,
                                                   std::size_t max_message_bytes = 0,
                                                   std::string socket_file = {}) {
  auto* raw = new Connection{channel, api::EnsembleService::NewStub(channel),
                             std::move(service_token), {}, max_message_bytes, std::move(socket_file)};
  return std::shared_ptr<Connection>(raw, [](Connection* c) {
    // Only when the Client was destroyed on a gRPC callback thread does the channel get
    // here; releasing it on such a thread can deadlock, so it goes on a thread of its own.
    // That is the one library thread that can outlive a Client (README, "Threading and
    // lifetimes").
    if (c->channel && on_callback_thread()) {
      std::thread([c] { delete c; }).detach();
    } else {
      delete c;
    }
  });
}

}  // namespace ensemble::detail
