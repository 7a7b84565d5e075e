// The public EnsembleService on the callback API: every call is authorised first (section
// 4), then handed to the core (registry, routing), the node event bus or the file
// transfers. Unary calls that wait on a peer (Connect, ConnectAs) finish later from the
// completion, never by blocking a gRPC thread.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/testing/auth_check.hpp>

#include "core.hpp"
#include "files.hpp"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace ensemble::testing::detail {

// A RegisterService call refused before its first message (auth, no registry): the status
// alone, as the daemon's interceptor or handler returns it.
class RefusedStream final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit RefusedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

class RefusedWriter final : public grpc::ServerWriteReactor<api::DaemonEvent> {
 public:
  explicit RefusedWriter(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// The generated callback service with RegisterService registered raw (grpc::ByteBuffer), so
// ServiceStream checks each message as the daemon's gRPC stack does before parsing it.
// (CallbackService would make it typed; the chain is spelled out to leave it out.)
using Gen = api::EnsembleService;
using ApiServiceBase = Gen::WithCallbackMethod_GetIdentity<Gen::WithCallbackMethod_GetStatus<
    Gen::WithCallbackMethod_ListContacts<Gen::WithCallbackMethod_AddContact<
        Gen::WithCallbackMethod_RemoveContact<Gen::WithCallbackMethod_Connect<
            Gen::WithCallbackMethod_AcceptConnection<Gen::WithCallbackMethod_RejectConnection<
                Gen::WithCallbackMethod_SendMessage<Gen::WithCallbackMethod_SendFile<
                    Gen::WithCallbackMethod_AcceptFile<Gen::WithCallbackMethod_RejectFile<
                        Gen::WithCallbackMethod_AddNode<Gen::WithCallbackMethod_GetDebugInfo<
                            Gen::WithCallbackMethod_Subscribe<
                                Gen::WithRawCallbackMethod_RegisterService<
                                    Gen::WithCallbackMethod_ConnectAs<Gen::Service>>>>>>>>>>>>>>>>>;

class ApiService final : public ApiServiceBase {
 public:
  ApiService(Core* core, FileTransfers* files) : core_(core), files_(files) {}

  grpc::ServerUnaryReactor* GetIdentity(grpc::CallbackServerContext* ctx,
                                        const api::GetIdentityRequest* request,
                                        api::GetIdentityResponse* reply) override {
    return unary(ctx, *request, [&] {
      reply->set_address(core_->node().address);
      reply->set_public_key(std::string(core_->node().public_key.begin(),
                                        core_->node().public_key.end()));
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const api::GetStatusRequest* request,
                                      api::GetStatusResponse* reply) override {
    return unary(ctx, *request, [&] {
      // "bootstrapping" during the start-up window a test asked for, then "ready" (loopback
      // mode says "ready" too: section 9). The daemon never sets uptime_ms (section 10).
      reply->set_tor_state(core_->tor_ready() ? "ready" : "bootstrapping");
      reply->set_peer_count(static_cast<int>(core_->connected_peers().size()));
      reply->set_onion_addr(core_->node().onion);
      reply->set_rt_size(core_->rendezvous()
                             ? static_cast<int>(core_->rendezvous()->daemons().size())
                             : 0);
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* ListContacts(grpc::CallbackServerContext* ctx,
                                         const api::ListContactsRequest* request,
                                         api::ListContactsResponse* reply) override {
    return unary(ctx, *request, [&] {
      for (const auto& c : core_->contacts().list()) {
        // The daemon fills address and alias only (section 10).
        auto* info = reply->add_contacts();
        info->set_address(c.address);
        info->set_alias(c.alias);
      }
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* AddContact(grpc::CallbackServerContext* ctx,
                                       const api::AddContactRequest* request,
                                       api::AddContactResponse*) override {
    return unary(ctx, *request, [&] {
      if (!core_->options().contacts_enabled) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "contacts not initialized");
      }
      // Any address string is stored as given (section 10).
      core_->contacts().add(request->address(), request->alias(), request->public_key(),
                            unix_ms(core_->now()));
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* RemoveContact(grpc::CallbackServerContext* ctx,
                                          const api::RemoveContactRequest* request,
                                          api::RemoveContactResponse*) override {
    return unary(ctx, *request, [&] {
      if (!core_->options().contacts_enabled) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "contacts not initialized");
      }
      core_->contacts().remove(request->address());
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* Connect(grpc::CallbackServerContext* ctx,
                                    const api::ConnectRequest* request,
                                    api::ConnectResponse* reply) override {
    auto* reactor = ctx->DefaultReactor();
    if (auto st = admit(ctx, *request); !st.ok()) {
      reactor->Finish(st);
      return reactor;
    }
    dial(core_->node().address, request->address(), reactor, reply, /*node=*/true);
    return reactor;
  }

  grpc::ServerUnaryReactor* ConnectAs(grpc::CallbackServerContext* ctx,
                                      const api::ConnectAsRequest* request,
                                      api::ConnectResponse* reply) override {
    auto* reactor = ctx->DefaultReactor();
    if (auto st = admit(ctx, *request); !st.ok()) {
      reactor->Finish(st);
      return reactor;
    }
    auto service = core_->service(request->service());
    if (!service) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "service " + ensemble::detail::go_quote(request->service()) +
                                       " is not registered"));
      return reactor;
    }
    dial(service->address(), request->address(), reactor, reply, /*node=*/false);
    return reactor;
  }

  grpc::ServerUnaryReactor* AcceptConnection(grpc::CallbackServerContext* ctx,
                                             const api::AcceptConnectionRequest* request,
                                             api::AcceptConnectionResponse*) override {
    return unary(ctx, *request, [&] { return decide(request->address(), true); });
  }

  grpc::ServerUnaryReactor* RejectConnection(grpc::CallbackServerContext* ctx,
                                             const api::RejectConnectionRequest* request,
                                             api::RejectConnectionResponse*) override {
    return unary(ctx, *request, [&] { return decide(request->address(), false); });
  }

  grpc::ServerUnaryReactor* SendMessage(grpc::CallbackServerContext* ctx,
                                        const api::SendMessageRequest* request,
                                        api::SendMessageResponse* reply) override {
    auto* reactor = ctx->DefaultReactor();
    if (auto st = admit(ctx, *request); !st.ok()) {
      reactor->Finish(st);
      return reactor;
    }
    if (request->text().empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "sending message: text is empty"));
      return reactor;
    }
    Envelope env;
    env.set_kind(lb::ENVELOPE_CHAT);
    env.set_from_addr(core_->node().address);
    env.set_to_addr(request->address());
    env.set_text(request->text());
    const auto sent = core_->now();
    env.set_ts_ms(unix_ms(sent));
    env.set_message_id(random_hex(16));
    core_->route(env, [this, env, sent, reactor, reply](Outcome o) {
      if (!o.ok) {
        reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "sending message: " + o.reason));
        return;
      }
      reply->set_message_id(env.message_id());
      // The bus echoes the node's own sends (section 6).
      core_->bus().publish("chat_message",
                           chat_message_json(env.message_id(), env.from_addr(), env.to_addr(),
                                             env.text(), sent, core_->now(), false));
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerWriteReactor<api::TransferProgress>* SendFile(
      grpc::CallbackServerContext* ctx, const api::SendFileRequest* request) override {
    if (auto st = admit(ctx, *request); !st.ok()) return FileSender::refused(st);
    return files_->send(*request);
  }

  grpc::ServerUnaryReactor* AcceptFile(grpc::CallbackServerContext* ctx,
                                       const api::AcceptFileRequest* request,
                                       api::AcceptFileResponse*) override {
    return unary(ctx, *request, [&] { return files_->accept(request->transfer_id(), request->save_path()); });
  }

  grpc::ServerUnaryReactor* RejectFile(grpc::CallbackServerContext* ctx,
                                       const api::RejectFileRequest* request,
                                       api::RejectFileResponse*) override {
    return unary(ctx, *request, [&] { return files_->reject(request->transfer_id()); });
  }

  grpc::ServerUnaryReactor* AddNode(grpc::CallbackServerContext* ctx,
                                    const api::AddNodeRequest* request,
                                    api::AddNodeResponse* reply) override {
    return unary(ctx, *request, [&] {
      if (!is_onion_address(request->onion_address())) {
        return grpc::Status(grpc::StatusCode::INTERNAL,
                            "adding node: invalid onion address " +
                                ensemble::detail::go_quote(request->onion_address()));
      }
      // Bootstrapping from any node finds the daemons of the rendezvous directory (the
      // loopback stand-in for a DHT lookup).
      int found = 0;
      if (core_->rendezvous()) {
        for (const auto& d : core_->rendezvous()->daemons()) {
          ++found;
          core_->bus().publish("peer_discovered",
                               nlohmann::json{{"Address", d.address}, {"OnionAddr", d.onion}}.dump());
        }
      }
      reply->set_peers_found(found);
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* GetDebugInfo(grpc::CallbackServerContext* ctx,
                                         const api::GetDebugInfoRequest* request,
                                         api::GetDebugInfoResponse* reply) override {
    return unary(ctx, *request, [&] {
      int rt = 0;
      if (core_->rendezvous()) {
        for (const auto& d : core_->rendezvous()->daemons()) {
          auto* peer = reply->add_rt_peers();
          peer->set_address(d.address);
          peer->set_onion_addr(d.onion);
          peer->set_last_seen(d.last_seen_ms);
          ++rt;
        }
      }
      reply->set_rt_size(rt);
      for (const auto& [address, _] : core_->connected_peers()) {
        auto* c = reply->add_connections();
        c->set_address(address);
        c->set_state("connected");
      }
      reply->set_onion_addr(core_->node().onion);
      return grpc::Status::OK;
    });
  }

  grpc::ServerWriteReactor<api::DaemonEvent>* Subscribe(grpc::CallbackServerContext* ctx,
                                                        const api::SubscribeRequest* request) override {
    if (auto st = admit(ctx, *request); !st.ok()) return new RefusedWriter(st);
    auto sub = std::make_shared<NodeSubscriber>(
        core_->options().node_event_queue_depth,
        [core = core_](NodeSubscriber* s) { core->bus().remove(s); });
    core_->bus().add(sub);
    return NodeSubscriber::start(sub);
  }

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RegisterService(
      grpc::CallbackServerContext* ctx) override {
    // A supervised service's token is its whole auth on this call (section 4).
    std::optional<std::string> token_name;
    const auto token =
        testing::detail::first_metadata_value(ctx->client_metadata(), kServiceTokenHeader);
    if (!token.empty()) {
      token_name = core_->token_name(token);
      if (!token_name) {
        return new RefusedStream(
            grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid service token"));
      }
    } else if (auto st = authorize(ctx); !st.ok()) {
      return new RefusedStream(st);
    }
    if (!core_->options().registry_enabled || !core_->tor_ready()) {
      return new RefusedStream(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                            "service registry not configured on this daemon"));
    }
    auto stream = std::make_shared<ServiceStream>(core_, std::move(token_name),
                                                  core_->options().event_queue_depth);
    return ServiceStream::start(stream);
  }

 private:
  // What every call meets first: grpc-go's receive limit (the request was received with a
  // larger one, so the daemon's can be applied with its words), then auth.
  grpc::Status admit(grpc::CallbackServerContext* ctx, const google::protobuf::MessageLite& request) const {
    const std::size_t size = request.ByteSizeLong();
    const std::size_t limit = core_->options().max_receive_message_bytes;
    if (size > limit) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "grpc: received message larger than max (" + std::to_string(size) +
                              " vs. " + std::to_string(limit) + ")");
    }
    return authorize(ctx);
  }

  grpc::Status authorize(grpc::CallbackServerContext* ctx) const {
    const auto& key = core_->options().admin_key;
    if (!key) return grpc::Status::OK;
    return check_admin_auth(ctx->client_metadata(), *key, core_->now());
  }

  template <typename Body>
  grpc::ServerUnaryReactor* unary(grpc::CallbackServerContext* ctx,
                                  const google::protobuf::MessageLite& request, Body&& body) {
    auto* reactor = ctx->DefaultReactor();
    grpc::Status st = admit(ctx, request);
    if (st.ok()) st = body();
    reactor->Finish(st);
    return reactor;
  }

  grpc::Status decide(const std::string& address, bool accept) {
    if (!core_->decide_node_request(address, accept)) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no pending request from " + address);
    }
    return grpc::Status::OK;
  }

  // Connect never fails at the gRPC level: a refused or impossible dial is a value.
  void dial(const std::string& from, const std::string& to, grpc::ServerUnaryReactor* reactor,
            api::ConnectResponse* reply, bool node) {
    if (to == from) {
      reply->set_accepted(false);
      reply->set_message("cannot connect to self");
      reactor->Finish(grpc::Status::OK);
      return;
    }
    Envelope env;
    env.set_kind(lb::ENVELOPE_DIAL);
    env.set_from_addr(from);
    env.set_to_addr(to);
    env.set_ts_ms(unix_ms(core_->now()));
    if (node && is_valid_address(to)) {
      core_->bus().publish("connection_state",
                           connection_state_json(to, ConnState::discovering, ""));
    }
    core_->route(env, [this, to, node, reactor, reply](Outcome o) {
      reply->set_accepted(o.ok);
      reply->set_message(o.ok ? "connected" : o.reason);
      if (node) {
        if (o.ok) {
          // The connector's way to connected (section 10): signaling, exchanging IPs, NAT
          // traversal, then connected (published by mark_connected).
          for (ConnState s : {ConnState::signaling, ConnState::exchanging_ips, ConnState::nat_traversal}) {
            core_->bus().publish("connection_state", connection_state_json(to, s, ""));
          }
          core_->mark_connected(to);
        } else if (is_valid_address(to)) {
          core_->bus().publish("connection_state",
                               connection_state_json(to, ConnState::failed, o.reason));
        }
      }
      reactor->Finish(grpc::Status::OK);
    });
  }

  Core* core_;
  FileTransfers* files_;
};

}  // namespace ensemble::testing::detail
