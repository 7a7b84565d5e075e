// The daemon double's state and routing: the service registry, the node identity, hosted
// addresses, synthetic peers, the rendezvous, and the records the test hooks read.
//
// Routing an envelope to address A (from a service's stream, a unary call, or a hook):
//   1. A invalid                          → refused: invalid address "A"
//   2. A is this node or a live service   → delivered here (the receiver's gate decides)
//   3. A is listed in the rendezvous dir  → handed to that daemon over its socket
//   4. otherwise                          → a synthetic peer: accepts everything, and
//                                           peer_inbox(A) records what it got
//
// Locks: mu_ (registry, node state) and log_mu_ (hook records) are never held while calling
// into a stream, a subscriber, a completion or the rendezvous, so no lock order exists to
// get wrong. The one call into a stream under mu_ is ServiceStream::dropped(), which takes
// no lock: a stream holds its own lock while it calls link() here.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/testing/daemon_double.hpp>  // PeerMessage
#include <ensemble/testing/options.hpp>

#include "contacts.hpp"
#include "host.hpp"
#include "identity_store.hpp"
#include "node_events.hpp"
#include "rendezvous.hpp"
#include "service_stream.hpp"
#include "timer.hpp"
#include "util.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ensemble::testing::detail {

inline std::string envelope_kind_name(lb::EnvelopeKind kind) {
  switch (kind) {
    case lb::ENVELOPE_CHAT: return "chat";
    case lb::ENVELOPE_BYTES: return "bytes";
    case lb::ENVELOPE_DIAL: return "dial";
    case lb::ENVELOPE_INTRODUCTION: return "introduction";
    case lb::ENVELOPE_FILE_OFFER: return "file";
    default: return "unknown";
  }
}

inline bool is_valid_service_name(const std::string& name) {
  static const std::regex pattern("^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$");
  return std::regex_match(name, pattern);
}

class Core final : public StreamHost, public PeerHost {
 public:
  explicit Core(DaemonDoubleOptions options)
      : options_(std::move(options)),
        keys_(options_.data_dir),
        node_(keys_.get_or_create("node")),
        contacts_(options_.data_dir) {
    if (!options_.clock) options_.clock = [] { return std::chrono::system_clock::now(); };
  }

  // Joins the rendezvous directory (when one is configured). Separate from construction so
  // that every handler is installed before another daemon can reach this one.
  void start_rendezvous() {
    if (!options_.loopback_dir.empty() && !rendezvous_) {
      rendezvous_ = std::make_unique<Rendezvous>(options_.loopback_dir, node_.address,
                                                 node_.onion, this);
    }
  }

  // Tor's start-up as the daemon goes through it (options.bootstrap_time; none by default):
  // tor_bootstrap events {"percent","summary"} in five steps, then tor_ready with the node's
  // onion, after which RegisterService is served and GetStatus says "ready". Called once the
  // API listens.
  void start_bootstrap() {
    const auto total = std::min(options_.bootstrap_time, ensemble::detail::kForever);  // longer: never
    if (total.count() <= 0) {
      tor_ready_ = true;
      return;
    }
    static constexpr std::pair<int, const char*> steps[] = {
        {0, "Starting"},
        {25, "Loading relay descriptors"},
        {50, "Loading relay descriptors"},
        {75, "Establishing a Tor circuit"},
        {100, "Done"}};
    for (int i = 0; i < 5; ++i) {
      timer_.after(total * i / 5, [this, i] {
        bus_.publish("tor_bootstrap",
                     nlohmann::json{{"percent", steps[i].first}, {"summary", steps[i].second}}.dump());
      });
    }
    timer_.after(total, [this] {
      tor_ready_ = true;
      bus_.publish("tor_ready", nlohmann::json(node_.onion).dump());
    });
  }
  bool tor_ready() const { return tor_ready_; }

  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
  ~Core() override { stop_peers(); }

  const DaemonDoubleOptions& options() const { return options_; }
  const Identity& node() const { return node_; }
  ContactStore& contacts() { return contacts_; }
  NodeEventBus& bus() { return bus_; }
  Rendezvous* rendezvous() { return rendezvous_.get(); }

  // ---- StreamHost ------------------------------------------------------------------------

  Registration register_service(const std::shared_ptr<ServiceStream>& stream,
                                const api::ServiceManifest& m,
                                const std::optional<std::string>& token_name) override {
    const std::string& name = m.name();
    auto refuse = [&](grpc::StatusCode code, const std::string& status_text,
                      const std::string& error_text) {
      return Registration{grpc::Status(code, status_text), error_text, {}};
    };
    if (token_name && *token_name != name) {
      const std::string why = "service token is bound to " + ensemble::detail::go_quote(*token_name) +
                              ", not " + ensemble::detail::go_quote(name);
      return refuse(grpc::StatusCode::PERMISSION_DENIED, why, "registering service: " + why);
    }
    if (m.transport() == api::TRANSPORT_HTTP) {
      const std::string why = "http transport is not supported under loopback signaling";
      return refuse(grpc::StatusCode::FAILED_PRECONDITION, why, "registering service: " + why);
    }
    const std::string taken = "services: service already registered";
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return refuse(grpc::StatusCode::UNAVAILABLE, "daemon shutting down", "daemon shutting down");
      }
      // "node" is the daemon's own service (section 5a).
      if (name == "node" || services_.count(name)) {
        return refuse(grpc::StatusCode::ALREADY_EXISTS, taken, "registering service: " + taken);
      }
    }
    if (!is_valid_service_name(name)) {
      const std::string why = "registering service: loading identity for " +
                              ensemble::detail::go_quote(name) + ": identity: invalid service name " +
                              ensemble::detail::go_quote(name) +
                              " (lowercase alphanumeric, '-' and '_' only)";
      return refuse(grpc::StatusCode::INTERNAL, why, why);
    }
    Identity id = keys_.get_or_create(name);
    stream->set_identity(id);
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return refuse(grpc::StatusCode::UNAVAILABLE, "daemon shutting down", "daemon shutting down");
      }
      if (services_.count(name)) {  // lost a race with another registration of the name
        return refuse(grpc::StatusCode::ALREADY_EXISTS, taken, "registering service: " + taken);
      }
      services_[name] = stream;
      by_address_[id.address] = stream;
      known_.insert(id.address);
      registry_cv_.notify_all();
    }
    if (rendezvous_) rendezvous_->publish(id.address);
    return Registration{grpc::Status::OK, {}, std::move(id)};
  }

  void unregister_service(const std::string& name, const ServiceStream* stream) override {
    std::string address;
    {
      std::lock_guard lock(mu_);
      auto it = services_.find(name);
      if (it == services_.end() || it->second.get() != stream) return;
      address = it->second->address();
      retired_drops_[name] += it->second->dropped();
      services_.erase(it);
      by_address_.erase(address);
      registry_cv_.notify_all();
    }
  }

  void route(Envelope env, Completion done) override {
    const std::string to = env.to_addr();
    if (!is_valid_address(to)) {
      done(Outcome::refused("invalid address " + ensemble::detail::go_quote(to)));
      return;
    }
    if (is_unreachable(to)) {
      done(Outcome::refused("peer " + to + " is unreachable"));
      return;
    }
    if (env.kind() == lb::ENVELOPE_DIAL) {
      done = [this, from = env.from_addr(), to, inner = std::move(done)](Outcome o) {
        if (o.ok) link(from, to);
        inner(std::move(o));
      };
    }
    if (deliver_local(env, done)) return;
    // Chat leaves this daemon only over an established connection (section 10).
    if (env.kind() == lb::ENVELOPE_CHAT && !linked(env.from_addr(), to)) {
      done(Outcome::refused("peer " + to + " not connected"));
      return;
    }
    if (rendezvous_) {
      if (auto socket = rendezvous_->lookup(to)) {
        // A dial or file offer waits for the far side's decision: as long as its own limit
        // allows (none by default), plus time for the hand-over.
        const bool decided_later =
            env.kind() == lb::ENVELOPE_DIAL || env.kind() == lb::ENVELOPE_FILE_OFFER;
        const auto timeout = !decided_later ? std::chrono::milliseconds(10'000)
                              : options_.request_timeout.count() > 0
                                  ? options_.request_timeout + std::chrono::seconds(5)
                                  : std::chrono::milliseconds(std::chrono::hours(24));
        rendezvous_->send(*socket, env, timeout, std::move(done));
        return;
      }
    }
    deliver_synthetic(env);
    done(Outcome::accepted());
  }

  bool is_contact(const std::string& address) override { return contacts_.contains(address); }

  void on_action(const std::string& service, const api::ServiceClientMessage& m) override {
    std::function<void(std::string_view, const api::ServiceClientMessage&)> observer;
    {
      std::lock_guard lock(log_mu_);
      observer = observer_;
    }
    // The observer runs before the action is counted, so whoever wait_for_actions() wakes
    // also sees what the observer did.
    if (observer) observer(service, m);
    std::lock_guard lock(log_mu_);
    auto& log = actions_[service];
    ++log.count;
    if (options_.record_traffic) log.messages.push_back(m);
    log_cv_.notify_all();
  }

  void on_decision(const std::string& service, const std::string& request_id,
                   const std::string& decision) override {
    std::lock_guard lock(log_mu_);
    decisions_[request_id] = decision;
    service_decisions_[{service, request_id}] = decision;
    log_cv_.notify_all();
  }

  Timer& timer() override { return timer_; }
  std::chrono::system_clock::time_point now() override { return options_.clock(); }
  std::chrono::milliseconds request_timeout() override { return options_.request_timeout; }
  std::size_t max_receive_message_bytes() override { return options_.max_receive_message_bytes; }
  std::chrono::milliseconds registration_delay() override { return options_.registration_delay; }
  std::uint32_t default_max_payload_bytes() override { return options_.default_max_payload_bytes; }

  // ---- PeerHost --------------------------------------------------------------------------

  void deliver_inbound(Envelope env, Completion done) override {
    if (!deliver_local(env, done)) {
      done(Outcome::refused("peer " + env.to_addr() + " is not registered"));
    }
  }

  lb::ChunkReply put_chunk(const lb::FileChunk& chunk) override {
    lb::ChunkReply reply;
    if (chunk_sink_) return chunk_sink_(chunk);
    reply.set_ok(false);
    reply.set_error("no transfer " + chunk.transfer_id());
    return reply;
  }

  // ---- registry lookups (hooks and node calls) ----------------------------------------

  std::shared_ptr<ServiceStream> service(std::string_view name) const {
    std::lock_guard lock(mu_);
    if (auto it = services_.find(std::string(name)); it != services_.end()) return it->second;
    return nullptr;
  }

  bool wait_service(std::string_view name, bool registered, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return ensemble::detail::wait_up_to(registry_cv_, lock, timeout, [&] {
      return (services_.count(std::string(name)) > 0) == registered;
    });
  }

  std::vector<std::shared_ptr<ServiceStream>> all_services() const {
    std::lock_guard lock(mu_);
    std::vector<std::shared_ptr<ServiceStream>> out;
    for (const auto& [_, s] : services_) out.push_back(s);
    return out;
  }

  std::uint64_t dropped_node_events() const { return bus_.dropped(); }

  std::uint64_t dropped_events(std::string_view name) const {
    std::lock_guard lock(mu_);
    std::uint64_t total = 0;
    if (auto it = retired_drops_.find(std::string(name)); it != retired_drops_.end()) {
      total += it->second;
    }
    if (auto it = services_.find(std::string(name)); it != services_.end()) {
      total += it->second->dropped();
    }
    return total;
  }

  bool is_hosted(const std::string& address) const {
    std::lock_guard lock(mu_);
    return address == node_.address || by_address_.count(address) > 0;
  }

  void set_unreachable(const std::string& address, bool unreachable) {
    std::lock_guard lock(mu_);
    if (unreachable) {
      unreachable_.insert(address);
    } else {
      unreachable_.erase(address);
    }
  }

  // ---- tokens ------------------------------------------------------------------------------

  std::string mint_token(std::string_view name) {
    std::string token = random_hex(32);
    std::lock_guard lock(mu_);
    tokens_[token] = std::string(name);
    return token;
  }

  std::optional<std::string> token_name(std::string_view token) const {
    std::lock_guard lock(mu_);
    if (auto it = tokens_.find(std::string(token)); it != tokens_.end()) return it->second;
    return std::nullopt;
  }

  // ---- node identity: inbound (operator side) ------------------------------------------

  // Node-level pending requests, keyed by the requester's address (AcceptConnection takes
  // an address, not an id).
  bool decide_node_request(const std::string& from, bool accept) {
    Completion done;
    {
      std::lock_guard lock(mu_);
      auto it = node_pending_.find(from);
      if (it == node_pending_.end()) return false;
      done = std::move(it->second.done);
      timer_.cancel(it->second.timer);
      node_pending_.erase(it);
    }
    if (accept) mark_connected(from);
    done(accept ? Outcome::accepted() : Outcome::refused("rejected by user"));
    return true;
  }

  void mark_connected(const std::string& peer) {
    link(node_.address, peer);
    {
      std::lock_guard lock(mu_);
      connected_[peer] = unix_ms(now());
    }
    contacts_.touch(peer, unix_ms(now()));
    bus_.publish("connection_state", connection_state_json(peer, ConnState::connected, ""));
    bus_.publish("peer_online", peer_online_json(peer, true));
  }

  // ---- connections: who may chat with whom ----------------------------------------------
  //
  // The daemon sends chat only over an established connection (section 10: "peer <addr>
  // not connected" otherwise). In the double a connection between a hosted identity and a
  // peer is established, for both directions, by a dial either way that the other side
  // accepted, and by anything the peer delivered to that identity (a chat, bytes, an
  // introduction: it could only send them connected). Identities hosted by the same double
  // reach each other without one.
  void link(const std::string& local, const std::string& remote) override {
    std::lock_guard lock(mu_);
    links_.emplace(local, remote);
    links_.emplace(remote, local);
  }
  bool linked(const std::string& local, const std::string& remote) const {
    std::lock_guard lock(mu_);
    return links_.count({local, remote}) > 0;
  }

  std::map<std::string, std::int64_t> connected_peers() const {
    std::lock_guard lock(mu_);
    return connected_;
  }

  // ---- hook records ----------------------------------------------------------------------

  std::vector<api::ServiceClientMessage> actions(std::string_view service) const {
    std::lock_guard lock(log_mu_);
    if (auto it = actions_.find(std::string(service)); it != actions_.end()) {
      return it->second.messages;
    }
    return {};
  }

  std::uint64_t action_count(std::string_view service) const {
    std::lock_guard lock(log_mu_);
    if (auto it = actions_.find(std::string(service)); it != actions_.end()) return it->second.count;
    return 0;
  }

  bool wait_for_actions(std::string_view service, std::size_t count,
                        std::chrono::milliseconds timeout) const {
    std::unique_lock lock(log_mu_);
    return ensemble::detail::wait_up_to(log_cv_, lock, timeout, [&] {
      auto it = actions_.find(std::string(service));
      return it != actions_.end() && it->second.count >= count;
    });
  }

  std::optional<std::string> decision(std::string_view request_id) const {
    std::lock_guard lock(log_mu_);
    if (auto it = decisions_.find(std::string(request_id)); it != decisions_.end()) {
      return it->second;
    }
    return std::nullopt;
  }

  std::optional<std::string> wait_decision(std::string_view request_id,
                                           std::chrono::milliseconds timeout) const {
    std::unique_lock lock(log_mu_);
    ensemble::detail::wait_up_to(log_cv_, lock, timeout, [&] { return decisions_.count(std::string(request_id)) > 0; });
    if (auto it = decisions_.find(std::string(request_id)); it != decisions_.end()) {
      return it->second;
    }
    return std::nullopt;
  }

  std::vector<PeerMessage> peer_inbox(std::string_view address) const {
    std::lock_guard lock(log_mu_);
    if (auto it = inbox_.find(std::string(address)); it != inbox_.end()) return it->second.messages;
    return {};
  }

  bool wait_peer_inbox(std::string_view address, std::size_t count,
                       std::chrono::milliseconds timeout) const {
    std::unique_lock lock(log_mu_);
    return ensemble::detail::wait_up_to(log_cv_, lock, timeout, [&] {
      auto it = inbox_.find(std::string(address));
      return it != inbox_.end() && it->second.count >= count;
    });
  }

  std::uint64_t peer_inbox_count(std::string_view address) const {
    std::lock_guard lock(log_mu_);
    if (auto it = inbox_.find(std::string(address)); it != inbox_.end()) return it->second.count;
    return 0;
  }

  void set_action_observer(
      std::function<void(std::string_view, const api::ServiceClientMessage&)> observer) {
    std::lock_guard lock(log_mu_);
    observer_ = std::move(observer);
  }

  void set_chunk_sink(std::function<lb::ChunkReply(const lb::FileChunk&)> sink) {
    chunk_sink_ = std::move(sink);
  }
  void set_node_file_offer_handler(std::function<void(Envelope, Completion)> handler) {
    file_offer_handler_ = std::move(handler);
  }

  // ---- shutdown ------------------------------------------------------------------------

  // Ends every open stream and answers every pending decision, so that every reactor can
  // reach OnDone; the server is shut down after this.
  void begin_stop() {
    std::map<std::string, NodePending> pending;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      pending.swap(node_pending_);
    }
    const grpc::Status bye(grpc::StatusCode::UNAVAILABLE, "daemon shutting down");
    for (const auto& s : all_services()) s->end(bye);
    for (auto& [_, p] : pending) {
      timer_.cancel(p.timer);
      p.done(Outcome::refused("daemon shutting down"));
    }
    bus_.end_all(bye);
    if (rendezvous_) rendezvous_->cancel_outbound();
  }

  void stop_peers() {
    if (rendezvous_) rendezvous_->stop(/*keep_links=*/!options_.data_dir.empty());
    timer_.stop();
  }

 private:
  struct ActionLog {
    std::uint64_t count = 0;
    std::vector<api::ServiceClientMessage> messages;
  };
  struct Inbox {
    std::uint64_t count = 0;
    std::vector<PeerMessage> messages;
  };
  struct NodePending {
    Completion done;
    Timer::Id timer = 0;
  };

  bool is_unreachable(const std::string& address) const {
    std::lock_guard lock(mu_);
    return unreachable_.count(address) > 0;
  }

  // True when `env.to_addr()` is hosted here; then `done` has been handed on.
  bool deliver_local(const Envelope& env, Completion& done) {
    const std::string& to = env.to_addr();
    if (to == node_.address) {
      node_inbound(env, std::move(done));
      return true;
    }
    std::shared_ptr<ServiceStream> target;
    bool known = false;
    {
      std::lock_guard lock(mu_);
      if (auto it = by_address_.find(to); it != by_address_.end()) target = it->second;
      known = known_.count(to) > 0;
    }
    if (target) {
      target->deliver(env, std::move(done));
      return true;
    }
    if (known) {  // our key, but the service is offline: not a synthetic peer
      done(Outcome::refused("peer " + to + " is not registered"));
      return true;
    }
    return false;
  }

  // The node (operator) identity's gate: chat from anyone shows up on Subscribe; a dial
  // from a contact is accepted at once, from anyone else it waits for the operator's
  // AcceptConnection / RejectConnection.
  void node_inbound(const Envelope& env, Completion done) {
    const std::string& from = env.from_addr();
    switch (env.kind()) {
      case lb::ENVELOPE_CHAT: {
        const auto t = now();
        const auto sent = env.ts_ms() != 0 ? std::chrono::system_clock::time_point(
                                                 std::chrono::milliseconds(env.ts_ms()))
                                           : t;
        const std::string id = env.message_id().empty() ? random_hex(16) : env.message_id();
        contacts_.touch(from, unix_ms(t));
        link(node_.address, from);  // it came over a connection, before anyone sees it
        bus_.publish("chat_message",
                     chat_message_json(id, from, node_.address, env.text(), sent, t, true));
        done(Outcome::accepted());
        return;
      }
      case lb::ENVELOPE_DIAL: {
        if (contacts_.contains(from)) {
          mark_connected(from);
          done(Outcome::accepted());
          return;
        }
        Completion previous;
        bool queued = false;
        {
          std::lock_guard lock(mu_);
          if (stopping_) {
            previous = std::move(done);
          } else {
            queued = true;
            auto& slot = node_pending_[from];
            if (slot.done) {
              timer_.cancel(slot.timer);
              previous = std::move(slot.done);  // a newer dial from the same peer replaces it
            }
            slot.done = std::move(done);
            slot.timer = timer_.limit(options_.request_timeout, [this, from] {
              Completion expired;
              {
                std::lock_guard lock(mu_);
                auto it = node_pending_.find(from);
                if (it == node_pending_.end()) return;
                expired = std::move(it->second.done);
                node_pending_.erase(it);
              }
              expired(Outcome::refused("connection request timed out"));
            });
          }
        }
        if (previous) {
          previous(Outcome::refused(queued ? "superseded by a newer request"
                                           : "daemon shutting down"));
        }
        if (queued) bus_.publish("connection_request", nlohmann::json(from).dump());
        return;
      }
      case lb::ENVELOPE_FILE_OFFER:
        if (file_offer_handler_) {
          file_offer_handler_(env, std::move(done));
        } else {
          done(Outcome::refused("file transfer not available"));
        }
        return;
      case lb::ENVELOPE_BYTES:
        done(Outcome::refused("the node does not accept rpc messages"));
        return;
      default:
        done(Outcome::refused("the node does not accept introductions"));
        return;
    }
  }

  void deliver_synthetic(const Envelope& env) {
    std::lock_guard lock(log_mu_);
    auto& box = inbox_[env.to_addr()];
    ++box.count;
    if (options_.record_traffic) {
      PeerMessage m;
      m.kind = envelope_kind_name(env.kind());
      m.from_addr = env.from_addr();
      m.text = env.kind() == lb::ENVELOPE_FILE_OFFER ? env.filename() : env.text();
      m.payload = env.payload();
      m.peer_addr = env.peer_addr();
      m.session_id = env.session_id();
      m.size = env.size();
      box.messages.push_back(std::move(m));
    }
    log_cv_.notify_all();
  }

 public:
  // Records a file a synthetic peer received (the transfer code reports it when done).
  void record_synthetic_file(const std::string& to, const std::string& from,
                             const std::string& filename, std::uint64_t size) {
    Envelope env;
    env.set_kind(lb::ENVELOPE_FILE_OFFER);
    env.set_to_addr(to);
    env.set_from_addr(from);
    env.set_filename(filename);
    env.set_size(size);
    deliver_synthetic(env);
  }

 private:
  DaemonDoubleOptions options_;
  KeyStore keys_;
  Identity node_;
  ContactStore contacts_;
  NodeEventBus bus_;
  Timer timer_;
  std::atomic<bool> tor_ready_{false};

  mutable std::mutex mu_;
  std::condition_variable registry_cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<ServiceStream>> services_;
  std::map<std::string, std::shared_ptr<ServiceStream>> by_address_;
  std::map<std::string, std::uint64_t> retired_drops_;
  std::map<std::string, std::string> tokens_;
  std::map<std::string, NodePending> node_pending_;
  std::map<std::string, std::int64_t> connected_;
  std::set<std::pair<std::string, std::string>> links_;  // (local, remote), both ways
  std::set<std::string> unreachable_;
  std::set<std::string> known_;  // every service address this daemon has hosted

  mutable std::mutex log_mu_;
  mutable std::condition_variable log_cv_;
  std::map<std::string, ActionLog> actions_;
  std::map<std::string, std::string> decisions_;
  std::map<std::pair<std::string, std::string>, std::string> service_decisions_;
  std::map<std::string, Inbox> inbox_;
  std::function<void(std::string_view, const api::ServiceClientMessage&)> observer_;

  std::function<lb::ChunkReply(const lb::FileChunk&)> chunk_sink_;
  std::function<void(Envelope, Completion)> file_offer_handler_;

  // Last: its server threads call into everything above.
  std::unique_ptr<Rendezvous> rendezvous_;
};

}  // namespace ensemble::testing::detail
