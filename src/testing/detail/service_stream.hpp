// One RegisterService call: the daemon side of a registered service (section 5).
//
// A grpc::ServerBidiReactor. Reads: the first message must be the manifest; after that each
// action is handled one at a time, in arrival order (the next read starts only when the
// current action is done, which for a send means when the peer's daemon has answered).
// Writes: one StartWrite in flight, fed from two queues: a priority lane for `registered`
// and ServiceErrors (never dropped, so an error can overtake queued events), and the
// event queue of `queue_depth` (256) that drops its OLDEST entry when full and counts it.
//
// Locking: every Start*/Finish happens under mu_ after checking that Finish has not been
// called, so nothing is started on a call that may already be done. gRPC runs these
// reactions on its own threads (never inline inside Start*), so holding mu_ there cannot
// self-deadlock. Lock order: mu_ before the core's lock (deliver() records the connection,
// link(), under mu_), never the other way: the core calls in here only without its lock,
// except dropped(), which takes no lock.
//
// Wire: the reactor reads and writes grpc::ByteBuffer (RegisterService is registered raw) so
// that each client message meets the daemon's own checks before it is parsed, with the
// daemon's exact statuses: over max_receive_message_bytes, RESOURCE_EXHAUSTED; a string
// field that is not UTF-8, INTERNAL. Either ends the stream and unregisters the service.
//
// Lifetime: the object is owned by shared_ptrs (its own `self_` until OnDone, the registry
// while registered, callbacks through weak_ptrs), so a late delivery never touches freed
// memory; after OnDone it refuses everything.
#pragma once

#include <ensemble/address.hpp>

#include "host.hpp"

#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/proto_buffer_writer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>

namespace ensemble::testing::detail {

// grpc-go's receive checks, in its words (daemon-protocol.md section 10). A message over the
// limit is refused before it is parsed; one that does not parse is refused for invalid
// UTF-8 when its wire form is sound (the only other way a proto3 message fails to parse).
// grpc-go words the parse failure of a unary request ("error unmarshalling request") apart
// from that of a stream message ("failed to unmarshal the received message").
enum class Receiving { unary_request, stream_message };

template <class Message>
std::optional<grpc::Status> decode_received(grpc::ByteBuffer& buffer, std::size_t limit, Message& out,
                                            Receiving what) {
  const std::size_t size = buffer.Length();
  if (size > limit) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "grpc: received message larger than max (" + std::to_string(size) +
                            " vs. " + std::to_string(limit) + ")");
  }
  // Parsed in place, as gRPC's own deserializer would; only a refusal reads it again.
  grpc::ProtoBufferReader reader(&buffer);
  if (out.ParseFromZeroCopyStream(&reader)) return std::nullopt;
  grpc::ProtoBufferReader again(&buffer);
  google::protobuf::UnknownFieldSet wire;
  const bool sound_wire = wire.ParseFromZeroCopyStream(&again);
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      std::string(what == Receiving::unary_request ? "grpc: error unmarshalling request: "
                                                                   : "grpc: failed to unmarshal the received message: ") +
                          (sound_wire ? "string field contains invalid UTF-8"
                                      : "proto: cannot parse invalid wire-format data"));
}

inline std::optional<grpc::Status> decode_client_message(grpc::ByteBuffer& buffer, std::size_t limit,
                                                         api::ServiceClientMessage& out) {
  return decode_received(buffer, limit, out, Receiving::stream_message);
}

inline api::ServiceServerMessage make_service_error(std::string message) {
  api::ServiceServerMessage m;
  m.mutable_error()->set_message(std::move(message));
  return m;
}

inline api::ServiceServerMessage make_service_event(const std::string& type,
                                                    const google::protobuf::MessageLite& payload) {
  api::ServiceServerMessage m;
  auto* ev = m.mutable_event();
  ev->set_type(type);
  payload.SerializeToString(ev->mutable_payload());
  return m;
}

// Section 5 item 2 as the daemon's validateManifest words it; "" when the manifest passes.
// (The transport check is this project's extension, in the same style.)
inline std::string validate_manifest(const api::ServiceManifest& m) {
  if (m.name().empty()) return "manifest.name is empty";
  const int acl = static_cast<int>(m.acl());
  if (acl < api::ACL_PUBLIC || acl > api::ACL_ALLOWLIST) {
    return "manifest.acl invalid: " + std::to_string(acl);
  }
  if (m.acl() == api::ACL_ALLOWLIST) {
    for (int i = 0; i < m.allowlist_size(); ++i) {
      if (!is_valid_address(m.allowlist(i))) {
        return "manifest.allowlist[" + std::to_string(i) + "] " +
               ensemble::detail::go_quote(m.allowlist(i)) + " is not a valid ensemble address";
      }
    }
  }
  const int transport = static_cast<int>(m.transport());
  if (transport < api::TRANSPORT_CHAT || transport > api::TRANSPORT_HTTP) {
    return "manifest.transport invalid: " + std::to_string(transport);
  }
  return {};
}

// Token bucket for rate_limit_per_minute / rate_limit_burst, one per (service, sender).
// Capacity is the burst, or the per-minute rate when no burst is given.
class RateBucket {
 public:
  // True when one more envelope may pass now; otherwise sets retry_after_ms.
  bool take(std::uint32_t per_minute, std::uint32_t burst, std::int64_t& retry_after_ms) {
    const double capacity = burst > 0 ? burst : per_minute;
    const double per_ms = per_minute / 60000.0;
    const auto now = std::chrono::steady_clock::now();
    if (!started_) {
      tokens_ = capacity;
      started_ = true;
    } else {
      const double elapsed =
          std::chrono::duration<double, std::milli>(now - last_).count();
      tokens_ = std::min(capacity, tokens_ + elapsed * per_ms);
    }
    last_ = now;
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return true;
    }
    retry_after_ms = static_cast<std::int64_t>((1.0 - tokens_) / per_ms) + 1;
    return false;
  }

 private:
  bool started_ = false;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point last_;
};

class ServiceStream final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  ServiceStream(StreamHost* host, std::optional<std::string> token_name, std::size_t queue_depth)
      : host_(host), token_name_(std::move(token_name)), depth_(std::max<std::size_t>(1, queue_depth)) {}

  // Starts the call (the first read) and keeps `self` alive until OnDone.
  static ServiceStream* start(const std::shared_ptr<ServiceStream>& self) {
    std::lock_guard lock(self->mu_);
    self->self_ = self;
    self->weak_self_ = self;
    self->StartRead(&self->in_buffer_);
    return self.get();
  }

  // ---- inbound traffic (any thread) ----------------------------------------------------

  // Passes `env` through this service's gate (ACL, payload cap, rate limit) and queues the
  // event. `done` runs exactly once: at once, or for a dial when the service decides.
  // Returns the request id for a dial that reached the service, "" otherwise.
  std::string deliver(const Envelope& env, Completion done) {
    const std::string& from = env.from_addr();
    // ACL first (section 5 item 9). The contact lookup happens outside mu_.
    const bool contact = acl_ == api::ACL_CONTACTS && host_->is_contact(from);
    std::unique_lock lock(mu_);
    if (!accepting_locked()) {
      lock.unlock();
      done(Outcome::refused("service is not registered"));
      return {};
    }
    if (acl_ == api::ACL_ALLOWLIST && allowlist_.count(from) == 0) {
      lock.unlock();
      done(Outcome::refused("not on allowlist"));
      return {};
    }
    if (acl_ == api::ACL_CONTACTS && !contact) {
      lock.unlock();
      done(Outcome::refused("not in contacts"));
      return {};
    }
    const std::int64_t ts = env.ts_ms() != 0 ? env.ts_ms() : unix_ms(host_->now());
    switch (env.kind()) {
      case lb::ENVELOPE_DIAL: {
        const std::string id = from + "-" + std::to_string(++request_seq_);
        auto timer = host_->timer().limit(host_->request_timeout(), [w = weak_self_, id] {
          if (auto s = w.lock()) s->expire_request(id);
        });
        pending_[id] = Pending{from, std::move(done), timer};
        api::ServiceConnectionRequestEvent ev;
        ev.set_request_id(id);
        ev.set_from_addr(from);
        enqueue_event_locked(make_service_event("connection_request", ev));
        return id;
      }
      case lb::ENVELOPE_FILE_OFFER:
        lock.unlock();
        done(Outcome::refused("services do not accept files"));
        return {};
      case lb::ENVELOPE_BYTES:
        if (transport_ != api::TRANSPORT_RPC) {
          lock.unlock();
          done(Outcome::refused("peer does not accept rpc messages (its transport is not rpc)"));
          return {};
        }
        break;
      case lb::ENVELOPE_CHAT:
      case lb::ENVELOPE_INTRODUCTION:
        break;
      default:  // a kind from a newer or broken peer daemon
        lock.unlock();
        done(Outcome::refused("unknown envelope kind " + std::to_string(static_cast<int>(env.kind()))));
        return {};
    }
    // Chat, bytes, introductions: the inbound caps of section 3.
    const std::size_t size = env.kind() == lb::ENVELOPE_CHAT ? env.text().size() : env.payload().size();
    if (size > max_payload_) {
      api::ServiceServerMessage err = make_service_error(
          "payload too large: " + std::to_string(size) + " bytes from " + from +
          " exceeds the limit of " + std::to_string(max_payload_) + " bytes");
      err.mutable_error()->set_code("payload_too_large");
      err.mutable_error()->set_limit_bytes(max_payload_);
      err.mutable_error()->set_from_addr(from);
      push_priority_locked(std::move(err));
      lock.unlock();
      done(Outcome::refused("payload too large (" + std::to_string(size) + " bytes > limit " +
                            std::to_string(max_payload_) + ")"));
      return {};
    }
    std::int64_t retry_after = 0;
    if (rate_per_minute_ > 0 &&
        !buckets_[from].take(rate_per_minute_, rate_burst_, retry_after)) {
      api::ServiceServerMessage err = make_service_error(
          "rate limited: " + from + " exceeded " + std::to_string(rate_per_minute_) +
          " messages per minute; retry after " + std::to_string(retry_after) + " ms");
      err.mutable_error()->set_code("rate_limited");
      err.mutable_error()->set_retry_after_ms(retry_after);
      err.mutable_error()->set_from_addr(from);
      push_priority_locked(std::move(err));
      lock.unlock();
      done(Outcome::refused("rate limited (retry after " + std::to_string(retry_after) + " ms)"));
      return {};
    }
    // It came over a connection, which the service's answers may use: recorded before the
    // service can see the event.
    host_->link(address_, from);
    if (env.kind() == lb::ENVELOPE_CHAT) {
      api::ServiceChatMessageEvent ev;
      ev.set_from_addr(from);
      ev.set_text(env.text());
      ev.set_ts(ts);
      enqueue_event_locked(make_service_event("chat_message", ev));
    } else if (env.kind() == lb::ENVELOPE_BYTES) {
      api::ServiceRpcMessageEvent ev;
      ev.set_from_addr(from);
      ev.set_payload(env.payload());
      ev.set_ts(ts);
      enqueue_event_locked(make_service_event("rpc_message", ev));
    } else {
      api::ServicePeerIntroductionEvent ev;
      ev.set_from_service_addr(from);  // attested: the sender's identity as routed
      ev.set_peer_addr(env.peer_addr());
      ev.set_session_id(env.session_id());
      ev.set_expires_at_ms(env.expires_at_ms());
      ev.set_role_hint(env.role_hint());
      ev.set_payload(env.payload());
      enqueue_event_locked(make_service_event("peer_introduction", ev));
    }
    lock.unlock();
    done(Outcome::accepted());
    return {};
  }

  // Test hook: a ready-made event (any type, any payload bytes), through the drop queue.
  bool inject_raw(api::ServiceServerMessage msg) {
    std::lock_guard lock(mu_);
    if (!accepting_locked()) return false;
    enqueue_event_locked(std::move(msg));
    return true;
  }

  // Benchmark hook: writes `count` copies of one chat event with flow control (each write
  // waits for the previous one) instead of the drop queue. Blocks until all are written,
  // the stream ends, or `timeout`; returns how many were written. One burst at a time.
  std::uint64_t burst(const std::string& from, std::size_t count, const std::string& text,
                      std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    if (!accepting_locked() || burst_remaining_ > 0 || count == 0) return 0;
    api::ServiceChatMessageEvent ev;
    ev.set_from_addr(from);
    ev.set_text(text);
    ev.set_ts(unix_ms(host_->now()));
    burst_msg_ = make_service_event("chat_message", ev);
    burst_written_ = 0;
    burst_remaining_ = count;
    pump_locked();
    ensemble::detail::wait_up_to(cv_, lock, timeout, [&] { return burst_remaining_ == 0 || cancelled_ || done_; });
    burst_remaining_ = 0;
    return burst_written_;
  }

  // Ends the call from the daemon side (shutdown): `status` after nothing more.
  void end(grpc::Status status) {
    request_finish(std::move(status), /*flush=*/false);
    teardown();
  }

  // Called by the registry on the stream's own thread, before the registry publishes it, so
  // address() needs no lock afterwards.
  void set_identity(const Identity& id) {
    address_ = id.address;
    onion_ = id.onion;
  }

  // Lock-free, so the core may read it under its own lock (the registry's totals).
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  const std::string& name() const { return name_; }        // set before registration
  const std::string& address() const { return address_; }  // set before registration
  api::ACL acl() const { return acl_; }
  api::ServiceTransport transport() const { return transport_; }

 private:
  struct Pending {
    std::string from;
    Completion done;
    Timer::Id timer;
  };

  // ---- reactions -----------------------------------------------------------------------

  void OnReadDone(bool ok) override {
    if (!ok) {
      on_read_end();
      return;
    }
    if (auto refused = decode_client_message(in_buffer_, host_->max_receive_message_bytes(), in_)) {
      fail({}, std::move(*refused));
      teardown();  // the daemon unregisters at once
      return;
    }
    bool registered;
    {
      std::lock_guard lock(mu_);
      registered = registered_;
    }
    if (!registered) {
      handle_manifest();
      return;
    }
    host_->on_action(name_, in_);
    handle_action();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (burst_write_) {
      burst_write_ = false;
      if (ok) {
        ++burst_written_;
        if (burst_remaining_ > 0) --burst_remaining_;
      }
      cv_.notify_all();
    }
    if (!ok) {
      // The call is dead (cancelled, transport gone): nothing more can reach the client.
      mark_cancelled_locked();
      request_finish_locked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"), false);
    }
    pump_locked();
  }

  void OnCancel() override {
    {
      std::lock_guard lock(mu_);
      mark_cancelled_locked();
      request_finish_locked(grpc::Status::CANCELLED, false);
      pump_locked();
    }
    teardown();
  }

  void OnDone() override {
    teardown();
    std::shared_ptr<ServiceStream> keep;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      cv_.notify_all();
      keep = std::move(self_);
    }
    // `keep` may be the last owner: this object may be destroyed when it goes out of scope.
  }

  // ---- reading ---------------------------------------------------------------------------

  void handle_manifest() {
    if (in_.msg_case() != api::ServiceClientMessage::kManifest) {
      const std::string text = "first message must be a ServiceManifest";
      fail(text, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, text));
      return;
    }
    const api::ServiceManifest& m = in_.manifest();
    if (std::string err = validate_manifest(m); !err.empty()) {
      fail(err, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, err));
      return;
    }
    // The gate's settings are in place before the registry can route anything here.
    name_ = m.name();
    acl_ = m.acl();
    allowlist_ = std::set<std::string>(m.allowlist().begin(), m.allowlist().end());
    transport_ = m.transport();
    max_payload_ = m.max_payload_bytes() != 0 ? m.max_payload_bytes()
                                              : host_->default_max_payload_bytes();
    rate_per_minute_ = m.rate_limit_per_minute();
    rate_burst_ = m.rate_limit_burst();

    std::shared_ptr<ServiceStream> self = weak_self_.lock();
    if (!self) return;
    {
      // Deliverable from the moment the registry publishes it; the events wait in the queue
      // until `registered` has gone out.
      std::lock_guard lock(mu_);
      gate_ready_ = true;
    }
    Registration reg = host_->register_service(self, m, token_name_);
    if (!reg.status.ok()) {
      fail(reg.error_message, reg.status);
      return;
    }
    // The name is the stream's from here on, `registered` sent or not: whatever ends the
    // stream (the client's cancel or deadline while registration_delay runs) gives it back.
    bool ended = false;
    {
      std::lock_guard lock(mu_);
      ended = torn_down_;
      in_registry_ = !ended;
    }
    if (ended) {  // teardown() ran while the registry took the name: give it back here
      host_->unregister_service(name_, this);
      return;
    }
    if (const auto delay = host_->registration_delay(); delay.count() > 0) {
      // The daemon answers once the onion descriptor is published.
      host_->timer().after(delay, [w = weak_self_] {
        if (auto s = w.lock()) s->confirm_registration();
      });
      return;
    }
    confirm_registration();
  }

  void confirm_registration() {
    std::lock_guard lock(mu_);
    if (finish_requested_ || cancelled_) return;
    registered_ = true;
    api::ServiceServerMessage msg;
    msg.mutable_registered()->set_address(address_);
    msg.mutable_registered()->set_onion(onion_);
    // Ahead of anything already queued: `registered` is always the first server message.
    priority_.push_front(std::move(msg));
    pump_locked();
    start_read_locked();
  }

  void handle_action() {
    switch (in_.msg_case()) {
      case api::ServiceClientMessage::kManifest:
        return recoverable("manifest may only be sent once, at the start of the stream");
      case api::ServiceClientMessage::kSendMessage: {
        const auto& a = in_.send_message();
        if (a.to_addr().empty() || a.text().empty()) {
          return recoverable("send_message requires to_addr and text");
        }
        Envelope env;
        env.set_kind(lb::ENVELOPE_CHAT);
        env.set_to_addr(a.to_addr());
        env.set_text(a.text());
        return send(std::move(env), "send_message: ");
      }
      case api::ServiceClientMessage::kSendBytes: {
        const auto& a = in_.send_bytes();
        if (transport_ != api::TRANSPORT_RPC) {
          return recoverable("send_bytes requires a service registered with transport rpc");
        }
        if (a.to_addr().empty()) return recoverable("send_bytes requires to_addr");
        Envelope env;
        env.set_kind(lb::ENVELOPE_BYTES);
        env.set_to_addr(a.to_addr());
        env.set_payload(a.payload());
        return send(std::move(env), "send_bytes: ");
      }
      case api::ServiceClientMessage::kIntroducePeers: {
        const auto& a = in_.introduce_peers();
        if (a.to_addr().empty() || a.other_addr().empty()) {
          return recoverable("introduce_peers requires to_addr and other_addr");
        }
        if (!is_valid_address(a.other_addr())) {
          return recoverable("introduce_peers: other_addr " +
                             ensemble::detail::go_quote(a.other_addr()) +
                             " is not a valid ensemble address");
        }
        Envelope env;
        env.set_kind(lb::ENVELOPE_INTRODUCTION);
        env.set_to_addr(a.to_addr());
        env.set_peer_addr(a.other_addr());
        env.set_session_id(a.session_id());
        env.set_expires_at_ms(a.expires_at_ms());
        env.set_role_hint(a.role_hint());
        env.set_payload(a.payload());
        return send(std::move(env), "introduce_peers: ");
      }
      case api::ServiceClientMessage::kAccept:
        return decide(in_.accept().request_id(), true, {}, "accept");
      case api::ServiceClientMessage::kReject:
        return decide(in_.reject().request_id(), false, in_.reject().reason(), "reject");
      default:
        return recoverable("unknown ServiceClientMessage variant");
    }
  }

  // Routes one outbound envelope as this service's identity (section 5 item 10); the next
  // read starts when the route has an outcome, keeping actions strictly in order.
  void send(Envelope env, std::string error_prefix) {
    env.set_from_addr(address_);
    env.set_ts_ms(unix_ms(host_->now()));
    host_->route(std::move(env), [w = weak_self_, prefix = std::move(error_prefix)](Outcome o) {
      auto self = w.lock();
      if (!self) return;
      std::lock_guard lock(self->mu_);
      if (!o.ok) self->push_priority_locked(make_service_error(prefix + o.reason));
      self->start_read_locked();
    });
  }

  void decide(const std::string& id, bool accept, const std::string& reason, const char* verb) {
    if (id.empty()) return recoverable(std::string(verb) + " requires request_id");
    std::optional<Pending> p;
    {
      std::lock_guard lock(mu_);
      if (auto it = pending_.find(id); it != pending_.end()) {
        p = std::move(it->second);
        pending_.erase(it);
      }
    }
    if (!p) {
      return recoverable("no pending connection request " + ensemble::detail::go_quote(id));
    }
    host_->timer().cancel(p->timer);
    if (accept) host_->link(address_, p->from);
    host_->on_decision(name_, id, accept ? "accepted" : "rejected: " + reason);
    p->done(accept ? Outcome::accepted() : Outcome::refused(reason));
    std::lock_guard lock(mu_);
    start_read_locked();
  }

  void expire_request(const std::string& id) {
    std::optional<Pending> p;
    {
      std::lock_guard lock(mu_);
      if (auto it = pending_.find(id); it != pending_.end()) {
        p = std::move(it->second);
        pending_.erase(it);
      }
    }
    if (!p) return;
    host_->on_decision(name_, id, "rejected: connection request timed out");
    p->done(Outcome::refused("connection request timed out"));
  }

  // A bad action: a ServiceError, and the stream stays open (section 5 item 5).
  void recoverable(std::string text) {
    std::lock_guard lock(mu_);
    push_priority_locked(make_service_error(std::move(text)));
    start_read_locked();
  }

  // A refused registration: the ServiceError first, then the status.
  void fail(const std::string& text, grpc::Status status) {
    std::lock_guard lock(mu_);
    if (!text.empty()) push_priority_locked(make_service_error(text));
    request_finish_locked(std::move(status), false);
    pump_locked();
  }

  void on_read_end() {
    bool registered;
    {
      std::lock_guard lock(mu_);
      read_done_ = true;
      registered = registered_;
    }
    teardown();
    // A half-close ends the call with OK once the queued events are out; one that never
    // sent a manifest ends as the daemon's Recv error would (io.EOF → UNKNOWN "EOF").
    request_finish(registered ? grpc::Status::OK : grpc::Status(grpc::StatusCode::UNKNOWN, "EOF"),
                   /*flush=*/registered);
  }

  void start_read_locked() {
    if (!finish_called_ && !finish_requested_ && !read_done_ && !cancelled_) StartRead(&in_buffer_);
  }

  // ---- ending ----------------------------------------------------------------------------

  // Unregisters (section 5 item 8) and rejects what is pending (item 7). Runs once.
  void teardown() {
    std::map<std::string, Pending> pending;
    bool registered;
    {
      std::lock_guard lock(mu_);
      if (torn_down_) return;
      torn_down_ = true;
      registered = in_registry_;
      pending.swap(pending_);
    }
    if (registered) host_->unregister_service(name_, this);
    for (auto& [id, p] : pending) {
      host_->timer().cancel(p.timer);
      host_->on_decision(name_, id, "rejected: service stream closed");
      p.done(Outcome::refused("service stream closed"));
    }
  }

  void request_finish(grpc::Status status, bool flush) {
    std::lock_guard lock(mu_);
    request_finish_locked(std::move(status), flush);
    pump_locked();
  }

  void request_finish_locked(grpc::Status status, bool flush) {
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = std::move(status);
    flush_before_finish_ = flush;
  }

  void mark_cancelled_locked() {
    cancelled_ = true;
    priority_.clear();
    events_.clear();
    burst_remaining_ = 0;
    cv_.notify_all();
  }

  bool accepting_locked() const {
    return gate_ready_ && !torn_down_ && !cancelled_ && !finish_requested_;
  }

  // ---- writing ---------------------------------------------------------------------------

  void push_priority_locked(api::ServiceServerMessage msg) {
    if (cancelled_ || finish_called_) return;
    priority_.push_back(std::move(msg));
    pump_locked();
  }

  void enqueue_event_locked(api::ServiceServerMessage msg) {
    if (events_.size() >= depth_) {
      events_.pop_front();  // section 5 item 6: the oldest goes, silently
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
    events_.push_back(std::move(msg));
    pump_locked();
  }

  // Starts the next write, or Finish once nothing is left that should go out first.
  void pump_locked() {
    if (finish_called_ || writing_) return;
    if (!cancelled_) {
      if (!priority_.empty()) {
        start_write_locked(priority_.front());
        priority_.pop_front();
        return;
      }
      const bool events_wanted = registered_ && (!finish_requested_ || flush_before_finish_);
      if (events_wanted && !events_.empty()) {
        start_write_locked(events_.front());
        events_.pop_front();
        return;
      }
      if (events_wanted && !finish_requested_ && burst_remaining_ > 0) {
        burst_write_ = true;
        start_write_locked(burst_msg_);
        return;
      }
    }
    if (finish_requested_) {
      finish_called_ = true;
      Finish(finish_status_);
    }
  }

  void start_write_locked(const api::ServiceServerMessage& msg) {
    bool own_buffer = false;
    out_buffer_.Clear();  // the previous write is done with it
    grpc::SerializationTraits<api::ServiceServerMessage>::Serialize(msg, &out_buffer_, &own_buffer);
    writing_ = true;
    StartWrite(&out_buffer_);
  }

  StreamHost* const host_;
  const std::optional<std::string> token_name_;
  const std::size_t depth_;

  // Immutable once the manifest is accepted (published to other threads by the registry).
  std::string name_;
  api::ACL acl_ = api::ACL_PUBLIC;
  std::set<std::string> allowlist_;
  api::ServiceTransport transport_ = api::TRANSPORT_CHAT;
  std::uint32_t max_payload_ = 0;
  std::uint32_t rate_per_minute_ = 0;
  std::uint32_t rate_burst_ = 0;
  std::string address_;
  std::string onion_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool gate_ready_ = false;  // the manifest's gate settings are in place
  bool registered_ = false;  // `registered` is queued; actions are read from now on
  bool in_registry_ = false;  // the registry holds the name for this stream
  bool read_done_ = false;
  bool torn_down_ = false;
  bool cancelled_ = false;
  bool done_ = false;
  bool writing_ = false;
  bool burst_write_ = false;
  bool finish_requested_ = false;
  bool flush_before_finish_ = false;
  bool finish_called_ = false;
  grpc::Status finish_status_;

  grpc::ByteBuffer in_buffer_;    // the read in flight
  api::ServiceClientMessage in_;   // ... once it passed the daemon's checks
  grpc::ByteBuffer out_buffer_;    // the write in flight
  std::deque<api::ServiceServerMessage> priority_;
  std::deque<api::ServiceServerMessage> events_;
  // Written under mu_; read without it (dropped()). Final once torn_down_ is set (nothing is
  // queued after that), which is before the registry reads it for the last time.
  std::atomic<std::uint64_t> dropped_{0};

  std::uint64_t request_seq_ = 0;
  std::map<std::string, Pending> pending_;
  std::map<std::string, RateBucket> buckets_;

  api::ServiceServerMessage burst_msg_;
  std::uint64_t burst_remaining_ = 0;
  std::uint64_t burst_written_ = 0;

  std::shared_ptr<ServiceStream> self_;
  std::weak_ptr<ServiceStream> weak_self_;
};

}  // namespace ensemble::testing::detail
