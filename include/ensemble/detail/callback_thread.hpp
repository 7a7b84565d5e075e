// Marks the threads on which gRPC is running one of our reactions (a handler dispatch, a
// unary completion). Blocking on a stream's end from such a thread would wait for a callback
// that cannot run until this one returns, and destroying the last gRPC channel there can
// deadlock; the code that would do either asks here first.
#pragma once

#include <ensemble/detail/escape.hpp>
#include <ensemble/log.hpp>

#include <exception>
#include <string>
#include <string_view>
#include <utility>

namespace ensemble::detail {

inline thread_local int callback_depth = 0;
// The object (a service, a stream) whose reaction this thread is running, if it said so.
inline thread_local const void* callback_owner = nullptr;

inline bool on_callback_thread() noexcept { return callback_depth > 0; }

// True while this thread runs a reaction of `owner`, its user callbacks included. A blocking
// call that waits for `owner` to end asks here: from inside, the end cannot come until the
// reaction returns, so it would wait forever.
inline bool inside_callback_of(const void* owner) noexcept {
  return owner != nullptr && callback_owner == owner;
}

// RAII marker for the duration of one reaction, naming the object it belongs to.
class CallbackScope {
 public:
  explicit CallbackScope(const void* owner = nullptr) noexcept : previous_owner_(callback_owner) {
    ++callback_depth;
    callback_owner = owner;
  }
  ~CallbackScope() {
    --callback_depth;
    callback_owner = previous_owner_;
  }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;

 private:
  const void* previous_owner_;
};

inline void log_what_threw(LogSubject about, std::string_view subject, std::string_view role,
                           std::string_view why) noexcept {
  try {
    std::string message;
    message.append(subject).append(" ").append(role).append(" threw");
    // The exception's text may quote a peer's words: escaped, so the log line stays one line.
    if (!why.empty()) message.append(": ").append(escaped_text(why));
    log(LogLevel::error, message, about);
  } catch (...) {  // no memory for the message: nothing better to do
  }
}

// Runs a user callback from a reaction. An exception must not unwind into gRPC, which would
// end the process, so it is logged ("<subject> <role> threw: <why>", log.hpp, with `about`
// as the record's service and call) and the reaction carries on.
template <class Callback, class... Args>
void call_user_callback(LogSubject about, std::string_view subject, std::string_view role,
                        Callback& callback, Args&&... args) noexcept {
  try {
    callback(std::forward<Args>(args)...);
  } catch (const std::exception& e) {
    log_what_threw(about, subject, role, e.what());
  } catch (...) {
    log_what_threw(about, subject, role, {});
  }
}

}  // namespace ensemble::detail
