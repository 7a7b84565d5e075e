/// @file
/// ChatService: a service on the chat transport (text messages and connection requests), and
/// HttpService, its twin on the HTTP transport. The transport is in the type: a chat service
/// has no send_bytes/on_rpc to call by mistake. Made by Client::service / http_service.
#pragma once

#include <ensemble/service.hpp>

namespace ensemble {

/// A service on the chat transport: chats (on_chat, send_message) and connection requests.
/// Made by Client::service().
class ChatService final : public ServiceOf<ChatService> {
 public:
  /// Made by Client::service() only: the detail::ServiceKey cannot be had anywhere else.
  ChatService(detail::ServiceKey, std::shared_ptr<detail::Connection> conn, std::string name,
              ServiceOptions options)
      : ServiceOf(std::move(conn), std::move(name), Transport::chat, std::move(options)) {}

 private:
  // Owned only through the shared_ptr from Client: never on the stack, never deleted by hand.
  ~ChatService() override = default;
};

/// The daemon serves HTTP-transport services itself (e.g. its built-in UI). The real daemon
/// refuses them in loopback mode.
class HttpService final : public ServiceOf<HttpService> {
 public:
  /// Made by Client::http_service() only, as ChatService is by Client::service().
  HttpService(detail::ServiceKey, std::shared_ptr<detail::Connection> conn, std::string name,
              ServiceOptions options)
      : ServiceOf(std::move(conn), std::move(name), Transport::http, std::move(options)) {}

 private:
  ~HttpService() override = default;
};

}  // namespace ensemble
