// Fuzz target: a ServiceServerMessage from arbitrary bytes, decoded and dispatched to
// handlers as Service::OnReadDone does (service.hpp): an event goes through
// detail::decode_event and detail::dispatch_event (the reactor's own routing), a daemon error
// through detail::decode_error, a message of a kind this version does not know through
// detail::decode_unknown_message.
// The handlers read every field and check what the decoders promise: decoding is total,
// an event lands with the handler of its type, and nothing is lost on the way.
#include <ensemble/detail/dispatch.hpp>
#include <ensemble/detail/event_decoding.hpp>
#include <ensemble/events.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>

#if GOOGLE_PROTOBUF_VERSION < 4022000  // from 22 on, protobuf logs through Abseil
#include <google/protobuf/stubs/logging.h>
#endif

namespace {

using namespace ensemble;

// A failed promise must crash, so libFuzzer (and the corpus replay) reports the input.
void require(bool condition) {
  if (!condition) std::abort();
}

// Touches every byte, so a dangling or short buffer is an ASan report, not a silent read.
std::size_t checksum(const std::string& s) {
  std::size_t sum = s.size();
  for (const char c : s) sum = sum * 31 + static_cast<unsigned char>(c);
  return sum;
}

void check_event(const api::ServiceEvent& wire) {
  const std::string& type = wire.type();
  std::string handled;  // which handler ran
  volatile std::size_t sink = 0;

  const std::function<void(const ChatMessage&)> chat = [&](const ChatMessage& m) {
    handled = "chat";
    sink = sink + checksum(m.from_addr) + checksum(m.text) + static_cast<std::size_t>(unix_ms(m.ts));
  };
  const std::function<void(const ConnectionRequest&)> connection = [&](const ConnectionRequest& r) {
    handled = "connection";
    sink = sink + checksum(r.request_id) + checksum(r.from_addr);
  };
  const std::function<void(const RpcMessage&)> rpc = [&](const RpcMessage& m) {
    handled = "rpc";
    sink = sink + checksum(m.from_addr) + checksum(m.payload) + static_cast<std::size_t>(unix_ms(m.ts));
  };
  const std::function<void(const PeerIntroduction&)> introduction = [&](const PeerIntroduction& p) {
    handled = "introduction";
    sink = sink + checksum(p.from_service_addr) + checksum(p.peer_addr) + checksum(p.session_id) +
           checksum(p.role_hint) + checksum(p.payload) + static_cast<std::size_t>(unix_ms(p.expires_at));
  };
  const std::function<void(const UnknownEvent&)> unknown = [&](const UnknownEvent& u) {
    handled = "unknown";
    // Nothing is lost: the raw type and bytes are passed on as they came.
    require(u.type == type);
    require(u.payload == wire.payload());
    // An unknown type has no problem; a known one that did not parse says so.
    const bool known = type == event_type::chat_message || type == event_type::connection_request ||
                       type == event_type::rpc_message || type == event_type::peer_introduction;
    require(known != u.problem.empty());
    sink = sink + checksum(u.problem);
  };

  // The reactor's invoke skips an empty handler and catches what a handler throws; these
  // handlers are never empty and never throw, so a plain call is the same.
  detail::dispatch_event(detail::decode_event(wire), {chat, connection, rpc, introduction, unknown},
                         [](const auto& handler, const auto& value) { handler(value); });

  // Exactly one handler ran, and the one for the type (or on_unknown).
  if (type == event_type::chat_message) require(handled == "chat" || handled == "unknown");
  else if (type == event_type::connection_request) require(handled == "connection" || handled == "unknown");
  else if (type == event_type::rpc_message) require(handled == "rpc" || handled == "unknown");
  else if (type == event_type::peer_introduction) require(handled == "introduction" || handled == "unknown");
  else require(handled == "unknown");
}

void check_error(const api::ServiceError& wire) {
  const ServiceError e = detail::decode_error(wire);
  require(e.message == wire.message() && e.code == wire.code() && e.from_addr == wire.from_addr());
  switch (e.kind) {
    case ServiceError::Kind::payload_too_large:
      require(e.code == "payload_too_large" && e.limit_bytes == wire.limit_bytes());
      break;
    case ServiceError::Kind::rate_limited:
      require(e.code == "rate_limited" && e.retry_after.count() == wire.retry_after_ms());
      break;
    case ServiceError::Kind::plain:
      require(e.code != "payload_too_large" && e.code != "rate_limited");
      break;
  }
}

#if GOOGLE_PROTOBUF_VERSION < 4022000
// A string field with invalid UTF-8 makes the parser write an ERROR line to stderr that says
// nothing the failed parse does not. About one input in ten has one: some 18 MB of log per
// million runs around the lines that matter (libFuzzer's and a sanitizer's report), and
// slow when stderr is a terminal. Fatal messages still get through.
const google::protobuf::LogSilencer quiet_protobuf;
#endif

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ensemble::api::ServiceServerMessage message;
  // gRPC ends the stream on bytes that do not parse, so the reactor never sees them.
  if (!message.ParseFromArray(data, static_cast<int>(size))) return 0;
  switch (message.msg_case()) {
    case ensemble::api::ServiceServerMessage::kRegistered: {
      // Nothing to decode: the reactor copies these two strings and nothing else.
      volatile std::size_t sink = checksum(message.registered().address()) +
                                  checksum(message.registered().onion());
      (void)sink;
      break;
    }
    case ensemble::api::ServiceServerMessage::kEvent: check_event(message.event()); break;
    case ensemble::api::ServiceServerMessage::kError: check_error(message.error()); break;
    case ensemble::api::ServiceServerMessage::MSG_NOT_SET: {
      // A kind this version does not know (a newer daemon's) reaches on_unknown, whole.
      const UnknownEvent u = detail::decode_unknown_message(message);
      require(u.type.empty() && !u.problem.empty());
      require(u.payload == message.SerializeAsString());
      break;
    }
  }
  return 0;
}
