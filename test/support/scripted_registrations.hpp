// ScriptedRegistrations: a daemon that answers RegisterService as a test script says, for
// the cases the daemon double does not stage: a daemon that takes the manifest and never
// answers, and one that still holds a name for a stream it lost (ALREADY_EXISTS on the
// re-registration). Its GetStatus never answers until the caller cancels. A real gRPC
// server on a Unix socket, callback API; every other method is UNIMPLEMENTED.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/proto/ensemble.grpc.pb.h>

#include "ensemble_service_base.hpp"

#include <grpcpp/grpcpp.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>

namespace test_support {

class ScriptedRegistrations final : public EnsembleServiceBase {
 public:
  // What the daemon does with one RegisterService call, after reading its manifest.
  enum class Answer {
    registered,      // sends `registered`, then keeps the stream until drop_all() or the client ends it
    silent,          // never answers; ends only when the client cancels
    already_exists,  // ends the call ALREADY_EXISTS, as a daemon still holding the name does
  };

  explicit ScriptedRegistrations(const std::string& socket_path) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ScriptedRegistrations(const ScriptedRegistrations&) = delete;
  ScriptedRegistrations& operator=(const ScriptedRegistrations&) = delete;
  ~ScriptedRegistrations() {
    drop_all();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  // Answers for the next calls, in order; once used up, every call is `registered`.
  void script(std::deque<Answer> answers) {
    std::lock_guard lock(mu_);
    script_ = std::move(answers);
  }

  int attempts() const {
    std::lock_guard lock(mu_);
    return attempts_;
  }

  // Ends every registered stream with UNAVAILABLE, as a daemon that went away.
  void drop_all() {
    std::lock_guard lock(mu_);
    for (Stream* s : live_) s->end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "daemon went away"));
  }

  // The address every registration is given.
  static std::string address() {
    std::array<std::uint8_t, 32> key{};
    key.fill(42);
    return ensemble::address_from_public_key(key);
  }

 private:
  class Stream final
      : public grpc::ServerBidiReactor<ensemble::api::ServiceClientMessage, ensemble::api::ServiceServerMessage> {
   public:
    explicit Stream(ScriptedRegistrations* daemon) : daemon_(daemon) { StartRead(&in_); }

    // Any thread; the first end wins.
    void end(const grpc::Status& status) {
      std::lock_guard lock(mu_);
      if (finished_) return;
      if (write_pending_) {
        end_after_write_ = status;  // Finish waits for the write in flight
        return;
      }
      finished_ = true;
      Finish(status);
    }

   private:
    void OnReadDone(bool ok) override {
      if (!ok) {
        end(grpc::Status::OK);  // the client half-closed or went away
        return;
      }
      if (!answered_) {
        answered_ = true;
        switch (daemon_->next_answer()) {
          case Answer::registered: {
            out_.mutable_registered()->set_address(address());
            out_.mutable_registered()->set_onion(std::string(56, 'a') + ".onion");
            {
              std::lock_guard lock(mu_);
              write_pending_ = true;
            }
            daemon_->add_live(this);
            StartWrite(&out_);
            break;
          }
          case Answer::silent: break;
          case Answer::already_exists:
            end(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "services: service already registered"));
            return;
        }
      }
      StartRead(&in_);
    }

    void OnWriteDone(bool) override {
      std::lock_guard lock(mu_);
      write_pending_ = false;
      if (end_after_write_ && !finished_) {
        finished_ = true;
        Finish(*end_after_write_);
      }
    }

    void OnCancel() override { end(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }

    void OnDone() override {
      daemon_->remove_live(this);
      delete this;
    }

    ScriptedRegistrations* daemon_;
    ensemble::api::ServiceClientMessage in_;
    ensemble::api::ServiceServerMessage out_;
    bool answered_ = false;
    std::mutex mu_;
    bool write_pending_ = false;
    bool finished_ = false;
    std::optional<grpc::Status> end_after_write_;
  };

  // GetStatus that never answers: the call ends when the client cancels it.
  class Unanswered final : public grpc::ServerUnaryReactor {
   public:
    void OnCancel() override { Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }
    void OnDone() override { delete this; }
  };

  grpc::ServerBidiReactor<ensemble::api::ServiceClientMessage, ensemble::api::ServiceServerMessage>*
  RegisterService(grpc::CallbackServerContext*) override {
    return new Stream(this);
  }

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext*, const ensemble::api::GetStatusRequest*,
                                      ensemble::api::GetStatusResponse*) override {
    return new Unanswered;
  }

  Answer next_answer() {
    std::lock_guard lock(mu_);
    ++attempts_;
    if (script_.empty()) return Answer::registered;
    Answer a = script_.front();
    script_.pop_front();
    return a;
  }
  void add_live(Stream* s) {
    std::lock_guard lock(mu_);
    live_.insert(s);
  }
  void remove_live(Stream* s) {
    std::lock_guard lock(mu_);
    live_.erase(s);
  }

  mutable std::mutex mu_;
  std::deque<Answer> script_;
  std::set<Stream*> live_;
  int attempts_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace test_support
