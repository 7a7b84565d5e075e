// A gRPC server whose RegisterService ends the way a mock server (or a misbehaving daemon)
// may: it reads the manifest, sends error{message} when it has one, and then ends the call
// with status OK. It records the x-service-token of every call, to show what went out.
#pragma once

#include <ensemble/auth.hpp>
#include <ensemble/detail/inputs.hpp>
#include <ensemble/proto/ensemble.grpc.pb.h>

#include "ensemble_service_base.hpp"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_support {

class OkEndingRegistry {
 public:
  // Listens on the Unix socket `socket`. An empty `error_message` sends no error at all.
  OkEndingRegistry(const std::filesystem::path& socket, std::string error_message)
      : service_(std::move(error_message)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(ensemble::detail::unix_target(socket.string()),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (!server_) throw std::runtime_error("test registry failed to start");
  }
  OkEndingRegistry(const OkEndingRegistry&) = delete;
  OkEndingRegistry& operator=(const OkEndingRegistry&) = delete;
  ~OkEndingRegistry() { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2)); }

  // The x-service-token of each RegisterService call ("" when none), in arrival order.
  std::vector<std::string> tokens_seen() const {
    std::lock_guard lock(service_.mutex);
    return service_.tokens;
  }

 private:
  using Reactor = grpc::ServerBidiReactor<ensemble::api::ServiceClientMessage,
                                          ensemble::api::ServiceServerMessage>;

  class Refusal final : public Reactor {
   public:
    explicit Refusal(const std::string& message) : message_(message) { StartRead(&manifest_); }
    void OnReadDone(bool ok) override {
      if (!ok || message_.empty()) {
        Finish(grpc::Status::OK);
        return;
      }
      reply_.mutable_error()->set_message(message_);
      StartWrite(&reply_);
    }
    void OnWriteDone(bool /*ok*/) override { Finish(grpc::Status::OK); }
    void OnDone() override { delete this; }

   private:
    const std::string message_;
    ensemble::api::ServiceClientMessage manifest_;
    ensemble::api::ServiceServerMessage reply_;
  };

  struct Service final : EnsembleServiceBase {
    explicit Service(std::string message) : error_message(std::move(message)) {}

    Reactor* RegisterService(grpc::CallbackServerContext* context) override {
      const auto& md = context->client_metadata();
      const auto it = md.find(grpc::string_ref(ensemble::kServiceTokenHeader.data(),
                                               ensemble::kServiceTokenHeader.size()));
      {
        std::lock_guard lock(mutex);
        tokens.emplace_back(it == md.end() ? "" : std::string(it->second.data(), it->second.size()));
      }
      return new Refusal(error_message);
    }

    const std::string error_message;
    mutable std::mutex mutex;
    std::vector<std::string> tokens;
  };

  Service service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace test_support
