// The read-ahead queue between a service's read loop and whoever consumes its events: the
// service's handlers (one "drainer" at a time, on the reading gRPC thread or on the user's
// executor) or next_event() (pull mode). Service (service.hpp) owns one through a shared_ptr
// so that a drain task posted to an executor can outlive the service without touching it.
//
// Why a queue at all: the daemon keeps 256 events per stream and drops the oldest silently.
// Reading ahead while a handler works moves that loss here, where it is bounded by
// ServiceOptions::event_queue_capacity, follows the same policy (oldest first) and is counted.
//
// Rules kept here:
//   - at most one drainer at a time (draining_ under mu_), so handlers of one service never
//     run concurrently and run in queue (= daemon) order;
//   - push() never blocks and never runs user code; it only says whether the caller must
//     start a drainer;
//   - shut() is the end: afterwards no deliver() call starts, and it waits for one that is
//     running on another thread, so nothing of the user's runs after the service ended.
#pragma once

#include <ensemble/detail/deadline.hpp>
#include <ensemble/events.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

namespace ensemble::detail {

class EventQueue {
 public:
  // Called by the drainer for each event / for each coalesced loss report. Set once, before
  // the first push; they capture the Service, which outlives every call (see shut()).
  struct Sink {
    std::function<void(InboundEvent&)> deliver;
    std::function<void(std::uint64_t)> dropped;
  };

  EventQueue(std::size_t capacity, std::size_t max_bytes) : capacity_(capacity), max_bytes_(max_bytes) {}

  // What an event holds, roughly: its strings and the struct. Enough to bound memory when
  // events are large (an RPC service's payloads), not an exact allocator count.
  static std::size_t weight(const InboundEvent& event) {
    return std::visit(
        [](const auto& e) -> std::size_t {
          using E = std::decay_t<decltype(e)>;
          std::size_t n = sizeof(E);
          if constexpr (std::is_same_v<E, ChatMessage>) n += e.from_addr.size() + e.text.size();
          else if constexpr (std::is_same_v<E, ConnectionRequest>) n += e.request_id.size() + e.from_addr.size();
          else if constexpr (std::is_same_v<E, RpcMessage>) n += e.from_addr.size() + e.payload.size();
          else if constexpr (std::is_same_v<E, PeerIntroduction>)
            n += e.from_service_addr.size() + e.peer_addr.size() + e.session_id.size() + e.role_hint.size() +
                 e.payload.size();
          else if constexpr (std::is_same_v<E, UnknownEvent>) n += e.type.size() + e.payload.size() + e.problem.size();
          else if constexpr (std::is_same_v<E, ServiceError>) n += e.message.size() + e.code.size() + e.from_addr.size();
          return n;
        },
        event);
  }

  // Handler mode (a drainer calls the sink) or pull mode (next() hands events out). Fixed at
  // the service's start(), before the first push.
  void set_mode(bool pull, Sink sink) {
    std::lock_guard lock(mu_);
    pull_ = pull;
    sink_ = std::move(sink);
  }
  bool pull() const {
    std::lock_guard lock(mu_);
    return pull_;
  }

  // Queues one event, dropping the oldest queued ones while it would not fit (in count or
  // bytes; the newest is always kept). Returns true when the caller must start a drainer
  // (handler mode, none running or scheduled).
  bool push(InboundEvent event) {
    const std::size_t w = weight(event);
    std::lock_guard lock(mu_);
    if (shut_) return false;
    while (!queue_.empty() && (queue_.size() >= capacity_ || bytes_ + w > max_bytes_)) {
      bytes_ -= weight(queue_.front());
      queue_.pop_front();
      ++dropped_total_;
      ++dropped_unreported_;
    }
    bytes_ += w;
    queue_.push_back(std::move(event));
    changed_.notify_all();
    if (pull_ || draining_) return false;
    draining_ = true;
    return true;
  }

  // Runs handlers until the queue is empty (or the end). Only the caller that push() told to
  // start a drainer calls this, so one runs at a time.
  void drain() {
    std::unique_lock lock(mu_);
    running_ = true;
    runner_ = std::this_thread::get_id();
    while (!shut_) {
      if (discard_) clear_locked();
      if (dropped_unreported_ > 0) {
        const auto n = std::exchange(dropped_unreported_, 0);
        lock.unlock();
        if (sink_.dropped) sink_.dropped(n);
        lock.lock();
        continue;
      }
      if (queue_.empty()) break;
      InboundEvent event = pop_locked();
      lock.unlock();
      sink_.deliver(event);
      lock.lock();
    }
    running_ = false;
    draining_ = false;
    changed_.notify_all();
  }

  // A drain task an executor dropped or could not run: let the next push start another.
  void abandon_drain() {
    std::lock_guard lock(mu_);
    draining_ = false;
  }

  // From now on, drop what is queued instead of delivering it (the user cancelled).
  void discard() {
    std::lock_guard lock(mu_);
    discard_ = true;
    if (!pull_ && !running_) clear_locked();
  }

  // The service ended for good. In handler mode, what is still queued is discarded (counted)
  // and a drainer running on another thread is waited for, so no handler runs after this
  // returns. In pull mode the queue is left for next_event() to empty.
  void shut() {
    std::unique_lock lock(mu_);
    shut_ = true;
    if (!pull_) {
      clear_locked();
      changed_.wait(lock, [&] { return !running_ || runner_ == std::this_thread::get_id(); });
    }
    changed_.notify_all();
  }

  enum class Pull { event, timeout, ended };
  // Pull mode: the next event, or a coalesced EventsDropped when events were lost before it.
  Pull next(std::chrono::milliseconds timeout, std::optional<InboundEvent>& out) {
    std::unique_lock lock(mu_);
    const bool ready = detail::wait_for(changed_, lock, timeout, [&] {
      return dropped_unreported_ > 0 || !queue_.empty() || shut_;
    });
    if (dropped_unreported_ > 0) {
      out = EventsDropped{std::exchange(dropped_unreported_, 0)};
      return Pull::event;
    }
    if (!queue_.empty()) {
      out = pop_locked();
      return Pull::event;
    }
    return ready ? Pull::ended : Pull::timeout;
  }

  std::uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_total_;
  }
  std::uint64_t discarded() const {
    std::lock_guard lock(mu_);
    return discarded_total_;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return queue_.size();
  }

 private:
  InboundEvent pop_locked() {
    InboundEvent event = std::move(queue_.front());
    queue_.pop_front();
    bytes_ -= weight(event);  // moved-from strings are empty: weigh the moved-to copy
    return event;
  }
  void clear_locked() {
    discarded_total_ += queue_.size();
    queue_.clear();
    bytes_ = 0;
  }

  const std::size_t capacity_;
  const std::size_t max_bytes_;

  mutable std::mutex mu_;
  bool pull_ = false;
  Sink sink_;
  std::condition_variable changed_;
  std::deque<InboundEvent> queue_;
  std::size_t bytes_ = 0;  // sum of weight() over queue_
  bool draining_ = false;  // a drainer is scheduled or running
  bool running_ = false;   // drain() is executing
  std::thread::id runner_;
  bool discard_ = false;
  bool shut_ = false;
  std::uint64_t dropped_total_ = 0;
  std::uint64_t dropped_unreported_ = 0;
  std::uint64_t discarded_total_ = 0;
};

}  // namespace ensemble::detail
