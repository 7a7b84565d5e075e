// The one check every outgoing message passes before it is queued or sent: what the daemon
// would refuse by ending the call, refused here instead, with an error that says what and
// where.
//
// Why: the daemon (grpc-go + protobuf-go, default settings) ends the whole call when a
// message breaks either of two rules (daemon-protocol.md section 10):
//   - every proto3 `string` field must be valid UTF-8 (INTERNAL "string field contains
//     invalid UTF-8"); C++ protobuf serializes such a string anyway, so without this check
//     the daemon is the first to notice, and on RegisterService that ends the stream and
//     unregisters the service;
//   - a message may be at most 4,194,304 bytes serialized (RESOURCE_EXHAUSTED).
//
// Every path that puts a request on the wire goes through outgoing_problem() (or
// check_outgoing(), which throws what it finds): the unary helpers (unary.hpp), the
// server-streaming calls (read_stream.hpp), a service's manifest and its actions
// (service.hpp). The walk is generic over the message's descriptor, so a field added
// to the .proto later is checked without anyone remembering to. To stay cheap on hot paths
// (send_message / send_bytes at the raw gRPC rate), the descriptor is walked once per message
// type into a plan holding only the string fields and the message fields that can contain
// strings; a check then touches just those. `bytes` fields (send_bytes payloads,
// introduction payloads, keypair_seed) are free-form and never looked at.
#pragma once

#include <ensemble/errors.hpp>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ensemble::detail {

// Offset of the first byte that does not belong to a valid UTF-8 sequence, or nullopt when
// `s` is valid. "Valid" as Go's utf8.Valid has it (what protobuf-go applies): shortest
// form only, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
inline std::optional<std::size_t> first_invalid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    // ASCII runs are the common case (addresses, most chat text): skip 8 bytes at a time.
    while (i + 8 <= n) {
      std::uint64_t word;
      __builtin_memcpy(&word, p + i, 8);
      if (word & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;  // a continuation byte, C0/C1 (overlong) or F5..FF
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return std::nullopt;
}

// Where the strings of one message type are: built once per type, then read-only.
struct StringPlan {
  std::vector<const google::protobuf::FieldDescriptor*> strings;
  struct Nested {
    const google::protobuf::FieldDescriptor* field;
    const StringPlan* plan;
  };
  std::vector<Nested> messages;  // only those whose type can hold a string somewhere
  // Message fields inside a oneof (ServiceClientMessage.msg: one action per message) are
  // found through the oneof's case, one lookup instead of a presence test per member.
  std::vector<const google::protobuf::OneofDescriptor*> oneofs;
  std::vector<Nested> oneof_messages;
};

class StringPlans {
 public:
  explicit StringPlans(const google::protobuf::Descriptor* root) { root_ = build(root); }
  const StringPlan& root() const { return *root_; }

 private:
  // Recursive types are fine: a type's plan is registered before its fields are walked,
  // and a field of a type still being built is kept (it may hold strings).
  const StringPlan* build(const google::protobuf::Descriptor* type) {
    if (auto it = plans_.find(type); it != plans_.end()) return it->second.get();
    auto& slot = plans_[type];
    slot = std::make_unique<StringPlan>();
    StringPlan* plan = slot.get();
    for (int i = 0; i < type->field_count(); ++i) {
      const auto* field = type->field(i);
      if (field->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
        plan->strings.push_back(field);
      } else if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
        const bool in_progress = plans_.count(field->message_type()) != 0;
        const StringPlan* nested = build(field->message_type());
        if (in_progress || !nested->strings.empty() || !nested->messages.empty() || !nested->oneofs.empty()) {
          if (const auto* oneof = field->real_containing_oneof()) {
            if (std::find(plan->oneofs.begin(), plan->oneofs.end(), oneof) == plan->oneofs.end()) {
              plan->oneofs.push_back(oneof);
            }
            plan->oneof_messages.push_back({field, nested});
          } else {
            plan->messages.push_back({field, nested});
          }
        }
      }
    }
    return plan;
  }

  std::unordered_map<const google::protobuf::Descriptor*, std::unique_ptr<StringPlan>> plans_;
  const StringPlan* root_ = nullptr;
};

// The plan for a generated message type, built on first use (thread-safe static init).
template <class M>
const StringPlan& string_plan_for() {
  static const StringPlans plans(M::descriptor());
  return plans.root();
}

struct BadUtf8 {
  std::string path;  // e.g. "send_message.text", "manifest.allowlist[2]"
  std::size_t offset;
  unsigned char byte;
};

// The first string field of `message` (in plan order) that is not valid UTF-8. The path is
// built only on the way out of a failure, so a valid message costs no allocation.
inline std::optional<BadUtf8> find_bad_utf8(const google::protobuf::Message& message, const StringPlan& plan) {
  const auto* reflection = message.GetReflection();
  auto indexed = [](const google::protobuf::FieldDescriptor* field, int i) {
    return field->name() + "[" + std::to_string(i) + "]";
  };
  std::string scratch;
  for (const auto* field : plan.strings) {
    if (field->is_repeated()) {
      const int count = reflection->FieldSize(message, field);
      for (int i = 0; i < count; ++i) {
        const std::string& value = reflection->GetRepeatedStringReference(message, field, i, &scratch);
        if (auto at = first_invalid_utf8(value)) {
          return BadUtf8{indexed(field, i), *at, static_cast<unsigned char>(value[*at])};
        }
      }
    } else if (!field->has_presence() || reflection->HasField(message, field)) {
      const std::string& value = reflection->GetStringReference(message, field, &scratch);
      if (auto at = first_invalid_utf8(value)) {
        return BadUtf8{field->name(), *at, static_cast<unsigned char>(value[*at])};
      }
    }
  }
  for (const auto& nested : plan.messages) {
    const auto* field = nested.field;
    if (field->is_repeated()) {
      const int count = reflection->FieldSize(message, field);
      for (int i = 0; i < count; ++i) {
        if (auto bad = find_bad_utf8(reflection->GetRepeatedMessage(message, field, i), *nested.plan)) {
          bad->path = indexed(field, i) + "." + bad->path;
          return bad;
        }
      }
    } else if (reflection->HasField(message, field)) {
      if (auto bad = find_bad_utf8(reflection->GetMessage(message, field), *nested.plan)) {
        bad->path = field->name() + "." + bad->path;
        return bad;
      }
    }
  }
  for (const auto* oneof : plan.oneofs) {
    const auto* field = reflection->GetOneofFieldDescriptor(message, oneof);
    if (field == nullptr) continue;
    for (const auto& nested : plan.oneof_messages) {
      if (nested.field != field) continue;
      if (auto bad = find_bad_utf8(reflection->GetMessage(message, field), *nested.plan)) {
        bad->path = field->name() + "." + bad->path;
        return bad;
      }
      break;
    }
  }
  return std::nullopt;
}

inline std::string hex_byte(unsigned char b) {
  static constexpr char digits[] = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 0xf];
}

// What the daemon would refuse about `message`, as the end of a sentence, or nullopt when
// it may be sent. `max_bytes` is ClientOptions::max_message_bytes (0: no size check).
template <class M>
std::optional<std::string> outgoing_problem(const M& message, std::size_t max_bytes) {
  if (max_bytes != 0) {
    // ByteSizeLong caches the size in the message; gRPC's serializer reads it again anyway.
    const std::size_t size = message.ByteSizeLong();
    if (size > max_bytes) {
      return "the message is " + std::to_string(size) + " bytes serialized, over the daemon's limit of " +
             std::to_string(max_bytes) +
             " bytes (ClientOptions::max_message_bytes); the daemon would end the call with "
             "RESOURCE_EXHAUSTED. Nothing was sent.";
    }
  }
  if (auto bad = find_bad_utf8(message, string_plan_for<M>())) {
    return "field " + M::descriptor()->name() + "." + bad->path + " is not valid UTF-8 (byte " +
           hex_byte(bad->byte) + " at offset " + std::to_string(bad->offset) +
           "); the daemon would end the call. Send binary data as bytes (RpcService::send_bytes). "
           "Nothing was sent.";
  }
  return std::nullopt;
}

// Throws InvalidArgumentError "<call>: <problem>" when `message` would make the daemon end
// the call. `call` names what the user called ("SendMessage", "SendFile").
template <class M>
void check_outgoing(const M& message, std::string_view call, std::size_t max_bytes) {
  if (auto problem = outgoing_problem(message, max_bytes)) {
    throw InvalidArgumentError(std::string(call) + ": " + *problem);
  }
}

}  // namespace ensemble::detail
