// Compile cost: the echo bot of raw_bot.cpp written with this library, as the README shows
// a bot. Never run: only compiled by bench/compile_cost.sh.
#include <ensemble/ensemble.hpp>

int main() {
  ensemble::Client client({.socket_path = "/run/ensemble/api.sock"});
  auto echo = client.service("echo");
  ensemble::ChatService* bot = echo.get();
  echo->on_chat([bot](const ensemble::ChatMessage& m) { bot->send_message(m.from_addr, "echo: " + m.text); });
  echo->start();
  echo->wait();
}
