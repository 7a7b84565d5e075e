// The manifest a service registers with (daemon-protocol.md section 5): ServiceOptions
// checked and turned into the wire message. Apart from service_options.hpp so that the
// header a user reads holds only the options, and no protobuf type.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/errors.hpp>
#include <ensemble/proto/ensemble.pb.h>
#include <ensemble/service_options.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>

namespace ensemble {

// The public enums carry the wire's numbers without including the generated code.
static_assert(static_cast<int>(ACL::public_) == api::ACL_PUBLIC);
static_assert(static_cast<int>(ACL::contacts) == api::ACL_CONTACTS);
static_assert(static_cast<int>(ACL::allowlist) == api::ACL_ALLOWLIST);
static_assert(static_cast<int>(Transport::chat) == api::TRANSPORT_CHAT);
static_assert(static_cast<int>(Transport::rpc) == api::TRANSPORT_RPC);
static_assert(static_cast<int>(Transport::http) == api::TRANSPORT_HTTP);

namespace detail {

// The daemon's rule for service names: ^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$
inline bool is_valid_service_name(std::string_view name) noexcept {
  auto edge = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  auto inner = [&](char c) { return edge(c) || c == '_' || c == '-'; };
  if (name.empty() || !edge(name.front()) || !edge(name.back())) return false;
  for (char c : name) {
    if (!inner(c)) return false;
  }
  return true;
}

// The timing options, checked where the service is made so a typo fails at the call site
// rather than as a reconnect loop that spins or never waits.
inline void check_turns(const ServiceOptions& options) {
  if (options.max_turns_in_flight == 0) {
    throw ConfigError("ServiceOptions::max_turns_in_flight must be at least 1");
  }
  if (options.max_turns_in_flight > 1 && !options.executor) {
    throw ConfigError("ServiceOptions::max_turns_in_flight is " + std::to_string(options.max_turns_in_flight) +
                      ", but turns can only run at the same time on an executor: set "
                      "ServiceOptions::executor (e.g. to an ensemble::ThreadPool's executor())");
  }
}

inline void check_timing(const ServiceOptions& options) {
  const auto& r = options.reconnect;
  auto fail = [](const std::string& what) { throw ConfigError("ServiceOptions: " + what); };
  if (options.registration_timeout.count() < 0) {
    fail("registration_timeout is negative (" + std::to_string(options.registration_timeout.count()) +
         " ms); use 0 for no deadline");
  }
  if (r.initial_backoff.count() < 0) {
    fail("reconnect.initial_backoff is negative (" + std::to_string(r.initial_backoff.count()) + " ms)");
  }
  if (r.max_backoff < r.initial_backoff) {
    fail("reconnect.max_backoff (" + std::to_string(r.max_backoff.count()) +
         " ms) is below reconnect.initial_backoff (" + std::to_string(r.initial_backoff.count()) + " ms)");
  }
  if (!(r.multiplier >= 1.0) || !std::isfinite(r.multiplier)) {
    fail("reconnect.multiplier must be at least 1 (got " + std::to_string(r.multiplier) + ")");
  }
  if (!(r.jitter >= 0.0 && r.jitter <= 1.0)) {
    fail("reconnect.jitter must be in [0, 1] (got " + std::to_string(r.jitter) + ")");
  }
  if (r.max_attempts < 0) {
    fail("reconnect.max_attempts is negative (" + std::to_string(r.max_attempts) + "); use 0 for no limit");
  }
}

inline api::ServiceClientMessage make_manifest(const std::string& name, Transport transport,
                                               const ServiceOptions& options) {
  if (!is_valid_service_name(name)) {
    throw ConfigError("service name " + shown(name) +
                      " is invalid: use lowercase letters, digits, '-' and '_', starting "
                      "and ending with a letter or digit");
  }
  check_timing(options);
  check_turns(options);
  if (options.acl != ACL::public_ && options.acl != ACL::contacts &&
      options.acl != ACL::allowlist) {
    throw ConfigError("ServiceOptions::acl has an invalid value " +
                      std::to_string(static_cast<int>(options.acl)));
  }
  api::ServiceClientMessage message;
  api::ServiceManifest& m = *message.mutable_manifest();
  m.set_name(name);
  m.set_description(options.description);
  m.set_acl(static_cast<api::ACL>(options.acl));
  for (std::size_t i = 0; i < options.allowlist.size(); ++i) {
    if (options.acl == ACL::allowlist) {
      require_valid_address(options.allowlist[i],
                            "ServiceOptions::allowlist[" + std::to_string(i) + "]");
    }
    m.add_allowlist(options.allowlist[i]);
  }
  if (options.keypair_seed) {
    auto seed = options.keypair_seed->bytes();
    m.set_keypair_seed(seed.data(), seed.size());
  }
  m.set_transport(static_cast<api::ServiceTransport>(transport));
  m.set_max_payload_bytes(options.max_payload_bytes);
  m.set_rate_limit_per_minute(options.rate_limit_per_minute);
  m.set_rate_limit_burst(options.rate_limit_burst);
  return message;
}

}  // namespace detail
}  // namespace ensemble
