// The daemon double (include/ensemble/testing/), over real sockets with the generated stub.
#include "double_support.hpp"

#include <catch2/catch.hpp>

using namespace double_test;
using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

TEST_CASE("double: register and chat both ways over Unix and TCP") {
  TempDir dir;
  DaemonDouble daemon({.unix_socket = dir.str("api.sock"), .tcp_address = "127.0.0.1:0"});
  REQUIRE(daemon.tcp_port() > 0);
  REQUIRE(daemon.unix_target() == "unix://" + dir.str("api.sock"));

  for (const auto& target : {daemon.unix_target(), daemon.tcp_target()}) {
    INFO(target);
    auto s = stub(plain_channel(target));
    Stream stream(*s);
    const std::string address = stream.register_as(manifest("echo"));
    REQUIRE(ensemble::is_valid_address(address));
    CHECK(ensemble::is_onion_address(stream.onion()));
    REQUIRE(daemon.wait_registered("echo", 2s));
    CHECK(daemon.service_address("echo") == address);

    const std::string peer = synthetic_address();
    REQUIRE(daemon.inject_chat("echo", peer, "hello"));
    auto ev = stream.read();
    REQUIRE(ev);
    REQUIRE(ev->has_event());
    CHECK(ev->event().type() == "chat_message");
    const auto chat = decode<api::ServiceChatMessageEvent>(*ev);
    CHECK(chat.from_addr() == peer);
    CHECK(chat.text() == "hello");
    CHECK(chat.ts() > 0);

    REQUIRE(stream.write(send_message(peer, "echo: hello")));
    REQUIRE(daemon.wait_peer_inbox(peer, 1, 2s));
    const auto inbox = daemon.peer_inbox(peer);
    REQUIRE(inbox.size() == 1);
    CHECK(inbox[0].kind == "chat");
    CHECK(inbox[0].from_addr == address);
    CHECK(inbox[0].text == "echo: hello");

    REQUIRE(stream.finish().ok());
    REQUIRE(daemon.wait_unregistered("echo", 2s));
  }
}
