/// @file
/// RpcService: a service on the RPC transport. Peers exchange raw bytes with it (usually
/// serialized protobuf messages of their own schema): on_rpc receives, send_bytes replies.
/// Pair it with ServiceOptions::max_payload_bytes and the rate limits to cap inbound abuse;
/// refusals arrive at on_error as ServiceError::Kind::payload_too_large / rate_limited.
#pragma once

#include <ensemble/service.hpp>

namespace ensemble {

/// A service on the RPC transport: raw bytes in (on_rpc) and out (send_bytes). Made by
/// Client::rpc_service().
class RpcService final : public ServiceOf<RpcService> {
 public:
  /// Made by Client::rpc_service() only, as ChatService is by Client::service().
  RpcService(detail::ServiceKey, std::shared_ptr<detail::Connection> conn, std::string name,
             ServiceOptions options)
      : ServiceOf(std::move(conn), std::move(name), Transport::rpc, std::move(options)) {}

  /// Inbound bytes: void(const RpcMessage&) or void(RpcService&, const RpcMessage&). Same
  /// threading contract as every handler (see service.hpp).
  template <class F>
  RpcService& on_rpc(F&& handler) {
    install(rpc_handler_, bind<const RpcMessage&>(std::forward<F>(handler)), "on_rpc");
    return *this;
  }

  /// Sends bytes to a peer as this service's identity. Queued like every action.
  void send_bytes(std::string to_addr, std::string payload) {
    require_valid_address(to_addr, "send_bytes to_addr");
    api::ServiceClientMessage m;
    auto* body = m.mutable_send_bytes();
    body->set_to_addr(std::move(to_addr));
    body->set_payload(std::move(payload));
    enqueue(std::move(m));
  }

 private:
  ~RpcService() override = default;
};

}  // namespace ensemble
