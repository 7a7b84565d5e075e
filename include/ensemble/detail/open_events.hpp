// Client::events(): starting a Subscribe call as an EventSubscription (node_events.hpp),
// whose handle releases it the way every call handle of the library does.
#pragma once

#include <ensemble/client_options.hpp>
#include <ensemble/detail/connection.hpp>
#include <ensemble/detail/deadline.hpp>
#include <ensemble/node_events.hpp>

#include <functional>
#include <memory>
#include <utility>

namespace ensemble {

namespace detail {
inline std::shared_ptr<EventSubscription> open_events(std::shared_ptr<Connection> conn,
                                                      std::function<void(const DaemonEvent&)> on_event,
                                                      std::function<void(const grpc::Status&)> on_end,
                                                      const CallOptions& options) {
  check_call_options(options);
  auto* raw = new EventSubscription(std::move(conn), std::move(on_event), std::move(on_end));
  // The handle's deleter is the user's reference: releasing it cancels and waits.
  std::shared_ptr<EventSubscription> handle(raw, [](EventSubscription* s) { s->release_from_owner(); });
  raw->start(options, [raw](auto* async, grpc::ClientContext* context, auto* reactor) {
    async->Subscribe(context, &raw->request_, reactor);
  });
  return handle;
}
}  // namespace detail

}  // namespace ensemble
