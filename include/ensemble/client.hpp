// Client: one connection to one daemon. It makes services (one RegisterService stream each,
// any number on the one channel) and makes the node-level calls.
//
// Two identities can send a message, and picking the wrong one is the usual reason a peer
// refuses a dial:
//   - the operator (node) identity: Client::connect / Client::send. The peer sees the
//     daemon's own address. Use it when the peer admits the operator.
//   - a service identity: Service::connect_peer / Service::send_message on a registered
//     service. The peer sees the service's address.
//
// Lifetime: destroying a Client cancels its open streams and calls and waits until they
// have ended (except on a gRPC callback thread, where it cancels without waiting). Services
// you still hold stay valid objects afterwards; their actions throw ServiceClosedError.
#pragma once

#include <ensemble/auth.hpp>
#include <ensemble/chat_service.hpp>
#include <ensemble/client_options.hpp>
#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/channel.hpp>
#include <ensemble/detail/connection.hpp>
#include <ensemble/detail/unary.hpp>
#include <ensemble/errors.hpp>
#include <ensemble/node_types.hpp>
#include <ensemble/result.hpp>
#include <ensemble/rpc_service.hpp>
#include <ensemble/service_options.hpp>
#include <ensemble/spawn.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>

namespace ensemble {

class Client {
 public:
  // Throws ConfigError for contradictory options (both or neither of socket_path/addr, tls
  // on a Unix socket, a signed plaintext call to a non-loopback host). Does no I/O: the
  // channel connects on first use.
  explicit Client(ClientOptions options) {
    std::shared_ptr<const Signer> signer;
    if (options.auth_seed) signer = std::make_shared<const Signer>(*options.auth_seed);
    conn_ = detail::make_connection(detail::make_channel(options, std::move(signer)),
                                    std::move(options.service_token));
  }

  // The client for the environment the process was started in (daemon-protocol.md §8):
  //   ENSEMBLE_SERVICE_TOKEN set -> supervised: dial ENSEMBLE_SOCKET, present the token on
  //                                 RegisterService, no seed;
  //   otherwise                  -> dial ENSEMBLE_SOCKET, signing every call with the seed
  //                                 file named by ENSEMBLE_AUTH_SEED when it is set.
  // Throws ConfigError naming ENSEMBLE_SOCKET when it is missing, AuthError naming
  // ENSEMBLE_AUTH_SEED and the file when the seed cannot be used.
  static Client from_env() { return Client(options_from(SpawnContext::from_env())); }

  static ClientOptions options_from(const SpawnContext& env) {
    if (!env.socket_path) {
      throw ConfigError(
          "ENSEMBLE_SOCKET is not set: it must name the daemon's Unix socket (the daemon's "
          "supervisor sets it for services it spawns)");
    }
    ClientOptions options;
    options.socket_path = *env.socket_path;
    if (env.service_token) {
      options.service_token = *env.service_token;
    } else if (env.auth_seed_path) {
      try {
        options.auth_seed = Seed::from_file(*env.auth_seed_path);
      } catch (const AuthError& e) {
        throw AuthError(std::string("ENSEMBLE_AUTH_SEED: ") + e.what());
      }
    }
    return options;
  }

  Client(Client&&) noexcept = default;
  Client& operator=(Client&& other) noexcept {
    if (this != &other) {
      shut_down();
      conn_ = std::move(other.conn_);
    }
    return *this;
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  ~Client() { shut_down(); }

  // ---- Services. Install handlers on the result, then start() it. ----

  std::shared_ptr<ChatService> service(std::string name, ServiceOptions options = {}) {
    return detail::make_service<ChatService>(detail::ServiceKey{}, connection(), std::move(name),
                                             std::move(options));
  }
  std::shared_ptr<RpcService> rpc_service(std::string name, ServiceOptions options = {}) {
    return detail::make_service<RpcService>(detail::ServiceKey{}, connection(), std::move(name),
                                            std::move(options));
  }
  std::shared_ptr<HttpService> http_service(std::string name, ServiceOptions options = {}) {
    return detail::make_service<HttpService>(detail::ServiceKey{}, connection(), std::move(name),
                                             std::move(options));
  }

  // ---- Node-level calls, as the operator identity ----

  // Dials a peer as the operator. A refused or impossible dial is accepted == false with
  // the daemon's reason; RpcError only when the call itself fails.
  ConnectResult connect(std::string address, CallOptions options = {}) {
    return detail::blocking_call<api::ConnectResponse>(
        *connection(), "Connect", connect_request(std::move(address)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.Connect(ctx, req, resp); },
        detail::to_connect_result);
  }
  void connect(std::string address, std::function<void(Result<ConnectResult>)> callback,
               CallOptions options = {}) {
    detail::callback_call<api::ConnectResponse>(
        connection(), "Connect", connect_request(std::move(address)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->Connect(ctx, req, resp, std::move(done));
        },
        detail::to_connect_result, std::move(callback));
  }

  // Sends a chat as the operator; returns the daemon's message id.
  std::string send(std::string address, std::string text, CallOptions options = {}) {
    return detail::blocking_call<api::SendMessageResponse>(
        *connection(), "SendMessage", send_request(std::move(address), std::move(text)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.SendMessage(ctx, req, resp); },
        to_message_id);
  }
  void send(std::string address, std::string text, std::function<void(Result<std::string>)> callback,
            CallOptions options = {}) {
    detail::callback_call<api::SendMessageResponse>(
        connection(), "SendMessage", send_request(std::move(address), std::move(text)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->SendMessage(ctx, req, resp, std::move(done));
        },
        to_message_id, std::move(callback));
  }

  // Streams and calls currently open on this client (services count while registered or
  // reconnecting).
  std::size_t open_calls() const { return conn_ ? conn_->calls.size() : 0; }

 private:
  const std::shared_ptr<detail::Connection>& connection() const {
    if (!conn_) throw Error("this Client was moved from");
    return conn_;
  }

  void shut_down() {
    if (!conn_) return;
    conn_->calls.cancel_all();
    if (!detail::on_callback_thread()) conn_->calls.wait_idle();
    conn_.reset();
  }

  static api::ConnectRequest connect_request(std::string address) {
    require_valid_address(address, "connect address");
    api::ConnectRequest request;
    request.set_address(std::move(address));
    return request;
  }
  static api::SendMessageRequest send_request(std::string address, std::string text) {
    require_valid_address(address, "send address");
    if (text.empty()) throw InvalidArgumentError("send: text is empty");
    api::SendMessageRequest request;
    request.set_address(std::move(address));
    request.set_text(std::move(text));
    return request;
  }
  static std::string to_message_id(api::SendMessageResponse r) {
    return std::move(*r.mutable_message_id());
  }

  std::shared_ptr<detail::Connection> conn_;
};

}  // namespace ensemble
