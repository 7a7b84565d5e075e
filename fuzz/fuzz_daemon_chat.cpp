// Fuzz target: DaemonChatMessage::from_event (node_events.hpp) on arbitrary JSON text, built
// into a DaemonEvent the way the Subscribe stream does (DaemonEvent::from_wire). Both promise
// never to throw, whatever the daemon sends; a decoded chat always has a sender and a text.
// DaemonFileOffer::from_event reads the same payloads with the same helpers, so it is driven
// too, under its own event type.
#include <ensemble/node_events.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ensemble;
  const std::string text(reinterpret_cast<const char*>(data), size);

  const DaemonEvent chat_event = DaemonEvent::from_wire(std::string(node_event_type::chat_message), text);
  require(chat_event.raw_payload == text);  // nothing is lost, parsed or not
  // Not taken as JSON (not JSON, or nested too deep): the raw text, and why.
  require(chat_event.problem.empty() || chat_event.payload == text);
  if (const auto chat = DaemonChatMessage::from_event(chat_event)) {
    require(chat_event.payload.is_object());
    require(!chat->from_addr.empty() && !chat->text.empty());
    require(chat->incoming() == (chat->direction == "incoming"));
    volatile auto sink = unix_ms(chat->sent_at) + (chat->acked_at ? unix_ms(*chat->acked_at) : 0) +
                         static_cast<std::int64_t>(chat->id.size() + chat->to_addr.size());
    (void)sink;
  }

  // The same payload under another type is never a chat.
  DaemonEvent other = chat_event;
  other.type = std::string(node_event_type::file_offer);
  require(!DaemonChatMessage::from_event(other));
  if (const auto offer = DaemonFileOffer::from_event(other)) {
    require(!offer->transfer_id.empty());
    volatile auto sink = offer->size + offer->from_addr.size() + offer->filename.size();
    (void)sink;
  }
  return 0;
}
