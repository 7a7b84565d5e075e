// Compile cost: a test of the echo bot against the daemon double, as a user's test would
// be. Never run: only compiled by bench/compile_cost.sh.
#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include <chrono>

int main() {
  using namespace std::chrono_literals;
  ensemble::testing::DaemonDouble daemon;
  ensemble::Client client({.addr = daemon.tcp_target()});
  auto echo = client.service("echo");
  ensemble::ChatService* bot = echo.get();
  echo->on_chat([bot](const ensemble::ChatMessage& m) { bot->send_message(m.from_addr, "echo: " + m.text); });
  echo->start();
  const std::string peer = ensemble::address_from_public_key(ensemble::Signer(ensemble::Seed::generate()).public_key());
  daemon.inject_chat("echo", peer, "hi");
  return daemon.wait_peer_inbox(peer, 1, 2s) ? 0 : 1;
}
