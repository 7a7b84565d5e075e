// One thread that runs callbacks at deadlines: connection requests and file offers that
// nobody answers time out, without parking a gRPC thread in a sleep (callback-API reactions
// must never block).
#pragma once

#include <ensemble/detail/deadline.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

namespace ensemble::testing::detail {

class Timer {
 public:
  using Id = std::uint64_t;

  Timer() : thread_([this] { run(); }) {}
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer() { stop(); }

  // Runs `fn` on the timer thread after `delay`, unless cancelled first. After stop(),
  // nothing more runs. A delay of 100 years or more (ensemble::detail::kForever) is never.
  Id after(std::chrono::steady_clock::duration delay, std::function<void()> fn) {
    std::lock_guard lock(mu_);
    const Id id = ++next_id_;
    if (delay >= ensemble::detail::kForever) return id;
    const auto when = std::chrono::steady_clock::now() + delay;
    ids_[id] = tasks_.emplace(when, Task{id, std::move(fn)});
    cv_.notify_one();
    return id;
  }

  // A time limit: `fn` after `limit`, or nothing (Id 0, which cancel() ignores) when the
  // limit is zero, meaning "no limit" as everywhere in the double's options.
  Id limit(std::chrono::milliseconds limit, std::function<void()> fn) {
    return limit.count() > 0 && limit < ensemble::detail::kForever ? after(limit, std::move(fn)) : Id{0};
  }

  void cancel(Id id) {
    std::lock_guard lock(mu_);
    if (auto it = ids_.find(id); it != ids_.end()) {
      tasks_.erase(it->second);
      ids_.erase(it);
    }
  }

  // Drops pending callbacks and joins the thread; idempotent.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      tasks_.clear();
      ids_.clear();
      cv_.notify_one();
    }
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

 private:
  struct Task {
    Id id;
    std::function<void()> fn;
  };
  using Tasks = std::multimap<std::chrono::steady_clock::time_point, Task>;

  void run() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      if (tasks_.empty()) {
        cv_.wait(lock);
        continue;
      }
      const auto first = tasks_.begin();
      if (first->first > std::chrono::steady_clock::now()) {
        // By value: wait_until reads the time again after waking, when cancel() may have
        // erased the node that holds it.
        cv_.wait_until(lock, std::chrono::steady_clock::time_point(first->first));
        continue;
      }
      auto fn = std::move(first->second.fn);
      ids_.erase(first->second.id);
      tasks_.erase(first);
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  Tasks tasks_;
  std::map<Id, Tasks::iterator> ids_;
  Id next_id_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after every other member exists
};

}  // namespace ensemble::testing::detail
