// A gRPC server that says, on cue, what the daemon double never says: GetStatus and
// RegisterService answers whose status message is as long as a test wants (a daemon's long
// error text travels in HTTP/2 trailers), and after `registered` any ServiceServerMessage
// bytes at all, in order: events, daemon errors, and message kinds this version of the
// library does not know (a newer daemon's). No auth; a Unix socket, or any address with any
// server credentials (TLS).
#pragma once

#include <ensemble/detail/inputs.hpp>
#include <ensemble/proto/ensemble.grpc.pb.h>

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_support {

class OddDaemon {
 public:
  explicit OddDaemon(const std::filesystem::path& socket)
      : OddDaemon(ensemble::detail::unix_target(socket.string()), grpc::InsecureServerCredentials()) {}
  // `uri`: "127.0.0.1:0" binds a free port (port()).
  OddDaemon(const std::string& uri, std::shared_ptr<grpc::ServerCredentials> credentials) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(uri, std::move(credentials), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (!server_) throw std::runtime_error("odd daemon failed to start");
  }
  int port() const { return port_; }
  OddDaemon(const OddDaemon&) = delete;
  OddDaemon& operator=(const OddDaemon&) = delete;
  ~OddDaemon() { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2)); }

  // GetStatus ends with `status`; OK answers tor_state "ready".
  void answer_status(grpc::Status status) {
    std::lock_guard lock(service_.mu);
    service_.status_answer = std::move(status);
  }
  // RegisterService, once the manifest is read: a non-OK `refusal` ends the call with it;
  // OK sends `registered`, then each of `script` (serialized ServiceServerMessages), and
  // ends with OK once the client has half-closed and everything is written.
  void answer_registration(grpc::Status refusal, std::vector<std::string> script = {}) {
    std::lock_guard lock(service_.mu);
    service_.refusal = std::move(refusal);
    service_.script = std::move(script);
  }

  // ---- ServiceServerMessage bytes for a script ----
  static std::string event(const std::string& type, const std::string& payload) {
    ensemble::api::ServiceServerMessage m;
    m.mutable_event()->set_type(type);
    m.mutable_event()->set_payload(payload);
    return m.SerializeAsString();
  }
  static std::string chat(const std::string& from, const std::string& text) {
    ensemble::api::ServiceChatMessageEvent c;
    c.set_from_addr(from);
    c.set_text(text);
    return event("chat_message", c.SerializeAsString());
  }
  static std::string error(const std::string& message) {
    ensemble::api::ServiceServerMessage m;
    m.mutable_error()->set_message(message);
    return m.SerializeAsString();
  }
  // A message whose only field is number `field` (a varint 1): to this version, a kind of
  // message it does not know.
  static std::string unknown_kind(int field) {
    std::string bytes;
    unsigned tag = static_cast<unsigned>(field) << 3;  // wire type 0, varint
    while (tag >= 0x80) {
      bytes += static_cast<char>((tag & 0x7f) | 0x80);
      tag >>= 7;
    }
    bytes += static_cast<char>(tag);
    bytes += '\x01';
    return bytes;
  }

 private:
  using Base = ensemble::api::EnsembleService::WithCallbackMethod_GetStatus<
      ensemble::api::EnsembleService::WithRawCallbackMethod_RegisterService<ensemble::api::EnsembleService::Service>>;

  class Stream final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    Stream(grpc::Status refusal, std::vector<std::string> script)
        : refusal_(std::move(refusal)), script_(script.begin(), script.end()) {
      StartRead(&in_);
    }

   private:
    void OnReadDone(bool ok) override {
      std::lock_guard lock(mu_);
      if (finished_) return;
      if (!ok) {
        read_done_ = true;
        finish_when_done_locked();
        return;
      }
      if (!manifest_read_) {
        manifest_read_ = true;
        if (!refusal_.ok()) {
          finished_ = true;
          Finish(refusal_);
          return;
        }
        ensemble::api::ServiceServerMessage registered;
        registered.mutable_registered()->set_address("Eodd");
        registered.mutable_registered()->set_onion("odd.onion");
        script_.push_front(registered.SerializeAsString());
        write_next_locked();
      }
      StartRead(&in_);  // actions are read and ignored
    }
    void OnWriteDone(bool ok) override {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) script_.clear();
      write_next_locked();
      finish_when_done_locked();
    }
    void OnCancel() override {
      std::lock_guard lock(mu_);
      if (finished_) return;
      finished_ = true;
      Finish(grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

    void write_next_locked() {
      if (writing_ || finished_ || script_.empty()) return;
      grpc::Slice slice(script_.front());
      script_.pop_front();
      out_ = grpc::ByteBuffer(&slice, 1);
      writing_ = true;
      StartWrite(&out_);
    }
    void finish_when_done_locked() {
      if (finished_ || !read_done_ || writing_ || !script_.empty()) return;
      finished_ = true;
      Finish(grpc::Status::OK);
    }

    std::mutex mu_;
    const grpc::Status refusal_;
    std::deque<std::string> script_;
    grpc::ByteBuffer in_;
    grpc::ByteBuffer out_;
    bool manifest_read_ = false;
    bool read_done_ = false;
    bool writing_ = false;
    bool finished_ = false;
  };

  struct Service final : Base {
    grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                        const ensemble::api::GetStatusRequest*,
                                        ensemble::api::GetStatusResponse* response) override {
      grpc::Status answer;
      {
        std::lock_guard lock(mu);
        answer = status_answer;
      }
      if (answer.ok()) response->set_tor_state("ready");
      auto* reactor = context->DefaultReactor();
      reactor->Finish(answer);
      return reactor;
    }
    grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RegisterService(
        grpc::CallbackServerContext*) override {
      std::lock_guard lock(mu);
      return new Stream(refusal, script);
    }

    std::mutex mu;
    grpc::Status status_answer;
    grpc::Status refusal;
    std::vector<std::string> script;
  };

  Service service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace test_support
