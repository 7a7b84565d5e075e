// Decoding the daemon's ServiceEvent, ServiceError and unknown ServiceServerMessage kinds
// into the plain values of events.hpp. Total: every input gives some value, never an
// exception (the fuzz target fuzz_service_message holds it to that).
#pragma once

#include <ensemble/detail/escape.hpp>
#include <ensemble/events.hpp>
#include <ensemble/proto/ensemble.pb.h>

#include <google/protobuf/unknown_field_set.h>

#include <chrono>
#include <string>
#include <utility>

namespace ensemble::detail {

// Decodes one ServiceEvent. Total: every input gives some ServiceEvent.
inline ServiceEvent decode_event(const api::ServiceEvent& event) {
  const std::string& type = event.type();
  const std::string& bytes = event.payload();
  auto undecodable = [&] {
    return UnknownEvent{type, bytes, "payload of " + go_quote(type) + " event does not parse"};
  };
  if (type == event_type::chat_message) {
    api::ServiceChatMessageEvent m;
    if (!m.ParseFromString(bytes)) return undecodable();
    return ChatMessage{std::move(*m.mutable_from_addr()), std::move(*m.mutable_text()),
                       timestamp_from_unix_ms(m.ts())};
  }
  if (type == event_type::connection_request) {
    api::ServiceConnectionRequestEvent m;
    if (!m.ParseFromString(bytes)) return undecodable();
    return ConnectionRequest{std::move(*m.mutable_request_id()),
                             std::move(*m.mutable_from_addr())};
  }
  if (type == event_type::rpc_message) {
    api::ServiceRpcMessageEvent m;
    if (!m.ParseFromString(bytes)) return undecodable();
    return RpcMessage{std::move(*m.mutable_from_addr()), std::move(*m.mutable_payload()),
                      timestamp_from_unix_ms(m.ts())};
  }
  if (type == event_type::peer_introduction) {
    api::ServicePeerIntroductionEvent m;
    if (!m.ParseFromString(bytes)) return undecodable();
    return PeerIntroduction{std::move(*m.mutable_from_service_addr()),
                            std::move(*m.mutable_peer_addr()),
                            std::move(*m.mutable_session_id()),
                            timestamp_from_unix_ms(m.expires_at_ms()),
                            std::move(*m.mutable_role_hint()),
                            std::move(*m.mutable_payload())};
  }
  return UnknownEvent{type, bytes, {}};
}

// A ServiceServerMessage whose payload this version does not know (msg not set: the field
// number is a newer daemon's), as the UnknownEvent that reaches on_unknown.
inline UnknownEvent decode_unknown_message(const api::ServiceServerMessage& message) {
  UnknownEvent out;
  message.SerializeToString(&out.payload);
  const auto& fields = message.GetReflection()->GetUnknownFields(message);
  if (fields.field_count() == 0) {
    out.problem = "an empty ServiceServerMessage (no field this version knows or does not know)";
    return out;
  }
  out.problem = "a ServiceServerMessage kind this version does not know (field " +
                std::to_string(fields.field(0).number()) + ")";
  return out;
}

inline ServiceError decode_error(const api::ServiceError& error) {
  ServiceError out;
  out.message = error.message();
  out.code = error.code();
  out.from_addr = error.from_addr();
  if (out.code == "payload_too_large") {
    out.kind = ServiceError::Kind::payload_too_large;
    out.limit_bytes = error.limit_bytes();
  } else if (out.code == "rate_limited") {
    out.kind = ServiceError::Kind::rate_limited;
    out.retry_after = std::chrono::milliseconds(error.retry_after_ms());
  }
  return out;
}

}  // namespace ensemble::detail
