// A lambda-handler bot in someone else's project: registers "pong" against a daemon double
// of its own, lets a second service chat with it, and exits 0 after one round trip.
#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <string>

int main() {
  ensemble::testing::DaemonDouble daemon;  // loopback TCP, a free port, no auth
  ensemble::Client client({.addr = daemon.tcp_target()});

  auto pong = client.service("pong");
  ensemble::ChatService* self = pong.get();
  pong->on_chat([self](const ensemble::ChatMessage& m) { self->send_message(m.from_addr, "pong: " + m.text); });
  pong->start();

  std::mutex mu;
  std::condition_variable cv;
  std::string reply;
  auto ping = client.service("ping");
  ping->on_chat([&](const ensemble::ChatMessage& m) {
    std::lock_guard lock(mu);
    reply = m.text;
    cv.notify_all();
  });
  ping->start();
  ping->send_message(pong->address(), "ping");

  std::unique_lock lock(mu);
  if (!cv.wait_for(lock, std::chrono::seconds(10), [&] { return !reply.empty(); }) || reply != "pong: ping") {
    std::cerr << "consumer: no round trip (reply \"" << reply << "\")\n";
    return 1;
  }
  std::cout << "consumer: round trip ok with ensemble-client " << ensemble::version() << "\n";
  return 0;
}
