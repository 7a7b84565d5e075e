// Marks the threads on which gRPC is running one of our reactions (a handler dispatch, a
// unary completion). Blocking on a stream's end from such a thread would wait for a callback
// that cannot run until this one returns, and destroying the last gRPC channel there can
// deadlock; the code that would do either asks here first.
#pragma once

namespace ensemble::detail {

inline thread_local int callback_depth = 0;

inline bool on_callback_thread() noexcept { return callback_depth > 0; }

// RAII marker for the duration of one reaction.
class CallbackScope {
 public:
  CallbackScope() noexcept { ++callback_depth; }
  ~CallbackScope() { --callback_depth; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
};

}  // namespace ensemble::detail
