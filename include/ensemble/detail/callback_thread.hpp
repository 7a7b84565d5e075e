// Marks the threads on which gRPC is running one of our reactions (a handler dispatch, a
// unary completion). Blocking on a stream's end from such a thread would wait for a callback
// that cannot run until this one returns, and destroying the last gRPC channel there can
// deadlock; the code that would do either asks here first.
#pragma once

#include <ensemble/log.hpp>

#include <exception>
#include <string>
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

inline void log_what_threw(std::string_view subject, std::string_view role,
                           std::string_view why) noexcept {
  try {
    std::string message;
    message.append(subject).append(" ").append(role).append(" threw");
    if (!why.empty()) message.append(": ").append(why);
    log(LogLevel::error, message);
  } catch (...) {  // no memory for the message: nothing better to do
  }
}

// Runs a user callback from a reaction. An exception must not unwind into gRPC, which would
// end the process, so it is logged ("<subject> <role> threw: <why>", log.hpp) and the
// reaction carries on.
template <class Callback, class... Args>
void call_user_callback(std::string_view subject, std::string_view role, Callback& callback,
                        Args&&... args) noexcept {
  try {
    callback(std::forward<Args>(args)...);
  } catch (const std::exception& e) {
    log_what_threw(subject, role, e.what());
  } catch (...) {
    log_what_threw(subject, role, {});
  }
}

}  // namespace ensemble::detail
