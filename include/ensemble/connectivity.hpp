/// @file
/// Whether the daemon can be reached, as a Client's calls find it: the events of
/// ClientOptions::on_connectivity.
#pragma once

#include <string_view>

namespace ensemble {

/// What the calls of a Client found out about the daemon, reported only when it changes.
/// The evidence is the calls themselves (every unary call and every stream on the Client's
/// channel): a call that received a message or a status from the daemon (any status but
/// UNAVAILABLE, CANCELLED and DEADLINE_EXCEEDED, which the client side can make up) reached
/// it; a call that ended UNAVAILABLE did not (the daemon is gone, restarting, or refused the
/// connection). A Client that makes no calls reports nothing.
enum class Connectivity {
  connected,    ///< the first call that reached the daemon
  lost,         ///< after reaching it, a call ended UNAVAILABLE (a stream, when the daemon went away)
  reconnected,  ///< after `lost`, a call reached it again (a service registered again)
};

/// The value's name as spelled in the enum ("connected", "lost", "reconnected"), for logs.
inline std::string_view to_string(Connectivity change) noexcept {
  switch (change) {
    case Connectivity::connected: return "connected";
    case Connectivity::lost: return "lost";
    case Connectivity::reconnected: break;
  }
  return "reconnected";
}

}  // namespace ensemble
