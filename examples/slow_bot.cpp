// slow_bot: a chat bot whose every turn is slow (here a sleep standing in for a model call or
// a database query), run the way a real bot has to be:
//   - turns in parallel across peers, one at a time and in order for each peer, at most
//     --max-turns at once (a ThreadPool and ServiceOptions::max_turns_in_flight);
//   - the daemon's inbound rate limit and payload cap, with a polite refusal to the peer
//     the daemon turned away (on_error: rate_limited / payload_too_large);
//   - Ctrl-C or SIGTERM at any moment drains: no new chat is taken, the turns in flight
//     finish and their replies go out, queued chats are still answered for --grace seconds,
//     then the stream closes and the bot exits 0.
//
//   build/examples/slow_bot --socket /run/ensemble/sock --turn-ms 500 --max-turns 8
//   build/examples/slow_bot --demo     # in-process daemon double and three chatty peers
//
// Output, one line each (a test reads it): "took PEER TEXT" when a turn starts, "replied
// PEER TEXT" when its reply is queued, "refused PEER: ..." for a refusal, and at the end
// "drained: T taken, R replied, N not taken".
#include "common/cli.hpp"
#include "common/demo.hpp"
#include "common/output.hpp"
#include "common/run.hpp"

#include <ensemble/ensemble.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using examples::say;
using std::chrono::milliseconds;

struct Settings {
  std::string name = "slow-bot";
  milliseconds turn{300};
  std::size_t max_turns = 4;
  std::uint32_t rate_per_minute = 0;  // 0: no limit
  std::uint32_t burst = 0;
  std::uint32_t max_payload = 0;  // 0: the daemon's default
  milliseconds grace{10'000};
};

struct Tallies {
  std::atomic<int> taken{0};
  std::atomic<int> replied{0};
};

// The bot: a service whose handlers do slow work on `pool`'s threads.
std::shared_ptr<ensemble::ChatService> make_bot(ensemble::Client& client, ensemble::ThreadPool& pool,
                                                const Settings& s, Tallies& tallies) {
  ensemble::ServiceOptions options;
  options.description = "answers every chat, slowly";
  options.executor = pool.executor();
  options.max_turns_in_flight = s.max_turns;
  options.rate_limit_per_minute = s.rate_per_minute;
  options.rate_limit_burst = s.burst;
  options.max_payload_bytes = s.max_payload;
  // Started alongside its daemon it may come first: wait for it, and after losing it,
  // register again (the address stays: the daemon keeps a name's keypair).
  options.wait_for_daemon = true;
  options.reconnect.enabled = true;
  auto bot = client.service(s.name, options);

  bot->on_state([waiting = false](ensemble::ChatService& self, ensemble::ServiceState state) mutable {
    if (state == ensemble::ServiceState::reconnecting && self.address().empty() && !std::exchange(waiting, true)) {
      say("slow_bot: the daemon is not ready yet; waiting for it");
    }
  });

  bot->on_chat([turn = s.turn, &tallies](ensemble::ChatService& self, const ensemble::ChatMessage& m) {
    ++tallies.taken;
    say("slow_bot: took ", m.from_addr, " ", m.text);
    std::this_thread::sleep_for(turn);  // the slow part: one peer waits, the others do not
    self.send_message(m.from_addr, "done: " + m.text);
    ++tallies.replied;
    say("slow_bot: replied ", m.from_addr, " ", m.text);
  });
  // The daemon refused a peer's envelope before it reached us: tell the peer why, kindly.
  bot->on_error([](ensemble::ChatService& self, const ensemble::ServiceError& e) {
    if (e.from_addr.empty()) {
      say("slow_bot: daemon says: ", e.message);
      return;
    }
    std::string why;
    if (e.kind == ensemble::ServiceError::Kind::rate_limited) {
      why = "you are sending faster than I can read; please retry in " + std::to_string(e.retry_after.count()) + " ms";
    } else if (e.kind == ensemble::ServiceError::Kind::payload_too_large) {
      why = "that message is too long for me; please keep it under " + std::to_string(e.limit_bytes) + " bytes";
    } else {
      why = "the daemon turned your message away: " + e.message;
    }
    say("slow_bot: refused ", e.from_addr, ": ", why);
    try {
      self.send_message(e.from_addr, "sorry: " + why);
    } catch (const ensemble::ServiceClosedError&) {  // draining: the stream is closing
    }
  });
  bot->on_connection_request([](ensemble::ChatService& self, const ensemble::ConnectionRequest& r) {
    self.accept_connection(r.request_id);
  });
  return bot;
}

void report(const ensemble::Service& bot, const Tallies& tallies) {
  const ensemble::ServiceStats s = bot.stats();
  say("slow_bot: drained: ", tallies.taken.load(), " taken, ", tallies.replied.load(), " replied, ",
      s.events_discarded, " not taken");
}

// --demo: three peers on an in-process double chat at once; one of them sends a burst.
int run_demo(const Settings& settings) {
  examples::DemoDaemon daemon;
  ensemble::ThreadPool pool(settings.max_turns);
  ensemble::Client client(daemon.client_options());
  Tallies tallies;
  auto bot = make_bot(client, pool, settings, tallies);
  bot->start();
  say("slow_bot: registered as ", bot->address(), " (", settings.max_turns, " turns at once, ",
      settings.turn.count(), " ms each)");

  examples::Tally replies;
  std::atomic<int> out_of_order{0};
  std::vector<std::shared_ptr<ensemble::ChatService>> peers;
  for (const char* name : {"alice", "bob", "carol"}) {
    auto peer = client.service(name);
    // Each peer's replies come back in the order it sent (turns of one peer never overlap).
    peer->on_chat([&replies, &out_of_order, who = std::string(name), last = -1](const ensemble::ChatMessage& m) mutable {
      const int n = std::stoi(m.text.substr(m.text.find('#') + 1));
      if (n <= last) ++out_of_order;
      last = n;
      say(who, ": got \"", m.text, "\"");
      replies.add();
    });
    peer->start();
    peers.push_back(std::move(peer));
  }
  int sent = 0;
  for (int round = 0; round < 3; ++round) {
    for (auto& peer : peers) {
      const int n = peer->name() == "alice" ? 3 : 1;  // alice sends a burst every round
      for (int i = 0; i < n; ++i) {
        peer->send_message(bot->address(), peer->name() + " #" + std::to_string(round * 3 + i));
        ++sent;
      }
    }
  }
  const bool all = replies.wait_for(sent, examples::kDemoPatience);
  bot->drain(settings.grace);
  const grpc::Status end = bot->wait();
  report(*bot, tallies);
  for (auto& peer : peers) peer->close();
  if (!all || !end.ok() || out_of_order.load() != 0) {
    say("demo: FAILED: ", replies.count(), " of ", sent, " replies (", out_of_order.load(), " out of order), end ",
        ensemble::RpcError::status_name(end.error_code()));
    return examples::kExitFailure;
  }
  say("demo: all ", sent, " chats answered, each peer in order");
  return examples::kExitOk;
}

int run_bot(const examples::Cli& cli, const Settings& settings) {
  examples::signal_stop();  // before any thread (the pool's, the Client's): see run.hpp
  ensemble::ThreadPool pool(settings.max_turns);  // before the Client: it outlives the bot
  ensemble::Client client = examples::make_client(cli);
  Tallies tallies;
  auto bot = make_bot(client, pool, settings, tallies);
  const int status = examples::serve(*bot, "slow_bot", settings.grace);
  report(*bot, tallies);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("slow_bot", "A chat bot with slow turns: parallel across peers, in order per peer, drained on SIGTERM.");
  examples::add_connection_flags(cli);
  cli.option("name", "NAME", "service name to register (default slow-bot)")
      .option("turn-ms", "MS", "how long each turn works (default 300)")
      .option("max-turns", "N", "turns at once, across peers (default 4)")
      .option("rate", "PER_MINUTE", "the daemon's inbound limit per peer (default 0: none)")
      .option("burst", "N", "the rate limit's burst (default 0)")
      .option("max-payload", "BYTES", "the daemon's inbound size cap (default 0: the daemon's)")
      .option("grace", "SECONDS", "on SIGTERM, how long queued chats are still answered (default 10)")
      .flag("demo", "start an in-process daemon double and three peers, show the turns, exit")
      .epilog(
          "Ctrl-C or SIGTERM drains the bot at any moment: while it waits for the daemon it\n"
          "gives up at once; registered, the turns in flight finish and reply, queued chats\n"
          "are answered for --grace seconds, then it exits 0.\n\n"
          "Examples:\n"
          "  slow_bot --demo\n"
          "  slow_bot --socket /run/ensemble/sock --turn-ms 800 --max-turns 8 --rate 30 --burst 5");
  cli.parse(argc, argv);

  Settings settings;
  settings.name = cli.get("name", settings.name);
  settings.turn = milliseconds(cli.number("turn-ms", 300, 0, 600'000));
  settings.max_turns = static_cast<std::size_t>(cli.number("max-turns", 4, 1, 256));
  settings.rate_per_minute = static_cast<std::uint32_t>(cli.number("rate", 0, 0, 1'000'000));
  settings.burst = static_cast<std::uint32_t>(cli.number("burst", 0, 0, 1'000'000));
  settings.max_payload = static_cast<std::uint32_t>(cli.number("max-payload", 0, 0, 4'000'000));
  settings.grace = std::chrono::seconds(cli.number("grace", 10, 0, 3600));

  return examples::guard(cli, [&] {
    if (cli.has("demo")) {
      examples::forbid_connection_flags(cli, "--demo runs its own daemon");
      return run_demo(settings);
    }
    return run_bot(cli, settings);
  });
}
