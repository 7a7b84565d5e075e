// Plain C++ results of node-level calls, so users never touch generated protobuf types.
#pragma once

#include <ensemble/events.hpp>

#include <string>
#include <utility>

namespace ensemble {

// The answer to a dial (Client::connect as the operator, Service::connect_peer as the
// service). A refused or impossible dial is a value, not an exception: accepted == false
// and message says why.
struct ConnectResult {
  bool accepted = false;
  std::string message;
};

namespace detail {
inline ConnectResult to_connect_result(api::ConnectResponse response) {
  return ConnectResult{response.accepted(), std::move(*response.mutable_message())};
}
}  // namespace detail

}  // namespace ensemble
