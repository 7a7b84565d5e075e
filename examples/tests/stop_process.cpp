// The examples as processes under a supervisor's stop (issue 21): slow_bot against
// ensemble-loopbackd with chats from several peers at once (a burst from one) and SIGTERM in
// the middle, and SIGTERM to echo and slow_bot in every state a bot can be in (no daemon
// yet, registering, registered with turns in flight). Each must exit 0, promptly: a bound
// here is how long a supervisor would wait before SIGKILL, not a performance figure.
//
// The programs come from the environment (examples/meson.build sets it): ENSEMBLE_LOOPBACKD,
// ENSEMBLE_ECHO, ENSEMBLE_SLOW_BOT.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>

#include "../../test/support/child_process.hpp"
#include "../../test/support/tempdir.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using test_support::ChildProcess;

namespace {

std::string program(const char* variable) {
  const char* path = std::getenv(variable);
  REQUIRE(path != nullptr);
  return path;
}

// ensemble-loopbackd on a socket in `dir`, ready when this returns.
std::unique_ptr<ChildProcess> start_daemon(const test_support::TempDir& dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--api-socket", (dir / "api.sock").string()};
  args.insert(args.end(), extra.begin(), extra.end());
  auto daemon = std::make_unique<ChildProcess>(program("ENSEMBLE_LOOPBACKD"), args);
  REQUIRE(daemon->wait_line("^ready ", 10s));
  return daemon;
}

// SIGTERM, then the exit status within `patience` (a failure prints what the bot said).
int terminate(ChildProcess& bot, std::chrono::milliseconds patience) {
  bot.signal(SIGTERM);
  const auto status = bot.wait_exit(patience);
  INFO(bot.output());
  REQUIRE(status.has_value());
  return *status;
}

}  // namespace

TEST_CASE("slow_bot drains on SIGTERM mid-burst: every chat it took gets exactly one reply, in order per peer") {
  test_support::TempDir dir;
  auto daemon = start_daemon(dir);
  ChildProcess bot(program("ENSEMBLE_SLOW_BOT"),
                   {"--socket", (dir / "api.sock").string(), "--turn-ms", "150", "--max-turns", "3", "--grace", "1"});
  const auto registered = bot.wait_line("^slow_bot: registered as (E\\w+) ", 10s);
  REQUIRE(registered);
  const std::string bot_addr = (*registered)[1];

  // Four peers on the same daemon; peer 0 sends a burst.
  ensemble::Client client({.socket_path = (dir / "api.sock").string()});
  struct Peer {
    std::shared_ptr<ensemble::ChatService> service;
    std::mutex mu;
    std::vector<std::string> replies;  // reply texts, in the order they came
  };
  std::vector<std::unique_ptr<Peer>> peers;
  for (int p = 0; p < 4; ++p) {
    auto peer = std::make_unique<Peer>();
    peer->service = client.service("peer-" + std::to_string(p));
    peer->service->on_chat([raw = peer.get(), &bot_addr](const ensemble::ChatMessage& m) {
      if (m.from_addr != bot_addr) return;
      std::lock_guard lock(raw->mu);
      raw->replies.push_back(m.text);
    });
    peer->service->start();
    peers.push_back(std::move(peer));
  }
  std::vector<std::thread> senders;
  for (int p = 0; p < 4; ++p) {
    senders.emplace_back([&, p] {
      const int n = p == 0 ? 30 : 8;
      for (int i = 0; i < n; ++i) {
        peers[p]->service->send_message(bot_addr, "p" + std::to_string(p) + " " + std::to_string(i));
        if (p != 0) std::this_thread::sleep_for(20ms);  // the others trickle
      }
    });
  }
  for (auto& s : senders) s.join();
  REQUIRE(bot.wait_line("^slow_bot: replied ", 10s));  // turns are under way

  const auto t0 = std::chrono::steady_clock::now();
  CHECK(terminate(bot, 15s) == 0);
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO(bot.output());
  // Its drain deadline: one turn in flight (150 ms) plus the 1 s grace, and room for a
  // loaded machine.
  CHECK(took < 8s);
  REQUIRE(bot.wait_line("^slow_bot: drained: \\d+ taken, \\d+ replied, \\d+ not taken$", 1s));
  REQUIRE(bot.wait_line("^slow_bot: closed$", 1s));

  // What the bot took, by its own account, and what the peers got back.
  std::map<std::string, std::vector<int>> taken;  // peer address -> chat numbers taken
  const std::regex took_line("^slow_bot: took (E\\w+) p\\d+ (\\d+)$");
  for (const auto& line : bot.lines()) {
    std::smatch m;
    if (std::regex_match(line, m, took_line)) taken[m[1]].push_back(std::stoi(m[2]));
  }
  int total_taken = 0;
  for (int p = 0; p < 4; ++p) {
    CAPTURE(p);
    const std::string addr = peers[p]->service->address();
    std::vector<int> replied;
    // Replies were written before the bot's stream closed; the peer reads them shortly after.
    const auto want = taken[addr].size();
    for (auto deadline = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < deadline;) {
      {
        std::lock_guard lock(peers[p]->mu);
        if (peers[p]->replies.size() >= want) break;
      }
      std::this_thread::sleep_for(5ms);
    }
    {
      std::lock_guard lock(peers[p]->mu);
      for (const auto& text : peers[p]->replies) {
        REQUIRE(text.rfind("done: p" + std::to_string(p) + " ", 0) == 0);
        replied.push_back(std::stoi(text.substr(text.rfind(' ') + 1)));
      }
    }
    // Exactly one reply per chat taken, none for a chat not taken, in the order sent.
    CHECK(replied == taken[addr]);
    CHECK(std::is_sorted(replied.begin(), replied.end()));
    CHECK(std::set<int>(replied.begin(), replied.end()).size() == replied.size());
    total_taken += static_cast<int>(replied.size());
  }
  CHECK(total_taken > 0);
  CHECK(total_taken < 30 + 3 * 8);  // the burst was cut short: SIGTERM came in the middle
  for (auto& peer : peers) peer->service->close();
  CHECK(terminate(*daemon, 10s) == 0);
}

TEST_CASE("SIGTERM before the daemon exists: the bot stops waiting for it and exits 0") {
  test_support::TempDir dir;
  const std::string nowhere = (dir / "not-yet.sock").string();
  SECTION("echo --reconnect") {
    ChildProcess bot(program("ENSEMBLE_ECHO"), {"--socket", nowhere, "--reconnect"});
    REQUIRE(bot.wait_line("^echo: the daemon is not ready yet; waiting for it$", 10s));
    CHECK(terminate(bot, 5s) == 0);
    CHECK(bot.wait_line("^echo: stopped before registering$", 1s));
  }
  SECTION("slow_bot") {
    ChildProcess bot(program("ENSEMBLE_SLOW_BOT"), {"--socket", nowhere});
    REQUIRE(bot.wait_line("^slow_bot: the daemon is not ready yet; waiting for it$", 10s));
    CHECK(terminate(bot, 5s) == 0);
    CHECK(bot.wait_line("^slow_bot: stopped before registering$", 1s));
  }
}

TEST_CASE("SIGTERM while registering: the bot does not wait for the daemon's `registered`") {
  test_support::TempDir dir;
  // As a daemon whose Tor takes minutes to publish the onion descriptor.
  auto daemon = start_daemon(dir, {"--registration-delay-ms", "600000"});
  for (const char* which : {"ENSEMBLE_ECHO", "ENSEMBLE_SLOW_BOT"}) {
    CAPTURE(which);
    ChildProcess bot(program(which), {"--socket", (dir / "api.sock").string()});
    REQUIRE(bot.wait_line(": registering service ", 30s));
    std::this_thread::sleep_for(300ms);  // the stream is open, the daemon holds it
    CHECK(terminate(bot, 5s) == 0);
    CHECK(bot.wait_line(": stopped before registering$", 1s));
  }
}
