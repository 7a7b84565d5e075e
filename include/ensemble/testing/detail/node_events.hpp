// The node event stream (Subscribe, section 6): a bus that fans each DaemonEvent out to
// every subscriber, and the ServerWriteReactor that writes one subscriber's events.
//
// Payloads are JSON in the shape Go's encoding/json gives the daemon's structs (Go field
// names as keys, time.Time as RFC 3339 with nanoseconds). Unlike a service stream, a full
// subscriber queue drops the NEWEST event (section 6).
#pragma once

#include <ensemble/proto/ensemble.grpc.pb.h>
#include <ensemble/testing/detail/util.hpp>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace ensemble::testing::detail {

// Go's chat.Message as the daemon's bus publishes it. AckedAt is null until the peer acked.
inline std::string chat_message_json(const std::string& id, const std::string& from,
                                     const std::string& to, const std::string& text,
                                     std::chrono::system_clock::time_point sent_at,
                                     std::optional<std::chrono::system_clock::time_point> acked_at,
                                     bool incoming) {
  nlohmann::json j;
  j["ID"] = id;
  j["From"] = from;
  j["To"] = to;
  j["Text"] = text;
  j["SentAt"] = go_time_json(sent_at);
  j["AckedAt"] = acked_at ? nlohmann::json(go_time_json(*acked_at)) : nlohmann::json(nullptr);
  j["Direction"] = incoming ? "incoming" : "outgoing";
  return j.dump();
}

// transport.StateEvent: State is the connector's enum as an int.
enum class ConnState : int { disconnected = 0, connecting = 1, connected = 2, failed = 3 };

inline std::string connection_state_json(const std::string& peer, ConnState state,
                                         const std::string& error) {
  return nlohmann::json{{"PeerAddr", peer}, {"State", static_cast<int>(state)}, {"Error", error}}
      .dump();
}

inline std::string peer_online_json(const std::string& address, bool online) {
  return nlohmann::json{{"Address", address}, {"Online", online}}.dump();
}

inline api::DaemonEvent make_daemon_event(std::string type, std::string payload) {
  api::DaemonEvent ev;
  ev.set_type(std::move(type));
  ev.set_payload(std::move(payload));
  return ev;
}

class NodeEventBus;

// One Subscribe call. Owned by shared_ptrs: its own until OnDone, and the bus's.
class NodeSubscriber final : public grpc::ServerWriteReactor<api::DaemonEvent> {
 public:
  NodeSubscriber(std::size_t depth, std::function<void(NodeSubscriber*)> on_done)
      : depth_(depth == 0 ? 1 : depth), on_done_(std::move(on_done)) {}

  static NodeSubscriber* start(const std::shared_ptr<NodeSubscriber>& self) {
    std::lock_guard lock(self->mu_);
    self->self_ = self;
    // Headers go out now, so a client knows the subscription is live before any event.
    self->StartSendInitialMetadata();
    return self.get();
  }

  void push(const api::DaemonEvent& ev) {
    std::lock_guard lock(mu_);
    if (finish_requested_) return;
    if (queue_.size() >= depth_) {
      ++dropped_;  // the newest goes (section 6)
      return;
    }
    queue_.push_back(ev);
    pump_locked();
  }

  void end(grpc::Status status) {
    std::lock_guard lock(mu_);
    if (!finish_requested_) {
      finish_requested_ = true;
      status_ = std::move(status);
    }
    queue_.clear();
    pump_locked();
  }

  std::uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_;
  }

 private:
  void OnSendInitialMetadataDone(bool ok) override {
    std::lock_guard lock(mu_);
    metadata_pending_ = false;
    if (!ok) queue_.clear();
    pump_locked();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      queue_.clear();
      if (!finish_requested_) {
        finish_requested_ = true;
        status_ = grpc::Status::CANCELLED;
      }
    }
    pump_locked();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    queue_.clear();
    if (!finish_requested_) {
      finish_requested_ = true;
      status_ = grpc::Status::CANCELLED;  // what a client that cancels sees (section 5a)
    }
    pump_locked();
  }

  void OnDone() override {
    on_done_(this);
    std::shared_ptr<NodeSubscriber> keep;
    std::lock_guard lock(mu_);
    keep = std::move(self_);
  }

  void pump_locked() {
    if (finish_called_ || writing_ || metadata_pending_) return;
    if (!queue_.empty()) {
      out_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      StartWrite(&out_);
      return;
    }
    if (finish_requested_) {
      finish_called_ = true;
      Finish(status_);
    }
  }

  const std::size_t depth_;
  std::function<void(NodeSubscriber*)> on_done_;
  mutable std::mutex mu_;
  std::deque<api::DaemonEvent> queue_;
  api::DaemonEvent out_;
  bool metadata_pending_ = true;
  bool writing_ = false;
  bool finish_requested_ = false;
  bool finish_called_ = false;
  grpc::Status status_;
  std::uint64_t dropped_ = 0;
  std::shared_ptr<NodeSubscriber> self_;
};

class NodeEventBus {
 public:
  void add(std::shared_ptr<NodeSubscriber> s) {
    std::lock_guard lock(mu_);
    subscribers_.push_back(std::move(s));
  }

  void remove(const NodeSubscriber* s) {
    std::lock_guard lock(mu_);
    std::erase_if(subscribers_, [&](const auto& p) {
      if (p.get() != s) return false;
      retired_drops_ += p->dropped();
      return true;
    });
  }

  // Events dropped by full subscriber queues, over every subscriber so far.
  std::uint64_t dropped() const {
    std::lock_guard lock(mu_);
    std::uint64_t total = retired_drops_;
    for (const auto& s : subscribers_) total += s->dropped();
    return total;
  }

  void publish(const std::string& type, const std::string& payload) {
    const api::DaemonEvent ev = make_daemon_event(type, payload);
    for (const auto& s : snapshot()) s->push(ev);
  }

  void end_all(const grpc::Status& status) {
    for (const auto& s : snapshot()) s->end(status);
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return subscribers_.size();
  }

 private:
  std::vector<std::shared_ptr<NodeSubscriber>> snapshot() const {
    std::lock_guard lock(mu_);
    return subscribers_;
  }

  mutable std::mutex mu_;
  std::vector<std::shared_ptr<NodeSubscriber>> subscribers_;
  std::uint64_t retired_drops_ = 0;
};

}  // namespace ensemble::testing::detail
