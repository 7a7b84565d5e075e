// The raw baseline: the generated stubs driven by hand, with none of the library's code.
//
// This is what a competent programmer writes against grpc++'s callback API when they need
// exactly one workload and nothing else: the reactor in gRPC's canonical order (bind, first
// write, first read, hold, StartCall), member-owned buffers, the one write queue gRPC forces
// on anyone who writes from more than one place (one StartWrite in flight), the one hold
// gRPC requires for writes started outside reactions, and the event handling written
// inline for the workload at hand (a template parameter, so the compiler sees through it).
// What it leaves out is exactly what the library adds: handler dispatch through
// std::function, the service state machine, address checks, counters, on_unsent reporting,
// reconnects. The benchmark's ratios are the price of those.
//
// The "null" reactors at the bottom are not baselines: they do even less than a real
// client could (no decoding, no queue, one prebuilt message written over and over) and so
// measure the daemon double's own ceiling.
#pragma once

#include <ensemble/proto/ensemble.grpc.pb.h>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_callback.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace bench::raw {

namespace api = ensemble::api;

// The channel the library builds for the same options (detail/channel.hpp): local
// credentials on a Unix socket, plain credentials on unsigned loopback TCP, message size
// limits lifted. Built here by hand so no library code is involved, and identical so the
// transport underneath is the same.
inline std::shared_ptr<grpc::Channel> make_channel(const std::string& target, bool unix_socket) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  auto creds = unix_socket ? grpc::experimental::LocalCredentials(UDS)
                           : grpc::InsecureChannelCredentials();
  return grpc::CreateCustomChannel(target, creds, args);
}

inline api::ServiceClientMessage manifest(const std::string& name, api::ServiceTransport transport) {
  api::ServiceClientMessage m;
  m.mutable_manifest()->set_name(name);
  m.mutable_manifest()->set_acl(api::ACL_PUBLIC);
  m.mutable_manifest()->set_transport(transport);
  return m;
}

// What every raw reactor shares: registration and the one ending. Not a library: a few
// lines each baseline would otherwise repeat.
class Lifecycle {
 public:
  bool wait_registered(std::chrono::milliseconds timeout) {
    std::unique_lock lock(life_mu_);
    return life_cv_.wait_for(lock, timeout, [&] { return registered_ || done_; }) && registered_;
  }
  bool wait_done(std::chrono::milliseconds timeout) {
    std::unique_lock lock(life_mu_);
    return life_cv_.wait_for(lock, timeout, [&] { return done_; });
  }

 protected:
  void mark_registered() {
    std::lock_guard lock(life_mu_);
    registered_ = true;
    life_cv_.notify_all();
  }
  void mark_done() {
    std::lock_guard lock(life_mu_);
    done_ = true;
    life_cv_.notify_all();
  }

 private:
  std::mutex life_mu_;
  std::condition_variable life_cv_;
  bool registered_ = false;
  bool done_ = false;
};

// One service stream. OnEvent is called as on_event(*this, const api::ServiceEvent&) on
// gRPC's thread for each event; send() may be called from any thread.
template <class OnEvent>
class Service final
    : public grpc::ClientBidiReactor<api::ServiceClientMessage, api::ServiceServerMessage>,
      public Lifecycle {
 public:
  Service(api::EnsembleService::Stub& stub, const std::string& name, api::ServiceTransport transport,
          OnEvent on_event)
      : stub_(stub), on_event_(std::move(on_event)), out_(manifest(name, transport)) {}

  void start() {
    stub_.async()->RegisterService(&context_, this);
    writing_ = true;  // the manifest
    StartWrite(&out_);
    StartRead(&in_);
    AddHold();  // send() starts writes from outside reactions
    StartCall();
  }

  // One write in flight (gRPC's rule); the rest wait here in order.
  void send(api::ServiceClientMessage message) {
    {
      std::lock_guard lock(mu_);
      if (writing_) {
        queue_.push_back(std::move(message));
        return;
      }
      writing_ = true;
      out_ = std::move(message);
    }
    StartWrite(&out_);
  }

  // No more send() after this; then wait_done().
  void stop() {
    context_.TryCancel();
    RemoveHold();
  }

 private:
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (in_.has_event()) {
      on_event_(*this, in_.event());
    } else if (in_.has_registered()) {
      mark_registered();
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      if (!ok || queue_.empty()) {
        writing_ = false;
        return;
      }
      out_ = std::move(queue_.front());
      queue_.pop_front();
    }
    StartWrite(&out_);
  }

  void OnDone(const grpc::Status&) override { mark_done(); }

  api::EnsembleService::Stub& stub_;
  OnEvent on_event_;
  grpc::ClientContext context_;
  api::ServiceServerMessage in_;
  api::ServiceClientMessage out_;
  std::mutex mu_;
  bool writing_ = false;
  std::deque<api::ServiceClientMessage> queue_;
};

// ---- The double's ceiling ----------------------------------------------------------------

// Writes one prebuilt message `count` times back to back, each write started by the
// previous one's completion: no queue, no lock, no copies. Counts events without decoding
// them. As fast as a client can possibly be, so the double is what limits it.
class NullClient final
    : public grpc::ClientBidiReactor<api::ServiceClientMessage, api::ServiceServerMessage>,
      public Lifecycle {
 public:
  NullClient(api::EnsembleService::Stub& stub, const std::string& name, api::ServiceTransport transport)
      : stub_(stub), out_(manifest(name, transport)) {}

  void start() {
    stub_.async()->RegisterService(&context_, this);
    StartWrite(&out_);
    StartRead(&in_);
    AddHold();  // blast() starts the first write from outside a reaction
    StartCall();
  }

  // Call once, after wait_registered() (the manifest's write has then completed).
  void blast(api::ServiceClientMessage message, std::uint64_t count) {
    if (count == 0) return;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return manifest_written_; });
    }
    out_ = std::move(message);
    remaining_ = count - 1;
    blasting_ = true;
    StartWrite(&out_);
  }

  // Replies to every event with this prebuilt message (the null echo).
  // Call once, after wait_registered(), before any event is pushed.
  void reply_with(api::ServiceClientMessage message) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return manifest_written_; });
    out_ = std::move(message);
    replying_ = true;
  }

  // Blocks until `count` events have arrived (counting from start()); returns when the
  // last one did, or nullopt on timeout. Call before the events are pushed.
  std::optional<std::chrono::steady_clock::time_point> wait_events(std::uint64_t count,
                                                                   std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    target_ = count;
    if (!cv_.wait_for(lock, timeout, [&] { return reached_; })) return std::nullopt;
    return reached_at_;
  }

  void stop() {
    context_.TryCancel();
    RemoveHold();
  }

 private:
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (in_.has_event()) {
      if (++events_ == target_.load(std::memory_order_relaxed)) {
        const auto now = std::chrono::steady_clock::now();
        std::lock_guard lock(mu_);
        reached_ = true;
        reached_at_ = now;
        cv_.notify_all();
      }
      if (replying_) reply();
    } else if (in_.has_registered()) {
      mark_registered();
    }
    StartRead(&in_);
  }

  // The echo is sequential, but the double may see a reply (and send the next event)
  // before this side's OnWriteDone has run, so a reply can still owe its turn.
  void reply() {
    {
      std::lock_guard lock(mu_);
      if (writing_) {
        ++owed_;
        return;
      }
      writing_ = true;
    }
    StartWrite(&out_);
  }

  void OnWriteDone(bool ok) override {
    if (blasting_) {
      if (ok && remaining_ > 0) {
        --remaining_;
        StartWrite(&out_);
      }
      return;
    }
    {
      std::lock_guard lock(mu_);
      manifest_written_ = true;
      cv_.notify_all();
      if (!ok || owed_ == 0) {
        writing_ = false;
        return;
      }
      --owed_;
    }
    StartWrite(&out_);
  }

  void OnDone(const grpc::Status&) override { mark_done(); }

  api::EnsembleService::Stub& stub_;
  grpc::ClientContext context_;
  api::ServiceServerMessage in_;
  api::ServiceClientMessage out_;
  std::uint64_t events_ = 0;  // reactions of one call never overlap for reads
  std::atomic<std::uint64_t> target_{UINT64_MAX};
  bool reached_ = false;
  std::chrono::steady_clock::time_point reached_at_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool manifest_written_ = false;
  bool writing_ = true;  // the manifest
  std::uint64_t owed_ = 0;
  std::atomic<bool> blasting_{false};
  std::atomic<bool> replying_{false};
  std::uint64_t remaining_ = 0;
};

}  // namespace bench::raw
