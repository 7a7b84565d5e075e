// Marks the threads on which gRPC is running one of our reactions (a handler dispatch, a
// unary completion). Blocking on a stream's end from such a thread would wait for a callback
// that cannot run until this one returns, and destroying the last gRPC channel there can
// deadlock; the code that would do either asks here first.
#pragma once

#include <cstdio>
#include <exception>
#include <string_view>
#include <utility>

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

// Runs a user callback from a reaction. An exception must not unwind into gRPC, which would
// end the process, so it is reported on stderr as "ensemble: <subject> <role> threw: <why>"
// and the reaction carries on.
template <class Callback, class... Args>
void call_user_callback(std::string_view subject, std::string_view role, Callback& callback,
                        Args&&... args) noexcept {
  try {
    callback(std::forward<Args>(args)...);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ensemble: %.*s %.*s threw: %s\n", static_cast<int>(subject.size()),
                 subject.data(), static_cast<int>(role.size()), role.data(), e.what());
  } catch (...) {
    std::fprintf(stderr, "ensemble: %.*s %.*s threw\n", static_cast<int>(subject.size()),
                 subject.data(), static_cast<int>(role.size()), role.data());
  }
}

}  // namespace ensemble::detail
