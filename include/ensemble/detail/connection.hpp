// What a Client shares with the services and calls it started: the channel, the stub, the
// token, and a registry of live calls so that destroying the Client can cancel them and wait.
// Services and in-flight calls hold a shared_ptr to it, so the channel outlives every call
// on it; when the last holder lets go on a gRPC callback thread, the channel is destroyed on
// a thread of its own (destroying it on a callback thread can deadlock).
#pragma once

#include <ensemble/detail/callback_thread.hpp>
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
  void add(LiveCall* call) {
    std::lock_guard lock(mu_);
    calls_.insert(call);
  }

  // The last thing a finishing call does with the registry. Notifies under the lock so the
  // waiter cannot destroy the registry between our unlock and our notify.
  void remove(LiveCall* call) {
    std::lock_guard lock(mu_);
    calls_.erase(call);
    if (calls_.empty()) idle_.notify_all();
  }

  void cancel_all() {
    std::lock_guard lock(mu_);
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
};

struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<api::EnsembleService::Stub> stub;
  std::string service_token;
  CallRegistry calls;
  // ClientOptions::max_message_bytes: the check_outgoing() limit (wire_check.hpp).
  std::size_t max_message_bytes = 0;
};

inline std::shared_ptr<Connection> make_connection(std::shared_ptr<grpc::Channel> channel,
                                                   std::string service_token,
                                                   std::size_t max_message_bytes = 0) {
  auto* raw = new Connection{channel, api::EnsembleService::NewStub(channel),
                             std::move(service_token), {}, max_message_bytes};
  return std::shared_ptr<Connection>(raw, [](Connection* c) {
    if (on_callback_thread()) {
      std::thread([c] { delete c; }).detach();
    } else {
      delete c;
    }
  });
}

}  // namespace ensemble::detail
