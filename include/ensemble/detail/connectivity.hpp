// ClientOptions::on_connectivity: a client interceptor reads every call's outcome, and a
// monitor turns those outcomes into connected / lost / reconnected and delivers them.
//
// No thread of our own: the user's callback runs from a gRPC alarm (a timer of gRPC's that
// fires on one of gRPC's threads), set for "now" whenever a change is queued and nothing is
// being delivered. So the callback never runs inside the thread of a blocking call (whose
// interceptor hooks run on that thread), changes are delivered one at a time and in order,
// and ~Client can wait for the delivery in progress and cancel the one not yet started.
#pragma once

#include <ensemble/connectivity.hpp>
#include <ensemble/detail/callback_thread.hpp>

#include <grpcpp/alarm.h>
#include <grpcpp/support/client_interceptor.h>
#include <grpcpp/support/interceptor.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace ensemble::detail {

class ConnectivityMonitor : public std::enable_shared_from_this<ConnectivityMonitor> {
 public:
  explicit ConnectivityMonitor(std::function<void(Connectivity)> callback)
      : callback_(std::move(callback)) {}

  // A call heard from the daemon (a message, or a status only the daemon sends).
  void reached() { change_to(true); }
  // A call ended UNAVAILABLE.
  void unreachable() { change_to(false); }

  // The Client's end: nothing is reported any more, a delivery not yet started never
  // starts, and (unless `wait` is false: the Client is going on a gRPC thread, perhaps
  // inside this very callback) one under way is waited for. Afterwards the callback has
  // been destroyed, or (not waiting) will be by the delivery under way.
  void close(bool wait) {
    std::unique_ptr<grpc::Alarm> alarm;
    std::function<void(Connectivity)> callback;
    {
      std::unique_lock lock(mu_);
      closed_ = true;
      pending_.clear();
      alarm = std::move(alarm_);
      if (!delivering_) callback = std::move(callback_);
    }
    // Cancelled outside mu_: its callback (run with ok == false) takes mu_.
    if (alarm) alarm->Cancel();
    if (!wait) return;
    std::unique_lock lock(mu_);
    idle_.wait(lock, [this] { return !delivering_; });
  }

 private:
  enum class Known { nothing, reachable, unreachable };

  void change_to(bool reachable) {
    std::lock_guard lock(mu_);
    if (closed_) return;
    const Known now = reachable ? Known::reachable : Known::unreachable;
    if (now == known_) return;
    if (reachable) {
      pending_.push_back(ever_reached_ ? Connectivity::reconnected : Connectivity::connected);
      ever_reached_ = true;
    } else if (known_ == Known::reachable) {
      pending_.push_back(Connectivity::lost);
    }
    known_ = now;
    if (pending_.empty() || delivering_) return;
    delivering_ = true;
    // A fresh alarm each time: the previous one has fired and its callback is done with it
    // (or, finishing, holds a reference of its own in gRPC).
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(std::chrono::system_clock::now(),
                [weak = weak_from_this()](bool /*fired*/) {
                  if (auto self = weak.lock()) self->deliver();
                });
  }

  // On a gRPC thread, from the alarm: delivers what is queued, one change at a time.
  void deliver() {
    CallbackScope scope(this);
    std::unique_lock lock(mu_);
    while (!closed_ && !pending_.empty()) {
      const Connectivity change = pending_.front();
      pending_.pop_front();
      lock.unlock();
      call_user_callback({}, "the connectivity", "callback (ClientOptions::on_connectivity)", callback_, change);
      lock.lock();
    }
    delivering_ = false;
    // Closed meanwhile: close() left the callback to us; it goes before the end is published.
    std::function<void(Connectivity)> callback;
    if (closed_) callback = std::move(callback_);
    lock.unlock();
    callback = nullptr;
    // Notified under the lock, so a waiting close() cannot return (and the Client free the
    // monitor) between our unlock and our notify.
    lock.lock();
    idle_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable idle_;
  std::function<void(Connectivity)> callback_;  // read by deliver() outside mu_ (delivering_)
  Known known_ = Known::nothing;
  bool ever_reached_ = false;
  std::deque<Connectivity> pending_;
  std::unique_ptr<grpc::Alarm> alarm_;
  bool delivering_ = false;  // an alarm is set or its deliver() runs
  bool closed_ = false;
};

// Reads each call's outcome for the monitor. A received message means the daemon answered;
// so does a status, except the ones gRPC makes up on the client's side (UNAVAILABLE when it
// could not connect or the connection broke, CANCELLED, DEADLINE_EXCEEDED): UNAVAILABLE
// is the one that says the daemon is out of reach.
class ConnectivityInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ConnectivityInterceptor(std::shared_ptr<ConnectivityMonitor> monitor)
      : monitor_(std::move(monitor)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using Hook = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_MESSAGE) && methods->GetRecvMessage() != nullptr &&
        !reached_.exchange(true)) {
      monitor_->reached();
    }
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_STATUS)) {
      switch (methods->GetRecvStatus()->error_code()) {
        case grpc::StatusCode::UNAVAILABLE: monitor_->unreachable(); break;
        case grpc::StatusCode::CANCELLED:
        case grpc::StatusCode::DEADLINE_EXCEEDED: break;
        default:
          if (!reached_.exchange(true)) monitor_->reached();
          break;
      }
    }
    methods->Proceed();
  }

 private:
  std::shared_ptr<ConnectivityMonitor> monitor_;
  // This call has reported reaching the daemon already. Atomic: a stream's read and finish
  // batches may run their hooks on two threads at once.
  std::atomic<bool> reached_{false};
};

class ConnectivityInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit ConnectivityInterceptorFactory(std::shared_ptr<ConnectivityMonitor> monitor)
      : monitor_(std::move(monitor)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new ConnectivityInterceptor(monitor_);
  }

 private:
  std::shared_ptr<ConnectivityMonitor> monitor_;
};

}  // namespace ensemble::detail
