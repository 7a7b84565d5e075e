// A real gRPC server (callback API) that checks admin-key auth exactly as the daemon does,
// for testing the client side of auth over real sockets. It serves GetIdentity (unary) and
// Subscribe (server streaming: one event, then OK) and refuses both with the daemon's status
// when check_admin_auth fails. It records each call's timestamp and user agent. Its
// constructors and destructors are in identity_server.cpp, compiled once.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/detail/inputs.hpp>
#include <ensemble/proto/ensemble.grpc.pb.h>
#include <ensemble/testing/auth_check.hpp>

#include "ensemble_service_base.hpp"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_support {

enum class Transport { unix_socket, loopback_tcp };

inline const char* transport_name(Transport t) {
  return t == Transport::unix_socket ? "unix socket" : "loopback TCP";
}

// gRPC's local channel credentials of the kind that fits the transport: the only plaintext
// channel credentials that let call credentials through.
inline std::shared_ptr<grpc::ChannelCredentials> local_channel_credentials(Transport t) {
  return grpc::experimental::LocalCredentials(t == Transport::unix_socket ? UDS : LOCAL_TCP);
}

class IdentityServer {
 public:
  // `socket_dir` holds the Unix socket, named `socket_name` (unused for TCP). The path is
  // bound byte for byte, whatever characters it holds.
  IdentityServer(Transport transport, const std::array<std::uint8_t, 32>& admin_key,
                 const std::filesystem::path& socket_dir, const std::string& socket_name = "api.sock");
  IdentityServer(const IdentityServer&) = delete;
  IdentityServer& operator=(const IdentityServer&) = delete;
  ~IdentityServer();

  const std::string& target() const { return target_; }
  int port() const { return port_; }  // 0 for a Unix socket

  std::shared_ptr<grpc::Channel> channel(
      std::shared_ptr<grpc::CallCredentials> call_credentials = nullptr) const {
    auto creds = local_channel_credentials(transport_);
    if (call_credentials) creds = grpc::CompositeChannelCredentials(creds, call_credentials);
    return grpc::CreateChannel(target_, creds);
  }

  // Pin the server's clock (nullopt: the system clock), to test the freshness window exactly.
  void set_clock(std::optional<std::chrono::system_clock::time_point> fixed) {
    std::lock_guard lock(service_.mutex);
    service_.fixed_now = fixed;
  }

  // The x-auth-timestamp of every call that reached the server, in arrival order.
  std::vector<std::string> seen_timestamps() const {
    std::lock_guard lock(service_.mutex);
    return service_.timestamps;
  }
  // The user-agent header of every call, in arrival order.
  std::vector<std::string> seen_user_agents() const {
    std::lock_guard lock(service_.mutex);
    return service_.user_agents;
  }

 private:
  struct Service final : EnsembleServiceBase {
    explicit Service(const std::array<std::uint8_t, 32>& key);
    ~Service() override;

    grpc::Status authorize(grpc::CallbackServerContext* context) {
      std::chrono::system_clock::time_point now;
      {
        std::lock_guard lock(mutex);
        now = fixed_now.value_or(std::chrono::system_clock::now());
        const auto& md = context->client_metadata();
        const auto it = md.find(grpc::string_ref(ensemble::kTimestampHeader.data(),
                                                 ensemble::kTimestampHeader.size()));
        timestamps.emplace_back(it == md.end() ? "" : std::string(it->second.data(),
                                                                  it->second.size()));
        const auto agent = md.find("user-agent");
        user_agents.emplace_back(agent == md.end() ? "" : std::string(agent->second.data(),
                                                                      agent->second.size()));
      }
      return ensemble::testing::check_admin_auth(context->client_metadata(), admin_key, now);
    }

    grpc::ServerUnaryReactor* GetIdentity(grpc::CallbackServerContext* context,
                                          const ensemble::api::GetIdentityRequest*,
                                          ensemble::api::GetIdentityResponse* response) override {
      auto* reactor = context->DefaultReactor();
      grpc::Status status = authorize(context);
      if (status.ok()) {
        response->set_address(ensemble::address_from_public_key(admin_key));
        response->set_public_key(std::string(admin_key.begin(), admin_key.end()));
      }
      reactor->Finish(status);
      return reactor;
    }

    // Writes one event and ends with OK, or ends at once with the auth failure.
    class OneEvent final : public grpc::ServerWriteReactor<ensemble::api::DaemonEvent> {
     public:
      explicit OneEvent(grpc::Status status) {
        if (!status.ok()) {
          Finish(std::move(status));
          return;
        }
        event_.set_type("tor_ready");
        event_.set_payload("{}");
        StartWrite(&event_);
      }
      void OnWriteDone(bool ok) override {
        Finish(ok ? grpc::Status::OK : grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
      }
      void OnDone() override { delete this; }

     private:
      ensemble::api::DaemonEvent event_;
    };

    grpc::ServerWriteReactor<ensemble::api::DaemonEvent>* Subscribe(
        grpc::CallbackServerContext* context, const ensemble::api::SubscribeRequest*) override {
      return new OneEvent(authorize(context));
    }

    const std::array<std::uint8_t, 32> admin_key;
    mutable std::mutex mutex;
    std::optional<std::chrono::system_clock::time_point> fixed_now;
    std::vector<std::string> timestamps;
    std::vector<std::string> user_agents;
  };

  Service service_;
  Transport transport_;
  std::string target_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// One GetIdentity call. With `manual`, those headers are attached by hand (for stale,
// tampered or foreign signatures); otherwise only what the channel's credentials add.
inline grpc::Status get_identity(const std::shared_ptr<grpc::Channel>& channel,
                                 ensemble::api::GetIdentityResponse* response,
                                 const ensemble::AuthHeaders* manual = nullptr) {
  auto stub = ensemble::api::EnsembleService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (manual != nullptr) {
    context.AddMetadata(std::string(ensemble::kPubkeyHeader), manual->pubkey_hex);
    context.AddMetadata(std::string(ensemble::kTimestampHeader), manual->timestamp);
    context.AddMetadata(std::string(ensemble::kSignatureHeader), manual->signature_hex);
  }
  ensemble::api::GetIdentityRequest request;
  return stub->GetIdentity(&context, request, response);
}

inline grpc::Status get_identity(const std::shared_ptr<grpc::Channel>& channel,
                                 const ensemble::AuthHeaders* manual = nullptr) {
  ensemble::api::GetIdentityResponse response;
  return get_identity(channel, &response, manual);
}

}  // namespace test_support
