// operator_chat: dial a peer and chat with it as the OPERATOR (the daemon's own node
// identity), printing the replies from the node event stream.
//
//   build/examples/operator_chat --socket /run/ensemble/sock --seed admin.seed
//       --to EPeerAddress... --message "hello from the operator"      (one command line)
//   build/examples/operator_chat --demo
//
// Operator vs service identity: Client::connect / Client::send travel as the node's address,
// so a peer whose gate admits the operator lets them through; a registered service's
// connect_peer / send_message travel as that service. Replies to the operator arrive on
// Client::events() as chat_message events, together with the node's echo of its own sends
// (Direction "outgoing"), which is why the filter keeps only incoming() ones. The README's
// "Operator vs service identity" snippet is cut from this file.
#include "common/cli.hpp"
#include "common/demo.hpp"
#include "common/output.hpp"
#include "common/run.hpp"

#include <ensemble/ensemble.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

namespace {

using examples::say;
using examples::short_addr;

// Replies from the peer, counted for whoever waits on them (main), fed by the event stream
// (a gRPC thread).
class Replies {
 public:
  explicit Replies(std::string peer) : peer_(std::move(peer)) {}

  void on_event(const ensemble::DaemonEvent& event) {
    if (const auto state = ensemble::DaemonConnectionState::from_event(event)) {
      if (state->peer_addr != peer_) return;
      say("operator: connection to ", short_addr(peer_), " is ", state->state_name());
      std::lock_guard lock(mu_);
      dial_seen_ = true;
      changed_.notify_all();
      return;
    }
    const auto chat = ensemble::DaemonChatMessage::from_event(event);
    if (!chat) return;  // another event type, or not a usable chat
    if (!chat->incoming()) {
      say("operator: (skipping the node's own echo of \"", chat->text, "\")");
      return;
    }
    say(short_addr(chat->from_addr), " -> operator: ", chat->text);
    if (chat->from_addr != peer_) return;
    std::lock_guard lock(mu_);
    ++count_;
    changed_.notify_all();
  }

  // Until `want` replies came from the peer, `timeout` passed, or stop() was called.
  int wait(int want, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout, [&] { return count_ >= want || stopped_; });
    return count_;
  }

  // True once an event about our own dial has arrived: the proof that the subscription is
  // live (the daemon confirms a subscription only with its first event), so from here on
  // no reply can slip past it.
  bool wait_dial_seen(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return dial_seen_ || stopped_; }) && dial_seen_;
  }

  void stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    changed_.notify_all();
  }

 private:
  const std::string peer_;
  std::mutex mu_;
  std::condition_variable changed_;
  int count_ = 0;
  bool dial_seen_ = false;
  bool stopped_ = false;
};

// Dials `peer` as the operator, sends `messages`, and waits for as many replies. Exit 0 when
// they all came, 1 when the dial was refused or replies are missing.
int chat_as_operator(ensemble::Client& client, const std::string& peer,
                     const std::vector<std::string>& messages, std::chrono::milliseconds wait) {
  Replies replies(peer);
  // Ctrl-C / SIGTERM stop the wait for replies.
  std::stop_callback on_stop(examples::signal_stop().token(), [&replies] { replies.stop(); });

  // Subscribe before dialling and sending. The daemon confirms a subscription only with its
  // first event, so the proof that it is live is an event we cause ourselves: the dial's
  // connection_state, awaited below before the first message goes out.
  auto events = client.events([&replies](const ensemble::DaemonEvent& ev) { replies.on_event(ev); });

  const ensemble::NodeIdentity me = client.get_identity();
  say("operator: I am ", me.address);

  const ensemble::ConnectResult dial = client.connect(peer);  // as the operator, not a service
  if (!dial.accepted) {
    say("operator: dial refused: ", dial.message);
    return examples::kExitFailure;
  }
  say("operator: connected to ", short_addr(peer));
  if (!replies.wait_dial_seen(std::chrono::seconds(5))) {
    // A daemon that reported nothing about the dial: the subscription is probably in place
    // (it was opened first), but nothing proves it.
    say("operator: (no connection_state event for the dial; sending anyway)");
  }

  for (const std::string& text : messages) {
    say("operator -> ", short_addr(peer), ": ", text);
    client.send(peer, text);
  }
  const int want = static_cast<int>(messages.size());
  const int got = replies.wait(want, wait);
  if (got < want) {
    say("operator: ", got, " of ", want, " replies within ",
        std::chrono::duration_cast<std::chrono::seconds>(wait).count(), " s");
    return examples::kExitFailure;
  }
  say("operator: all ", want, " replies in");
  return examples::kExitOk;
}

// --demo: a peer service on an in-process double that accepts dials and answers each chat.
int run_demo(std::chrono::milliseconds wait) {
  examples::DemoDaemon daemon;
  ensemble::Client peer_client(daemon.client_options());
  auto friendly = peer_client.service("friend");
  ensemble::ChatService* self = friendly.get();
  friendly->on_connection_request([self](const ensemble::ConnectionRequest& r) {
    say("friend: accepting a dial from ", short_addr(r.from_addr));
    self->accept_connection(r.request_id);
  });
  friendly->on_chat([self](const ensemble::ChatMessage& m) {
    self->send_message(m.from_addr, "hi operator, you said: " + m.text);
  });
  friendly->start();
  say("friend: registered as ", friendly->address());

  ensemble::Client client(daemon.client_options());
  const int status = chat_as_operator(client, friendly->address(),
                                      {"hello from the operator", "how is the service life?"}, wait);
  friendly->close();
  friendly->wait();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("operator_chat",
                    "Dial a peer and chat with it as the operator (the daemon's node identity),\n"
                    "printing replies from the node event stream.");
  examples::add_connection_flags(cli);
  cli.option("to", "ADDRESS", "the peer to dial and chat with")
      .option("message", "TEXT", "a message to send", /*repeatable=*/true)
      .option("wait", "SECONDS", "how long to wait for one reply per message (default 10)")
      .flag("demo", "start an in-process daemon double with a peer service, chat with it, exit")
      .epilog("Exits 0 once every message has a reply from --to, 1 when the dial is refused\n"
              "or replies are missing after --wait seconds. Ctrl-C stops waiting.\n\n"
              "Examples:\n  operator_chat --demo\n"
              "  operator_chat --socket /run/ensemble/sock --seed admin.seed --to E... --message hi");
  cli.parse(argc, argv);
  const auto wait = std::chrono::seconds(cli.number("wait", 10, 0, 86'400));

  return examples::guard(cli, [&] {
    if (cli.has("demo")) {
      examples::forbid_connection_flags(cli, "--demo runs its own daemon");
      if (cli.has("to") || cli.has("message")) cli.fail("--demo picks its own peer and messages");
      return run_demo(wait);
    }
    if (!cli.has("to")) cli.fail("--to ADDRESS is required");
    if (!ensemble::is_valid_address(cli.get("to"))) {
      cli.fail("--to \"" + cli.get("to") + "\" is not a valid ensemble address");
    }
    if (!cli.has("message")) cli.fail("give at least one --message TEXT");
    examples::signal_stop();  // before the Client: see run.hpp
    ensemble::Client client = examples::make_client(cli);
    return chat_as_operator(client, cli.get("to"), cli.all("message"), wait);
  });
}
