// The node event stream (Subscribe, section 6): a bus that fans each DaemonEvent out to
// every subscriber, and the ServerWriteReactor that writes one subscriber's events.
//
// Payloads are JSON in the shape Go's encoding/json gives the daemon's structs (Go field
// names as keys, time.Time as RFC 3339 with nanoseconds). Unlike a service stream, a full
// subscriber queue drops the NEWEST event (section 6).
#pragma once

#include <ensemble/proto/ensemble.grpc.pb.h>

#include "util.hpp"

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
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

// transport.StateEvent: State is the connector's enum as an int (daemon-protocol.md
// section 10).
enum class ConnState : int {
  discovering = 0,
  signaling = 1,
  exchanging_ips = 2,
  nat_traversal = 3,
  connected = 4,
  connected_tor = 5,
  disconnected = 6,
  failed = 7,
  reconnecting = 8,
};

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
//
// Headers go out with the first event, not before, as grpc-go sends them: a client cannot
// see that the subscription is in place until something happens (section 10).
// Buffering as the daemon's (section 10): each event type has a queue of `depth` feeding the
// subscriber's own queue of `depth`; with both full, the NEWEST event of that type is dropped.
class NodeSubscriber final : public grpc::ServerWriteReactor<api::DaemonEvent> {
 public:
  NodeSubscriber(std::size_t depth, std::function<void(NodeSubscriber*)> on_done)
      : depth_(depth == 0 ? 1 : depth), on_done_(std::move(on_done)) {}

  static NodeSubscriber* start(const std::shared_ptr<NodeSubscriber>& self) {
    std::lock_guard lock(self->mu_);
    self->self_ = self;
    return self.get();
  }

  void push(const api::DaemonEvent& ev) {
    std::lock_guard lock(mu_);
    if (finish_requested_) return;
    if (staged_count_ == 0 && queue_.size() < depth_) {
      queue_.push_back(ev);
    } else {
      auto& stage = staged_[ev.type()];
      if (stage.size() >= depth_) {
        ++dropped_;  // the newest goes (section 6)
        return;
      }
      stage.emplace_back(++seq_, ev);
      ++staged_count_;
    }
    pump_locked();
  }

  void end(grpc::Status status) {
    std::lock_guard lock(mu_);
    if (!finish_requested_) {
      finish_requested_ = true;
      status_ = std::move(status);
    }
    clear_locked();
    pump_locked();
  }

  std::uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_;
  }

 private:
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      clear_locked();
      if (!finish_requested_) {
        finish_requested_ = true;
        status_ = grpc::Status::CANCELLED;
      }
    }
    pump_locked();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    clear_locked();
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

  void clear_locked() {
    queue_.clear();
    staged_.clear();
    staged_count_ = 0;
  }

  // Refills the subscriber's queue from the type queues, oldest first.
  void forward_staged_locked() {
    while (staged_count_ > 0 && queue_.size() < depth_) {
      std::deque<std::pair<std::uint64_t, api::DaemonEvent>>* oldest = nullptr;
      for (auto& [type, stage] : staged_) {
        if (!stage.empty() && (!oldest || stage.front().first < oldest->front().first)) {
          oldest = &stage;
        }
      }
      queue_.push_back(std::move(oldest->front().second));
      oldest->pop_front();
      --staged_count_;
    }
  }

  void pump_locked() {
    if (finish_called_ || writing_) return;
    forward_staged_locked();
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
  std::deque<api::DaemonEvent> queue_;  // the subscriber's queue
  std::map<std::string, std::deque<std::pair<std::uint64_t, api::DaemonEvent>>> staged_;  // per type
  std::size_t staged_count_ = 0;
  std::uint64_t seq_ = 0;
  api::DaemonEvent out_;
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
