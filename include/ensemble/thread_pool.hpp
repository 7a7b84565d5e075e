/// @file
/// ThreadPool: worker threads you create, for handlers that do slow work (a model call, a
/// database query). Give its executor() to ServiceOptions::executor, with
/// ServiceOptions::max_turns_in_flight up to its size, and a service runs that many turns at
/// once, one peer at a time each (service.hpp, "Where callbacks run").
///
///     ensemble::ThreadPool pool(8);  // eight threads, from here until pool is destroyed
///     auto bot = client.service("bot", {.executor = pool.executor(), .max_turns_in_flight = 8});
///
/// The library starts no thread of its own: these are yours, started by the constructor and
/// joined by the destructor. Declare the pool before the Client and its services, so that it
/// outlives them (a service's last turns run on it).
#pragma once

#include <ensemble/errors.hpp>
#include <ensemble/log.hpp>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ensemble {

/// Worker threads for slow handlers (see the file's overview). Neither copyable nor movable.
class ThreadPool {
 public:
  /// Starts `threads` worker threads (at least 1: 0 is a ConfigError). Tasks run in the order
  /// they were posted, as workers come free.
  explicit ThreadPool(std::size_t threads) : state_(std::make_shared<State>()) {
    if (threads == 0) throw ConfigError("ThreadPool: the number of threads must be at least 1");
    workers_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([state = state_] { state->work(); });
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Runs every task already posted, then joins the threads. A post from then on throws
  /// Error (a service's turns then run on the thread that posted them). Must not run on one
  /// of the pool's own threads.
  ~ThreadPool() {
    {
      std::lock_guard lock(state_->mu);
      state_->stopping = true;
    }
    state_->changed.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  /// Queues `task` for a worker. Any thread. An exception escaping the task goes to the log
  /// sink (log.hpp); the worker goes on. Throws Error once the pool is being destroyed.
  void post(std::function<void()> task) { state_->post(std::move(task)); }

  /// The pool as a ServiceOptions::executor. The function may outlive the pool; posting
  /// through it then throws Error, as post() does.
  std::function<void(std::function<void()>)> executor() const {
    return [state = state_](std::function<void()> task) { state->post(std::move(task)); };
  }

  /// The number of worker threads.
  std::size_t size() const noexcept { return workers_.size(); }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable changed;
    std::deque<std::function<void()>> tasks;
    bool stopping = false;

    void post(std::function<void()> task) {
      {
        std::lock_guard lock(mu);
        if (stopping) throw Error("ThreadPool: posted to a pool that is being destroyed");
        tasks.push_back(std::move(task));
      }
      changed.notify_one();
    }

    void work() {
      for (;;) {
        std::function<void()> task;
        {
          std::unique_lock lock(mu);
          changed.wait(lock, [&] { return stopping || !tasks.empty(); });
          if (tasks.empty()) return;  // stopping, and nothing left
          task = std::move(tasks.front());
          tasks.pop_front();
        }
        try {
          task();
        } catch (const std::exception& e) {
          detail::log(LogLevel::error, std::string("a ThreadPool task threw: ") + e.what());
        } catch (...) {
          detail::log(LogLevel::error, "a ThreadPool task threw");
        }
      }
    }
  };

  std::shared_ptr<State> state_;
  std::vector<std::thread> workers_;
};

}  // namespace ensemble
