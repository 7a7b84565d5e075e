// Routing one decoded service event to the handler installed for its type. Service's
// drainer (Service::deliver in service.hpp, through dispatch_value) and the fuzz target
// fuzz/fuzz_service_message.cpp (through dispatch_event) share this routing, so the fuzzer
// drives the reactor's own rather than a copy of it.
#pragma once

#include <ensemble/events.hpp>

#include <functional>
#include <type_traits>
#include <variant>

namespace ensemble::detail {

// The handlers a service's events can reach, by event type; any may be empty.
struct EventHandlers {
  const std::function<void(const ChatMessage&)>& chat;
  const std::function<void(const ConnectionRequest&)>& connection_request;
  const std::function<void(const RpcMessage&)>& rpc;
  const std::function<void(const PeerIntroduction&)>& peer_introduction;
  const std::function<void(const UnknownEvent&)>& unknown;
};

// Calls invoke(handler, value) once, with the handler for the event's type and the event's
// value. `invoke` decides what an empty or throwing handler means (the reactor skips the
// former and reports the latter to on_handler_exception).
// The same for one alternative already taken out of its variant (the read-ahead queue holds
// InboundEvent, a superset of ServiceEvent).
template <class E, class Invoke>
void dispatch_value(const E& e, const EventHandlers& handlers, Invoke&& invoke) {
  if constexpr (std::is_same_v<E, ChatMessage>) invoke(handlers.chat, e);
  else if constexpr (std::is_same_v<E, ConnectionRequest>) invoke(handlers.connection_request, e);
  else if constexpr (std::is_same_v<E, RpcMessage>) invoke(handlers.rpc, e);
  else if constexpr (std::is_same_v<E, PeerIntroduction>) invoke(handlers.peer_introduction, e);
  else if constexpr (std::is_same_v<E, UnknownEvent>) invoke(handlers.unknown, e);
  else static_assert(!sizeof(E), "a ServiceEvent alternative has no handler here");
}

template <class Invoke>
void dispatch_event(const ServiceEvent& event, const EventHandlers& handlers, Invoke&& invoke) {
  std::visit([&](const auto& e) { dispatch_value(e, handlers, invoke); }, event);
}

}  // namespace ensemble::detail
