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

// The generated callback service with every call that takes client strings registered raw
// (grpc::ByteBuffer), so each request meets the daemon's own checks before it is parsed, with
// grpc-go's words: over max_receive_message_bytes, RESOURCE_EXHAUSTED; a string field that
// is not UTF-8, INTERNAL (gRPC C++ would answer a request it cannot parse with UNIMPLEMENTED
// and no text). Only Subscribe, whose request has no fields, stays typed.
// (CallbackService would make them all typed; the chain is spelled out to leave it out.)
using Gen = api::EnsembleService;
using ApiServiceBase = Gen::WithRawCallbackMethod_GetIdentity<Gen::WithRawCallbackMethod_GetStatus<
    Gen::WithRawCallbackMethod_ListContacts<Gen::WithRawCallbackMethod_AddContact<
        Gen::WithRawCallbackMethod_RemoveContact<Gen::WithRawCallbackMethod_Connect<
            Gen::WithRawCallbackMethod_AcceptConnection<Gen::WithRawCallbackMethod_RejectConnection<
                Gen::WithRawCallbackMethod_SendMessage<Gen::WithRawCallbackMethod_SendFile<
                    Gen::WithRawCallbackMethod_AcceptFile<Gen::WithRawCallbackMethod_RejectFile<
                        Gen::WithRawCallbackMethod_AddNode<Gen::WithRawCallbackMethod_GetDebugInfo<
                            Gen::WithCallbackMethod_Subscribe<
                                Gen::WithRawCallbackMethod_RegisterService<
                                    Gen::WithRawCallbackMethod_ConnectAs<Gen::Service>>>>>>>>>>>>>>>>>;

// One unary call on the raw API, as the typed API would hand it to a handler: the parsed
// request and a reply to fill. Finish() serializes the reply into the call's response bytes
// (on success) and finishes; it runs once and deletes the call.
template <class Request, class Response>
struct UnaryCall {
  grpc::ServerUnaryReactor* reactor;
  grpc::ByteBuffer* response_bytes;
  Request request{};
  Response reply{};

  void Finish(const grpc::Status& status) {
    if (status.ok()) {
      bool own_buffer = false;
      grpc::SerializationTraits<Response>::Serialize(reply, response_bytes, &own_buffer);
    }
    grpc::ServerUnaryReactor* r = reactor;
    delete this;
    r->Finish(status);
  }
};

class ApiService final : public ApiServiceBase {
 public:
  ApiService(Core* core, FileTransfers* files) : core_(core), files_(files) {}

  grpc::ServerUnaryReactor* GetIdentity(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                        grpc::ByteBuffer* out) override {
    return unary<api::GetIdentityRequest, api::GetIdentityResponse>(ctx, in, out, [&](const auto*, auto* reply) {
      reply->set_address(core_->node().address);
      reply->set_public_key(std::string(core_->node().public_key.begin(),
                                        core_->node().public_key.end()));
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                      grpc::ByteBuffer* out) override {
    return unary<api::GetStatusRequest, api::GetStatusResponse>(ctx, in, out, [&](const auto*, auto* reply) {
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

  grpc::ServerUnaryReactor* ListContacts(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                         grpc::ByteBuffer* out) override {
    return unary<api::ListContactsRequest, api::ListContactsResponse>(ctx, in, out, [&](const auto*, auto* reply) {
      for (const auto& c : core_->contacts().list()) {
        // The daemon fills address and alias only (section 10).
        auto* info = reply->add_contacts();
        info->set_address(c.address);
        info->set_alias(c.alias);
      }
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* AddContact(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override {
    return unary<api::AddContactRequest, api::AddContactResponse>(ctx, in, out, [&](const auto* request, auto*) {
      if (!core_->options().contacts_enabled) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "contacts not initialized");
      }
      // Any address string is stored as given (section 10).
      core_->contacts().add(request->address(), request->alias(), request->public_key(),
                            unix_ms(core_->now()));
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* RemoveContact(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                          grpc::ByteBuffer* out) override {
    return unary<api::RemoveContactRequest, api::RemoveContactResponse>(ctx, in, out, [&](const auto* request, auto*) {
      if (!core_->options().contacts_enabled) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "contacts not initialized");
      }
      core_->contacts().remove(request->address());
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* Connect(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                    grpc::ByteBuffer* out) override {
    return answered_later<api::ConnectRequest, api::ConnectResponse>(ctx, in, out, [&](auto* call) {
      dial(core_->node().address, call->request.address(), call, /*node=*/true);
    });
  }

  grpc::ServerUnaryReactor* ConnectAs(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                      grpc::ByteBuffer* out) override {
    return answered_later<api::ConnectAsRequest, api::ConnectResponse>(ctx, in, out, [&](auto* call) {
      auto service = core_->service(call->request.service());
      if (!service) {
        call->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                  "service " + ensemble::detail::go_quote(call->request.service()) +
                                      " is not registered"));
        return;
      }
      dial(service->address(), call->request.address(), call, /*node=*/false);
    });
  }

  grpc::ServerUnaryReactor* AcceptConnection(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                             grpc::ByteBuffer* out) override {
    return unary<api::AcceptConnectionRequest, api::AcceptConnectionResponse>(
        ctx, in, out, [&](const auto* request, auto*) { return decide(request->address(), true); });
  }

  grpc::ServerUnaryReactor* RejectConnection(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                             grpc::ByteBuffer* out) override {
    return unary<api::RejectConnectionRequest, api::RejectConnectionResponse>(
        ctx, in, out, [&](const auto* request, auto*) { return decide(request->address(), false); });
  }

  grpc::ServerUnaryReactor* SendMessage(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                        grpc::ByteBuffer* out) override {
    return answered_later<api::SendMessageRequest, api::SendMessageResponse>(ctx, in, out, [&](auto* call) {
      const auto& request = call->request;
      if (request.text().empty()) {
        call->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "sending message: text is empty"));
        return;
      }
      Envelope env;
      env.set_kind(lb::ENVELOPE_CHAT);
      env.set_from_addr(core_->node().address);
      env.set_to_addr(request.address());
      env.set_text(request.text());
      const auto sent = core_->now();
      env.set_ts_ms(unix_ms(sent));
      env.set_message_id(random_hex(16));
      core_->route(env, [this, env, sent, call](Outcome o) {
        if (!o.ok) {
          call->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "sending message: " + o.reason));
          return;
        }
        call->reply.set_message_id(env.message_id());
        // The bus echoes the node's own sends (section 6).
        core_->bus().publish("chat_message",
                             chat_message_json(env.message_id(), env.from_addr(), env.to_addr(),
                                               env.text(), sent, core_->now(), false));
        call->Finish(grpc::Status::OK);
      });
    });
  }

  grpc::ServerWriteReactor<grpc::ByteBuffer>* SendFile(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* in) override {
    api::SendFileRequest request;
    grpc::ByteBuffer bytes(*in);
    if (auto refused = decode_received(bytes, core_->options().max_receive_message_bytes, request,
                                       Receiving::stream_message)) {
      return FileSender::refused(*refused);
    }
    if (auto st = authorize(ctx); !st.ok()) return FileSender::refused(st);
    return files_->send(request);
  }

  grpc::ServerUnaryReactor* AcceptFile(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override {
    return unary<api::AcceptFileRequest, api::AcceptFileResponse>(ctx, in, out, [&](const auto* request, auto*) {
      return files_->accept(request->transfer_id(), request->save_path());
    });
  }

  grpc::ServerUnaryReactor* RejectFile(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override {
    return unary<api::RejectFileRequest, api::RejectFileResponse>(
        ctx, in, out, [&](const auto* request, auto*) { return files_->reject(request->transfer_id()); });
  }

  grpc::ServerUnaryReactor* AddNode(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                    grpc::ByteBuffer* out) override {
    return unary<api::AddNodeRequest, api::AddNodeResponse>(ctx, in, out, [&](const auto* request, auto* reply) {
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

  grpc::ServerUnaryReactor* GetDebugInfo(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                         grpc::ByteBuffer* out) override {
    return unary<api::GetDebugInfoRequest, api::GetDebugInfoResponse>(ctx, in, out, [&](const auto*, auto* reply) {
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
  // What Subscribe meets first: grpc-go's receive limit (the request was received with a
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

  // A unary call whose answer is ready at once: `body(request, reply)` returns the status.
  template <class Request, class Response, class Body>
  grpc::ServerUnaryReactor* unary(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                  grpc::ByteBuffer* out, Body&& body) {
    return answered_later<Request, Response>(ctx, in, out, [&](auto* call) {
      call->Finish(body(&call->request, &call->reply));
    });
  }

  // A unary call that may finish later (a dial waits for the peer): `start(call)` makes sure
  // call->Finish() runs once. Before it, the request meets what every call meets first: the
  // daemon's receive checks on the bytes, then auth.
  template <class Request, class Response, class Start>
  grpc::ServerUnaryReactor* answered_later(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                           grpc::ByteBuffer* out, Start&& start) {
    auto* reactor = ctx->DefaultReactor();
    auto* call = new UnaryCall<Request, Response>{reactor, out};
    grpc::ByteBuffer bytes(*in);  // a reference to the same slices; the reader needs it mutable
    if (auto refused = decode_received(bytes, core_->options().max_receive_message_bytes, call->request,
                                       Receiving::unary_request)) {
      call->Finish(*refused);
      return reactor;
    }
    if (auto st = authorize(ctx); !st.ok()) {
      call->Finish(st);
      return reactor;
    }
    start(call);
    return reactor;
  }

  grpc::Status decide(const std::string& address, bool accept) {
    if (!core_->decide_node_request(address, accept)) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no pending request from " + address);
    }
    return grpc::Status::OK;
  }

  // Connect never fails at the gRPC level: a refused or impossible dial is a value.
  template <class Call>
  void dial(const std::string& from, const std::string& to, Call* call, bool node) {
    if (to == from) {
      call->reply.set_accepted(false);
      call->reply.set_message("cannot connect to self");
      call->Finish(grpc::Status::OK);
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
    core_->route(env, [this, to, node, call](Outcome o) {
      call->reply.set_accepted(o.ok);
      call->reply.set_message(o.ok ? "connected" : o.reason);
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
      call->Finish(grpc::Status::OK);
    });
  }

  Core* core_;
  FileTransfers* files_;
};

}  // namespace ensemble::testing::detail
