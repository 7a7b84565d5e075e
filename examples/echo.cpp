// echo: a chat bot that answers every message with "echo: <text>".
//
//   build/examples/echo --socket /run/ensemble/sock --seed /etc/ensemble/admin.seed
//   build/examples/echo --demo        # in-process daemon double + a peer, then exit
//
// The README's "Echo bot", "Connection requests", "Supervised services", "Reconnect" and
// "Stopping cleanly" snippets are cut from this file.
#include "common/cli.hpp"
#include "common/demo.hpp"
#include "common/output.hpp"
#include "common/run.hpp"

#include <ensemble/ensemble.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace {

using examples::say;
using examples::short_addr;

struct EchoSettings {
  std::string name = "echo";
  ensemble::ACL acl = ensemble::ACL::public_;
  bool accept = false;
  bool reconnect = false;
};

// The whole bot: a service, its handlers, nothing else. Handlers run on gRPC's threads, one
// at a time for this service; each here only queues a reply, which never blocks.
std::shared_ptr<ensemble::ChatService> make_echo(ensemble::Client& client, const EchoSettings& s) {
  ensemble::ServiceOptions options;
  options.description = "answers every chat with \"echo: <text>\"";
  options.acl = s.acl;
  options.reconnect.enabled = s.reconnect;  // see the README's "Reconnect" section
  // Started alongside its daemon (a sidecar), the bot may be first: wait for the socket and
  // for Tor, rather than failing start().
  options.wait_for_daemon = s.reconnect;

  auto echo = client.service(s.name, options);
  // Each handler is given the service it belongs to (`self`), so it needs no pointer to it
  // (capturing the shared_ptr would be a cycle: the service would only end with its Client).
  echo->on_chat([](ensemble::ChatService& self, const ensemble::ChatMessage& m) {
    say("echo: chat from ", short_addr(m.from_addr), ": ", m.text);
    self.send_message(m.from_addr, "echo: " + m.text);
  });
  echo->on_connection_request([accept = s.accept](ensemble::ChatService& self, const ensemble::ConnectionRequest& r) {
    if (accept) {
      self.accept_connection(r.request_id);
      say("echo: accepted connection request ", r.request_id);
    } else {
      self.reject_connection(r.request_id, "echo takes no connections; just send a chat");
      say("echo: rejected connection request ", r.request_id);
    }
  });
  echo->on_error([](const ensemble::ServiceError& e) { say("echo: daemon says: ", e.message); });
  // Only --reconnect ever passes through `reconnecting`: while start() waits for a daemon
  // that is not ready yet (no address so far), and after losing a registered one. The
  // address stays the same after that: the daemon keeps the keypair of a name. Turns never
  // overlap here, so the handler's own state needs no lock.
  echo->on_state([lost = false, waiting = false](ensemble::ChatService& self, ensemble::ServiceState state) mutable {
    if (state == ensemble::ServiceState::reconnecting) {
      if (self.address().empty()) {
        if (!std::exchange(waiting, true)) say("echo: the daemon is not ready yet; waiting for it");
        return;
      }
      lost = true;
      say("echo: lost the daemon; registering again");
    } else if (state == ensemble::ServiceState::registered && std::exchange(lost, false)) {
      say("echo: registered again as ", self.address());
    }
  });
  return echo;
}

// --demo: the bot against an in-process double, and a peer service that dials it and chats.
int run_demo(const EchoSettings& settings) {
  examples::DemoDaemon daemon;

  ensemble::Client bot_client(daemon.client_options());
  auto echo = make_echo(bot_client, settings);
  echo->start();
  say("echo: registered as ", echo->address());

  // The peer is another service on the same daemon: it dials and chats as its own identity,
  // so echo sees the peer's service address.
  ensemble::Client peer_client(daemon.client_options());
  examples::Tally echoes;
  auto peer = peer_client.service("echo-peer");
  peer->on_chat([&echoes](const ensemble::ChatMessage& m) {
    say("peer: got \"", m.text, "\" from ", short_addr(m.from_addr));
    echoes.add();
  });
  peer->on_error([](const ensemble::ServiceError& e) { say("peer: daemon says: ", e.message); });
  peer->start();
  say("peer: registered as ", peer->address());

  const ensemble::ConnectResult dial = peer->connect_peer(echo->address());
  if (dial.accepted) {
    say("peer: dial accepted (", dial.message, ")");
  } else {
    say("peer: dial refused: ", dial.message);
  }

  const std::vector<std::string> lines{"hello", "how are you?", "bye"};
  for (const std::string& line : lines) {
    say("peer: sending \"", line, "\"");
    peer->send_message(echo->address(), line);
  }
  const int expected = static_cast<int>(lines.size());
  const bool all_back = echoes.wait_for(expected, examples::kDemoPatience);

  peer->close();
  echo->close();
  const grpc::Status peer_end = peer->wait();
  const grpc::Status echo_end = echo->wait();
  say("echo: closed (", ensemble::RpcError::status_name(echo_end.error_code()), ")");
  if (!all_back) {
    say("demo: FAILED: ", echoes.count(), " of ", expected, " echoes came back");
    return examples::kExitFailure;
  }
  if (!peer_end.ok() || !echo_end.ok()) {
    say("demo: FAILED: a stream did not close cleanly");
    return examples::kExitFailure;
  }
  say("demo: all ", expected, " echoes came back");
  return examples::kExitOk;
}

int run_bot(const examples::Cli& cli, EchoSettings settings) {
  examples::signal_stop();  // before the Client: see run.hpp
  ensemble::Client client = examples::make_client(cli);
  // The spawn contract also names the service and gives it a writable directory.
  const ensemble::SpawnContext spawn = ensemble::SpawnContext::from_env();
  if (!cli.has("name") && spawn.service_name) settings.name = *spawn.service_name;
  if (spawn.data_dir) say("echo: data dir ", spawn.data_dir->string());

  auto echo = make_echo(client, settings);
  return examples::serve(*echo, "echo");
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("echo", "A chat bot that answers every message with \"echo: <text>\".");
  examples::add_connection_flags(cli);
  cli.option("name", "NAME", "service name to register (default $ENSEMBLE_SERVICE_NAME, else echo)")
      .option("acl", "public|contacts", "who may reach the bot (default public)")
      .flag("accept", "accept connection requests (default: reject them, with a reason)")
      .flag("reconnect", "wait for a daemon not up yet; when it goes away, register again once back")
      .flag("demo", "start an in-process daemon double and a peer, show a round trip, exit")
      .epilog(
          "Without --socket or --addr the bot reads the daemon's spawn contract from the\n"
          "environment (ENSEMBLE_SOCKET, ENSEMBLE_SERVICE_TOKEN or ENSEMBLE_AUTH_SEED,\n"
          "ENSEMBLE_SERVICE_NAME). Ctrl-C or SIGTERM closes the stream cleanly.\n\n"
          "Examples:\n"
          "  echo --demo\n"
          "  echo --socket /run/ensemble/sock --seed /etc/ensemble/admin.seed --accept\n"
          "  echo --addr localhost:9090");
  cli.parse(argc, argv);

  EchoSettings settings;
  settings.name = cli.get("name", settings.name);
  settings.accept = cli.has("accept");
  settings.reconnect = cli.has("reconnect");
  const std::string acl = cli.get("acl", "public");
  if (acl == "public") {
    settings.acl = ensemble::ACL::public_;
  } else if (acl == "contacts") {
    settings.acl = ensemble::ACL::contacts;
  } else {
    cli.fail("--acl must be public or contacts, got \"" + acl + "\"");
  }

  return examples::guard(cli, [&] {
    if (cli.has("demo")) {
      examples::forbid_connection_flags(cli, "--demo runs its own daemon");
      return run_demo(settings);
    }
    return run_bot(cli, settings);
  });
}
