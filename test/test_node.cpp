// The node-level unary calls over real sockets against the daemon double: every call in
// both forms, fields round-tripping into the plain structs, typed errors with the daemon's
// code and text, refused dials as values, which identity each dial uses, and deadlines.
#include <catch2/catch.hpp>

#include "support/node_double.hpp"

#include <algorithm>
#include <string>

namespace test_node {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace node_test;
using Catch::Matchers::Contains;

namespace {



ensemble::PublicKey key_of(std::uint8_t fill) {
  ensemble::PublicKey key{};
  key.fill(fill);
  return key;
}

}  // namespace

TEST_CASE("get_identity returns the node's address and key, in both forms") {
  Node node;
  const auto id = node.client.get_identity({.timeout = 5s});
  CHECK(id.address == node.daemon.node_address());
  REQUIRE(id.public_key.has_value());
  CHECK(*id.public_key == node.daemon.node_public_key());
  // The address is the key's address: the operator identity is self-consistent.
  CHECK(ensemble::address_from_public_key(*id.public_key) == id.address);

  auto r = await<ensemble::NodeIdentity>([&](auto cb) { node.client.get_identity(cb, {.timeout = 5s}); });
  REQUIRE(r.ok());
  CHECK(r.value().address == id.address);
  CHECK(r.value().public_key == id.public_key);
}

TEST_CASE("get_status reports tor state, onion and routing table; the daemon leaves uptime unset") {
  test_support::TempDir rendezvous;
  Node a(rendezvous.path());
  Node b(rendezvous.path());
  std::this_thread::sleep_for(20ms);

  const auto status = a.client.get_status();
  CHECK(status.tor_state == "ready");
  CHECK(status.onion_addr == a.daemon.node_onion());
  CHECK(status.uptime == 0ms);  // the daemon never sets uptime_ms (section 10)
  CHECK(status.rt_size == 1);  // b, seen through the shared rendezvous
  CHECK(status.peer_count == 0);

  auto r = await<ensemble::NodeStatus>([&](auto cb) { a.client.get_status(cb); });
  REQUIRE(r.ok());
  CHECK(r.value().tor_state == "ready");
  CHECK(r.value().uptime == 0ms);
}

TEST_CASE("contacts: add, overwrite, list and remove; the daemon lists address and alias") {
  Node node;
  const std::string jeff = stranger_address();
  const std::string kim = stranger_address();

  node.client.add_contact({.address = jeff, .alias = "jeff", .public_key = key_of(0xab)});
  node.client.add_contact({.address = kim, .alias = "kim"});

  auto contacts = node.client.list_contacts({.timeout = 5s});
  REQUIRE(contacts.size() == 2);
  auto find = [&](const std::string& address) {
    auto it = std::find_if(contacts.begin(), contacts.end(), [&](const auto& c) { return c.address == address; });
    REQUIRE(it != contacts.end());
    return *it;
  };
  // ListContacts fills address and alias only (section 10): everything else reads as unset.
  const auto j = find(jeff);
  CHECK(j.alias == "jeff");
  CHECK_FALSE(j.public_key.has_value());
  CHECK_FALSE(j.added_at.has_value());
  CHECK_FALSE(j.last_seen.has_value());
  CHECK_FALSE(j.online);
  CHECK(find(kim).alias == "kim");

  // Re-adding overwrites the alias (section 5a).
  node.client.add_contact({.address = jeff, .alias = "jeff2", .public_key = key_of(0x01)});
  contacts = node.client.list_contacts();
  CHECK(find(jeff).alias == "jeff2");

  node.client.remove_contact(jeff);
  contacts = node.client.list_contacts();
  REQUIRE(contacts.size() == 1);
  CHECK(contacts[0].address == kim);
  CHECK_NOTHROW(node.client.remove_contact(jeff));  // not a contact any more: still fine

  SECTION("callback forms") {
    auto added = await<ensemble::Done>([&](auto cb) { node.client.add_contact({.address = jeff, .alias = "cb"}, cb); });
    CHECK(added.ok());
    auto listed = await<std::vector<ensemble::Contact>>([&](auto cb) { node.client.list_contacts(cb); });
    REQUIRE(listed.ok());
    CHECK(listed.value().size() == 2);
    auto removed = await<ensemble::Done>([&](auto cb) { node.client.remove_contact(kim, cb); });
    CHECK(removed.ok());
    CHECK(node.client.list_contacts().size() == 1);
  }
}

TEST_CASE("contacts: bad input and a daemon without a contact store are typed errors") {
  Node node;
  CHECK_THROWS_MATCHES(node.client.add_contact({.address = "not-an-address", .alias = "x"}), ensemble::AddressError, what_contains<ensemble::AddressError>("add_contact address"));
  CHECK_THROWS_AS(node.client.remove_contact(""), ensemble::AddressError);
  // The callback form checks arguments the same way, before anything is sent.
  CHECK_THROWS_AS(node.client.remove_contact("E123", [](ensemble::Result<ensemble::Done>) {}), ensemble::AddressError);

  Node bare({}, [](DaemonDoubleOptions& o) { o.contacts_enabled = false; });
  CHECK_THROWS_MATCHES(bare.client.add_contact({.address = stranger_address()}), ensemble::RpcError,
                       rpc_error(grpc::StatusCode::FAILED_PRECONDITION, "contacts not initialized"));
  auto r = await<ensemble::Done>([&](auto cb) { bare.client.add_contact({.address = stranger_address()}, cb); });
  REQUIRE_FALSE(r.ok());
  CHECK(r.status()->error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(r.status()->error_message() == "contacts not initialized");
  CHECK_THROWS_AS(r.value(), ensemble::RpcError);
}

TEST_CASE("operator accept_connection / reject_connection answer dials to the node") {
  Node node;
  const std::string peer = stranger_address();

  SECTION("accept") {
    node.daemon.inject_node_connection_request(peer);
    node.client.accept_connection(peer, {.timeout = 5s});
    CHECK(node.daemon.wait_decision(peer, 5s) == "accepted");
    // Accepted peers show as connections.
    const auto debug = node.client.get_debug_info();
    REQUIRE(debug.connections.size() == 1);
    CHECK(debug.connections[0].address == peer);
    CHECK(debug.connections[0].state == "connected");
    CHECK(node.client.get_status().peer_count == 1);
  }
  SECTION("reject") {
    node.daemon.inject_node_connection_request(peer);
    node.client.reject_connection(peer);
    CHECK(node.daemon.wait_decision(peer, 5s) == "rejected: rejected by user");
  }
  SECTION("callback forms") {
    node.daemon.inject_node_connection_request(peer);
    auto r = await<ensemble::Done>([&](auto cb) { node.client.accept_connection(peer, cb); });
    CHECK(r.ok());
    CHECK(node.daemon.wait_decision(peer, 5s) == "accepted");
    auto again = await<ensemble::Done>([&](auto cb) { node.client.reject_connection(peer, cb); });
    REQUIRE_FALSE(again.ok());
    CHECK_THROWS_MATCHES(again.value(), ensemble::RpcError,
                         rpc_error(grpc::StatusCode::NOT_FOUND, "no pending request from " + peer));
  }
  SECTION("nothing pending: NOT_FOUND with the daemon's words") {
    CHECK_THROWS_MATCHES(node.client.accept_connection(peer), ensemble::RpcError,
                         rpc_error(grpc::StatusCode::NOT_FOUND, "no pending request from " + peer));
    CHECK_THROWS_MATCHES(node.client.reject_connection(peer), ensemble::RpcError,
                         rpc_error(grpc::StatusCode::NOT_FOUND, "no pending request from " + peer));
    try {
      node.client.accept_connection(peer);
    } catch (const ensemble::RpcError& e) {
      CHECK(e.call() == "AcceptConnection");
      CHECK_THAT(e.what(), Contains("AcceptConnection failed: NOT_FOUND: no pending request from"));
    }
  }
  SECTION("bad addresses never reach the daemon") {
    CHECK_THROWS_MATCHES(node.client.accept_connection("nope"), ensemble::AddressError, what_contains<ensemble::AddressError>("accept_connection address"));
    CHECK_THROWS_MATCHES(node.client.reject_connection(""), ensemble::AddressError, what_contains<ensemble::AddressError>("reject_connection address"));
  }
}

TEST_CASE("a refused connect is accepted == false with the daemon's reason") {
  Node node;
  const std::string peer = stranger_address();

  SECTION("unreachable peer") {
    node.daemon.set_peer_unreachable(peer);
    const auto r = node.client.connect(peer, {.timeout = 5s});
    CHECK_FALSE(r.accepted);
    CHECK(r.message == "peer " + peer + " is unreachable");
  }
  SECTION("dialing yourself") {
    const auto r = node.client.connect(node.daemon.node_address());
    CHECK_FALSE(r.accepted);
    CHECK(r.message == "cannot connect to self");
  }
  SECTION("callback form, and a reachable peer") {
    auto r = await<ensemble::ConnectResult>([&](auto cb) { node.client.connect(peer, cb); });
    REQUIRE(r.ok());
    CHECK(r.value().accepted);
    CHECK(r.value().message == "connected");
  }
}

TEST_CASE("operator vs service identity: each dial is gated on the identity that makes it") {
  Node node;
  const std::string operator_addr = node.client.get_identity().address;

  auto bot = node.client.service("bot");
  bot->start();

  // A gate that admits only the operator.
  auto for_operator =
      node.client.service("for-operator", {.acl = ensemble::ACL::allowlist, .allowlist = {operator_addr}});
  for_operator->on_connection_request(
      [&](const ensemble::ConnectionRequest& r) { for_operator->accept_connection(r.request_id); });
  for_operator->start();

  // A gate that admits only the bot.
  auto for_bot = node.client.service("for-bot", {.acl = ensemble::ACL::allowlist, .allowlist = {bot->address()}});
  for_bot->on_connection_request([&](const ensemble::ConnectionRequest& r) { for_bot->accept_connection(r.request_id); });
  for_bot->start();

  const auto op_to_op = node.client.connect(for_operator->address(), {.timeout = 5s});
  CHECK(op_to_op.accepted);
  const auto bot_to_op = bot->connect_peer(for_operator->address(), {.timeout = 5s});
  CHECK_FALSE(bot_to_op.accepted);
  CHECK(bot_to_op.message == "not on allowlist");

  const auto bot_to_bot = bot->connect_peer(for_bot->address(), {.timeout = 5s});
  CHECK(bot_to_bot.accepted);
  const auto op_to_bot = node.client.connect(for_bot->address(), {.timeout = 5s});
  CHECK_FALSE(op_to_bot.accepted);
  CHECK(op_to_bot.message == "not on allowlist");
}

TEST_CASE("accept_file / reject_file: unknown transfers and empty ids are typed errors") {
  Node node;
  // The code is the daemon's business (the Go daemon says INTERNAL "accepting file: no
  // pending offer with ID <id>", the double NOT_FOUND); the client's promise is an RpcError
  // carrying the daemon's own words.
  auto names_id = [](const std::string& id) {
    return Catch::Predicate<ensemble::RpcError>(
        [id](const ensemble::RpcError& e) {
          return e.code() != grpc::StatusCode::OK && e.daemon_message().find(id) != std::string::npos;
        },
        "RpcError naming " + id);
  };
  CHECK_THROWS_MATCHES(node.client.accept_file("0123abcd", ""), ensemble::RpcError, names_id("0123abcd"));
  CHECK_THROWS_MATCHES(node.client.reject_file("0123abcd"), ensemble::RpcError, names_id("0123abcd"));
  auto r = await<ensemble::Done>([&](auto cb) { node.client.reject_file("feed", cb); });
  REQUIRE_FALSE(r.ok());
  CHECK_THROWS_MATCHES(r.value(), ensemble::RpcError, names_id("feed"));

  CHECK_THROWS_MATCHES(node.client.accept_file("", "/tmp"), ensemble::InvalidArgumentError, what_contains<ensemble::InvalidArgumentError>("accept_file: transfer_id is empty"));
  CHECK_THROWS_MATCHES(node.client.reject_file(""), ensemble::InvalidArgumentError, what_contains<ensemble::InvalidArgumentError>("reject_file: transfer_id is empty"));
}

TEST_CASE("add_node bootstraps from the rendezvous; a malformed onion is the daemon's error") {
  test_support::TempDir rendezvous;
  Node a(rendezvous.path());
  Node b(rendezvous.path());

  EventLog log;
  auto sub = a.client.events(std::ref(log));
  REQUIRE(await_subscribed(a.daemon, *sub));

  CHECK(a.client.add_node(b.daemon.node_onion(), {.timeout = 5s}) == 1);
  const auto found = log.wait_type("peer_discovered");
  REQUIRE(found);
  CHECK(found->payload.value("Address", "") == b.daemon.node_address());

  auto r = await<int>([&](auto cb) { a.client.add_node(b.daemon.node_onion(), cb); });
  REQUIRE(r.ok());
  CHECK(r.value() == 1);

  // The daemon judges the address (the double wants "<56 base32>.onion"); its refusal is an
  // RpcError that quotes it.
  try {
    a.client.add_node("example.org");
    FAIL("add_node should have thrown");
  } catch (const ensemble::RpcError& e) {
    CHECK(e.call() == "AddNode");
    CHECK_THAT(e.daemon_message(), Contains("example.org"));
  }
  CHECK_THROWS_MATCHES(a.client.add_node(""), ensemble::InvalidArgumentError, what_contains<ensemble::InvalidArgumentError>("add_node: onion_address"));
}

TEST_CASE("get_debug_info lists routing-table peers and connections") {
  test_support::TempDir rendezvous;
  Node a(rendezvous.path());
  Node b(rendezvous.path());

  const auto before = a.client.get_debug_info({.timeout = 5s});
  CHECK(before.rt_size == 1);
  REQUIRE(before.rt_peers.size() == 1);
  CHECK(before.rt_peers[0].address == b.daemon.node_address());
  CHECK(before.rt_peers[0].onion_addr == b.daemon.node_onion());
  CHECK(before.onion_addr == a.daemon.node_onion());
  CHECK(before.connections.empty());

  // b knows a as a contact, so a's operator dial is accepted at once.
  b.client.add_contact({.address = a.daemon.node_address(), .alias = "a"});
  REQUIRE(a.client.connect(b.daemon.node_address(), {.timeout = 5s}).accepted);

  auto r = await<ensemble::DebugInfo>([&](auto cb) { a.client.get_debug_info(cb); });
  REQUIRE(r.ok());
  REQUIRE(r.value().connections.size() == 1);
  CHECK(r.value().connections[0].address == b.daemon.node_address());
  CHECK(r.value().connections[0].state == "connected");
  CHECK(r.value().connections[0].error.empty());
}

TEST_CASE("per-call deadlines apply to both forms") {
  Node node;
  // A service that never answers connection requests: the dial waits on it.
  auto silent = node.client.service("silent");
  silent->start();

  const auto started = std::chrono::steady_clock::now();
  CHECK_THROWS_MATCHES(node.client.connect(silent->address(), {.timeout = 200ms}), ensemble::RpcError,
                       rpc_code(grpc::StatusCode::DEADLINE_EXCEEDED));
  CHECK(std::chrono::steady_clock::now() - started < 5s);

  auto r = await<ensemble::ConnectResult>([&](auto cb) { node.client.connect(silent->address(), cb, {.timeout = 200ms}); });
  REQUIRE_FALSE(r.ok());
  CHECK(r.status()->error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_CASE("calls signed with a key the daemon does not know are PERMISSION_DENIED, in both forms") {
  Node node;
  ensemble::Client stranger({.socket_path = node.daemon.unix_socket_path(), .auth_seed = ensemble::Seed::generate()});
  CHECK_THROWS_MATCHES(stranger.get_identity(), ensemble::RpcError,
                       rpc_error(grpc::StatusCode::PERMISSION_DENIED, "unauthorized public key"));
  CHECK_THROWS_MATCHES(stranger.list_contacts(), ensemble::RpcError, rpc_code(grpc::StatusCode::PERMISSION_DENIED));
  auto r = await<ensemble::DebugInfo>([&](auto cb) { stranger.get_debug_info(cb); });
  REQUIRE_FALSE(r.ok());
  CHECK(r.status()->error_code() == grpc::StatusCode::PERMISSION_DENIED);

  ensemble::Client unsigned_client({.socket_path = node.daemon.unix_socket_path()});
  CHECK_THROWS_MATCHES(unsigned_client.get_status(), ensemble::RpcError,
                       rpc_code(grpc::StatusCode::UNAUTHENTICATED));
}

TEST_CASE("a callback call still pending when the Client goes is cancelled, and the callback runs") {
  auto node = std::make_unique<Node>();
  auto silent = node->client.service("silent");
  silent->start();
  std::promise<ensemble::Result<ensemble::ConnectResult>> done;
  auto future = done.get_future();
  node->client.connect(silent->address(), [&](ensemble::Result<ensemble::ConnectResult> r) { done.set_value(std::move(r)); });
  CHECK(node->client.open_calls() == 2);  // the service and the dial
  {
    ensemble::Client gone = std::move(node->client);
  }  // ~Client: cancels and waits
  REQUIRE(future.wait_for(0s) == std::future_status::ready);
  auto r = future.get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.status()->error_code() == grpc::StatusCode::CANCELLED);
}

}  // namespace test_node
