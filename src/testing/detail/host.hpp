// What a service stream needs from the daemon it lives in. The stream (service_stream.hpp)
// and the daemon core (core.hpp) depend on each other; this interface breaks the cycle so
// each concern stays in its own header.
#pragma once

#include <ensemble/proto/ensemble.grpc.pb.h>

#include "ensemble_double.pb.h"
#include "identity_store.hpp"
#include "timer.hpp"

#include <grpcpp/support/status.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace ensemble::testing::detail {

namespace api = ::ensemble::api;
namespace lb = ::ensemble::loopback;

// Every piece of peer traffic (chat, bytes, dial, introduction, file offer) travels as one
// Envelope, the internal protocol's message, whether it stays in this process or not.
using Envelope = lb::Envelope;

// What became of an envelope: accepted, or refused / undeliverable with a reason that the
// sender's error text quotes.
struct Outcome {
  bool ok = true;
  std::string reason;

  static Outcome accepted() { return {}; }
  static Outcome refused(std::string why) { return {false, std::move(why)}; }
};
using Completion = std::function<void(Outcome)>;

class ServiceStream;

// The daemon's answer to a manifest that passed the stream's own checks.
struct Registration {
  grpc::Status status;        // OK, or the status the call ends with
  std::string error_message;  // the ServiceError sent first when status is not OK
  Identity identity;          // valid when status is OK
};

class StreamHost {
 public:
  virtual ~StreamHost() = default;

  // Registers `stream` under manifest.name (token_name: the name a supervised-service token
  // is bound to, when the call carried one).
  virtual Registration register_service(const std::shared_ptr<ServiceStream>& stream,
                                        const api::ServiceManifest& manifest,
                                        const std::optional<std::string>& token_name) = 0;
  // Idempotent; keeps the keypair.
  virtual void unregister_service(const std::string& name, const ServiceStream* stream) = 0;
  // Sends `env` from one of this daemon's identities; `done` runs exactly once, possibly on
  // another thread, possibly before route returns.
  virtual void route(Envelope env, Completion done) = 0;
  virtual bool is_contact(const std::string& address) = 0;
  // Test hooks: every action a service sent after its manifest, and connection decisions.
  virtual void on_action(const std::string& service, const api::ServiceClientMessage& m) = 0;
  virtual void on_decision(const std::string& service, const std::string& request_id,
                           const std::string& decision) = 0;
  virtual Timer& timer() = 0;
  virtual std::chrono::system_clock::time_point now() = 0;
  // How long a connection request waits for a decision before it is refused.
  virtual std::chrono::milliseconds request_timeout() = 0;
  virtual std::uint32_t default_max_payload_bytes() = 0;
  virtual std::size_t max_receive_message_bytes() = 0;
  // Records a connection between a hosted identity and a peer (both ways): chat may then go.
  virtual void link(const std::string& local, const std::string& remote) = 0;
  virtual std::chrono::milliseconds registration_delay() = 0;
};

}  // namespace ensemble::testing::detail
