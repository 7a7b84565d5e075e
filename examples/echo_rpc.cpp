// echo_rpc: an RPC-transport service that answers every payload with its bytes reversed.
//
//   build/examples/echo_rpc --socket /run/ensemble/sock --seed /etc/ensemble/admin.seed
//   build/examples/echo_rpc --demo
//
// RPC transport carries raw bytes both ways (usually a serialized protobuf of the peers'
// own schema); here any bytes will do. The README's "RPC transport" snippet is cut from
// this file.
#include "common/cli.hpp"
#include "common/demo.hpp"
#include "common/output.hpp"
#include "common/run.hpp"

#include <ensemble/ensemble.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using examples::printable;
using examples::say;
using examples::short_addr;

std::shared_ptr<ensemble::RpcService> make_echo_rpc(ensemble::Client& client, const std::string& name) {
  ensemble::ServiceOptions options;
  options.description = "answers every payload with its bytes reversed";
  auto service = client.rpc_service(name, options);
  ensemble::RpcService* self = service.get();  // raw: see echo.cpp
  service->on_rpc([self](const ensemble::RpcMessage& m) {
    say("echo_rpc: ", m.payload.size(), " bytes from ", short_addr(m.from_addr));
    self->send_bytes(m.from_addr, std::string(m.payload.rbegin(), m.payload.rend()));
  });
  service->on_connection_request([self](const ensemble::ConnectionRequest& r) {
    self->reject_connection(r.request_id, "echo_rpc takes no connections; send bytes");
  });
  service->on_error([](const ensemble::ServiceError& e) { say("echo_rpc: daemon says: ", e.message); });
  return service;
}

int run_demo(const std::string& name) {
  examples::DemoDaemon daemon;
  ensemble::Client client(daemon.client_options());
  auto echo = make_echo_rpc(client, name);
  echo->start();
  say("echo_rpc: registered as ", echo->address());

  // A caller: another RPC service on the same daemon. Bytes reach only rpc-transport
  // services, so the caller must be one too to get the answers.
  const std::vector<std::string> payloads{"hello", "ensemble", std::string("\x00\x01\x02\xff", 4)};
  std::mutex mu;
  std::map<std::string, std::string> expected;  // reversed payload -> original
  for (const std::string& p : payloads) expected[std::string(p.rbegin(), p.rend())] = p;
  examples::Tally right, wrong;

  auto caller = client.rpc_service("rpc-caller");
  caller->on_rpc([&](const ensemble::RpcMessage& m) {
    std::lock_guard lock(mu);
    auto it = expected.find(m.payload);
    if (it != expected.end()) {
      say("caller: got \"", printable(m.payload), "\" = \"", printable(it->second), "\" reversed");
      expected.erase(it);
      right.add();
    } else {
      say("caller: got unexpected bytes \"", printable(m.payload), "\"");
      wrong.add();
    }
  });
  caller->start();

  for (const std::string& p : payloads) {
    say("caller: sending \"", printable(p), "\" (", p.size(), " bytes)");
    caller->send_bytes(echo->address(), p);
  }
  const int want = static_cast<int>(payloads.size());
  const bool all_back = right.wait_for(want, examples::kDemoPatience);

  caller->close();
  echo->close();
  caller->wait();
  echo->wait();
  if (!all_back || wrong.count() != 0) {
    say("demo: FAILED: ", right.count(), " of ", want, " answers right, ", wrong.count(), " wrong");
    return examples::kExitFailure;
  }
  say("demo: all ", want, " payloads came back reversed");
  return examples::kExitOk;
}

int run_service(const examples::Cli& cli, const std::string& name) {
  examples::signal_stop();  // before the Client: see run.hpp
  ensemble::Client client = examples::make_client(cli);
  auto service = make_echo_rpc(client, name);
  return examples::serve(*service, "echo_rpc");
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("echo_rpc", "An RPC-transport service: answers every payload with its bytes reversed.");
  examples::add_connection_flags(cli);
  cli.option("name", "NAME", "service name to register (default echo-rpc)")
      .flag("demo", "start an in-process daemon double and a caller, show the round trips, exit")
      .epilog("Examples:\n  echo_rpc --demo\n  echo_rpc --socket /run/ensemble/sock --seed admin.seed");
  cli.parse(argc, argv);
  const std::string name = cli.get("name", "echo-rpc");
  return examples::guard(cli, [&] {
    if (cli.has("demo")) {
      examples::forbid_connection_flags(cli, "--demo runs its own daemon");
      return run_demo(name);
    }
    return run_service(cli, name);
  });
}
