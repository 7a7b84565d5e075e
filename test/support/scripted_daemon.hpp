// A tiny gRPC server that plays the real daemon's edge behaviour on cue, where the daemon
// double cannot (yet): RegisterService answering UNIMPLEMENTED while "Tor bootstraps" and
// then registering, `registered` held back (the onion descriptor not published yet),
// GetStatus tor_state switching from "bootstrapping" to "ready", and Subscribe sending its
// response headers only with its first event, as grpc-go does. No auth; Unix socket only.
//
// Everything the handlers decide is read from atomics a test flips at runtime. Handlers
// run on gRPC threads and contain no Catch2 assertions; they only record.
#pragma once

#include <ensemble/proto/ensemble.grpc.pb.h>

#include "ensemble_service_base.hpp"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace test_support {

class ScriptedDaemon final : public EnsembleServiceBase {
 public:
  // false: RegisterService is UNIMPLEMENTED "service registry not configured on this daemon".
  std::atomic<bool> registry_ready{true};
  // false: the manifest is read but `registered` is never sent (a slow descriptor upload).
  std::atomic<bool> answer_registration{true};
  std::atomic<int> register_calls{0};

  explicit ScriptedDaemon(const std::string& socket_path) : ScriptedDaemon("unix:" + socket_path, false) {}

  // Listens on `uri` ("unix:/path" or "127.0.0.1:0"; tcp_port() tells the port bound).
  // permit_pings: unlike the daemon, take client pings at any rate (no GOAWAY
  // "too_many_pings"), so a test can watch many keepalive pings on a quiet stream.
  ScriptedDaemon(const std::string& uri, bool permit_pings) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(uri, grpc::InsecureServerCredentials(), &tcp_port_);
    if (permit_pings) {
      builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 0);
      builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    }
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }

  int tcp_port() const { return tcp_port_; }
  ~ScriptedDaemon() override { stop(); }

  void stop() {
    if (!server_) return;
    {
      std::lock_guard lock(mu_);
      for (auto* s : streams_) s->end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "daemon stopping"));
      for (auto* s : subscribers_) s->end();
    }
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    server_.reset();
  }

  void set_tor_state(std::string state) {
    std::lock_guard lock(mu_);
    tor_state_ = std::move(state);
  }

  // Queued for every current and later subscriber, in order.
  void publish(std::string type, std::string payload) {
    std::lock_guard lock(mu_);
    events_.emplace_back(type, payload);
    for (auto* s : subscribers_) s->push(type, payload);
  }

  // Ends every open RegisterService stream with `status` (a daemon restart, seen from one
  // stream).
  void end_streams(grpc::Status status) {
    std::lock_guard lock(mu_);
    for (auto* s : streams_) s->end(status);
  }

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx, const ensemble::api::GetStatusRequest*,
                                      ensemble::api::GetStatusResponse* response) override {
    {
      std::lock_guard lock(mu_);
      response->set_tor_state(tor_state_);
    }
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<ensemble::api::DaemonEvent>* Subscribe(grpc::CallbackServerContext*,
                                                                   const ensemble::api::SubscribeRequest*) override {
    auto* s = new Subscriber(this);
    std::lock_guard lock(mu_);
    subscribers_.push_back(s);
    for (auto& [type, payload] : events_) s->push(type, payload);
    return s;
  }

  grpc::ServerBidiReactor<ensemble::api::ServiceClientMessage, ensemble::api::ServiceServerMessage>*
  RegisterService(grpc::CallbackServerContext*) override {
    ++register_calls;
    auto* s = new Stream(this);
    if (!registry_ready) {
      s->end(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "service registry not configured on this daemon"));
      return s;
    }
    std::lock_guard lock(mu_);
    streams_.push_back(s);
    return s;
  }

 private:
  // Headers go out with the first Write (no StartSendInitialMetadata), as grpc-go does.
  class Subscriber final : public grpc::ServerWriteReactor<ensemble::api::DaemonEvent> {
   public:
    explicit Subscriber(ScriptedDaemon* d) : d_(d) {}
    // Callers hold d_->mu_.
    void push(const std::string& type, const std::string& payload) {
      ensemble::api::DaemonEvent ev;
      ev.set_type(type);
      ev.set_payload(payload);
      queue_.push_back(std::move(ev));
      if (!writing_ && !ended_) write_next();
    }
    void end() {
      if (ended_) return;
      ended_ = true;
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "daemon stopping"));
    }

   private:
    void write_next() {
      writing_ = true;
      current_ = std::move(queue_.front());
      queue_.pop_front();
      StartWrite(&current_);
    }
    void OnWriteDone(bool ok) override {
      std::lock_guard lock(d_->mu_);
      writing_ = false;
      if (!ok) return;
      if (!queue_.empty() && !ended_) write_next();
    }
    void OnCancel() override {
      std::lock_guard lock(d_->mu_);
      if (!ended_) {
        ended_ = true;
        Finish(grpc::Status::CANCELLED);
      }
    }
    void OnDone() override {
      {
        std::lock_guard lock(d_->mu_);
        std::erase(d_->subscribers_, this);
      }
      delete this;
    }
    ScriptedDaemon* d_;
    std::deque<ensemble::api::DaemonEvent> queue_;
    ensemble::api::DaemonEvent current_;
    bool writing_ = false;
    bool ended_ = false;
  };

  class Stream final
      : public grpc::ServerBidiReactor<ensemble::api::ServiceClientMessage, ensemble::api::ServiceServerMessage> {
   public:
    explicit Stream(ScriptedDaemon* d) : d_(d) { StartRead(&in_); }
    // Callers hold d_->mu_ (or own the stream exclusively).
    void end(const grpc::Status& status) {
      if (ended_) return;
      ended_ = true;
      Finish(status);
    }

   private:
    void OnReadDone(bool ok) override {
      std::lock_guard lock(d_->mu_);
      if (!ok || ended_) {
        if (!ended_) {
          ended_ = true;
          Finish(grpc::Status::OK);
        }
        return;
      }
      if (in_.has_manifest() && d_->answer_registration) {
        out_.mutable_registered()->set_address("Escripted");
        out_.mutable_registered()->set_onion("scripted.onion");
        StartWrite(&out_);
      }
      StartRead(&in_);
    }
    void OnWriteDone(bool) override {}
    void OnDone() override {
      {
        std::lock_guard lock(d_->mu_);
        std::erase(d_->streams_, this);
      }
      delete this;
    }
    ScriptedDaemon* d_;
    ensemble::api::ServiceClientMessage in_;
    ensemble::api::ServiceServerMessage out_;
    bool ended_ = false;
  };

  std::mutex mu_;
  std::string tor_state_ = "ready";
  std::vector<std::pair<std::string, std::string>> events_;
  std::vector<Subscriber*> subscribers_;
  std::vector<Stream*> streams_;
  int tcp_port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace test_support
