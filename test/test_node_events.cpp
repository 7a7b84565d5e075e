// The node event stream (Subscribe as a ClientReadReactor) over real sockets against the
// daemon double, and the DaemonChatMessage / DaemonFileOffer decoders on Go-style,
// snake_case and garbage payloads.
#include <catch2/catch.hpp>

#include "support/node_double.hpp"

#include <atomic>
#include <string>

namespace test_node_events {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace node_test;
using Catch::Matchers::Contains;
using ensemble::DaemonChatMessage;
using ensemble::DaemonEvent;
using nlohmann::json;

namespace {

DaemonEvent chat_event(const json& payload) { return DaemonEvent::from_wire("chat_message", payload.dump()); }

ensemble::Timestamp at(std::int64_t unix_ms) { return ensemble::timestamp_from_unix_ms(unix_ms); }

// 2026-05-01T10:00:00Z in Unix milliseconds.
constexpr std::int64_t kMay1 = 1777629600000;

}  // namespace

// ---- decoders (no daemon) -------------------------------------------------------------

TEST_CASE("DaemonEvent keeps JSON parsed and anything else as a JSON string of the raw text") {
  auto ev = DaemonEvent::from_wire("peer_online", R"({"Address":"Eabc","Online":true})");
  CHECK(ev.type == "peer_online");
  REQUIRE(ev.payload.is_object());
  CHECK(ev.payload["Online"] == true);
  CHECK(ev.raw_payload == R"({"Address":"Eabc","Online":true})");

  // connection_request's payload is a bare JSON string.
  ev = DaemonEvent::from_wire("connection_request", R"("Eabc")");
  CHECK(ev.payload == "Eabc");

  for (const std::string raw : {"not json at all", "{\"open\":", "", "\xff\xfe garbage"}) {
    CHECK_NOTHROW(ev = DaemonEvent::from_wire("error", raw));
    REQUIRE(ev.payload.is_string());
    CHECK(ev.payload.get<std::string>() == raw);
    CHECK(ev.raw_payload == raw);
  }
}

TEST_CASE("DaemonChatMessage reads the daemon's Go-style payload") {
  const auto ev = chat_event({{"ID", "9f2c"},
                              {"From", "Eabc"},
                              {"To", "Exyz"},
                              {"Text", "hi"},
                              {"SentAt", "2026-05-01T10:00:00.123456789Z"},
                              {"AckedAt", "2026-05-01T10:00:00.2Z"},
                              {"Direction", "incoming"}});
  const auto m = DaemonChatMessage::from_event(ev);
  REQUIRE(m);
  CHECK(m->id == "9f2c");
  CHECK(m->from_addr == "Eabc");
  CHECK(m->to_addr == "Exyz");
  CHECK(m->text == "hi");
  CHECK(m->sent_at == at(kMay1 + 123));  // nanoseconds truncated to milliseconds
  REQUIRE(m->acked_at);
  CHECK(*m->acked_at == at(kMay1 + 200));
  CHECK(m->direction == "incoming");
  CHECK(m->incoming());

  SECTION("AckedAt null, absent, or Go's zero time means not acknowledged") {
    for (const json& acked : {json(nullptr), json("0001-01-01T00:00:00Z")}) {
      auto p = ev.payload;
      p["AckedAt"] = acked;
      const auto m2 = DaemonChatMessage::from_event(chat_event(p));
      REQUIRE(m2);
      CHECK_FALSE(m2->acked_at);
    }
    auto p = ev.payload;
    p.erase("AckedAt");
    CHECK_FALSE(DaemonChatMessage::from_event(chat_event(p))->acked_at);
  }
  SECTION("outgoing echoes are not incoming()") {
    auto p = ev.payload;
    p["Direction"] = "outgoing";
    const auto m2 = DaemonChatMessage::from_event(chat_event(p));
    REQUIRE(m2);
    CHECK_FALSE(m2->incoming());
  }
  SECTION("RFC 3339 offsets and fraction lengths") {
    auto sent = [&](const std::string& text) {
      auto p = ev.payload;
      p["SentAt"] = text;
      return DaemonChatMessage::from_event(chat_event(p))->sent_at;
    };
    CHECK(sent("2026-05-01T12:00:00+02:00") == at(kMay1));
    CHECK(sent("2026-05-01T04:30:00.5-05:30") == at(kMay1 + 500));
    CHECK(sent("2026-05-01T10:00:00Z") == at(kMay1));
    CHECK(sent("2026-05-01t10:00:00.000001z") == at(kMay1));
    // Unreadable times leave the epoch; the chat itself still decodes.
    CHECK(sent("2026-02-30T10:00:00Z") == ensemble::Timestamp{});
    CHECK(sent("2026-05-01T10:00:00") == ensemble::Timestamp{});
    CHECK(sent("2026-05-01T10:00:00.Z") == ensemble::Timestamp{});
    CHECK(sent("2026-05-01T25:00:00Z") == ensemble::Timestamp{});
    CHECK(sent("yesterday") == ensemble::Timestamp{});
  }
}

TEST_CASE("DaemonChatMessage reads the snake_case forms") {
  SECTION("from_addr / to_addr / ts in Unix ms") {
    const auto m = DaemonChatMessage::from_event(chat_event(
        {{"id", "m1"}, {"from_addr", "Eabc"}, {"to_addr", "Exyz"}, {"text", "yo"}, {"ts", kMay1}, {"direction", "incoming"}}));
    REQUIRE(m);
    CHECK(m->id == "m1");
    CHECK(m->from_addr == "Eabc");
    CHECK(m->to_addr == "Exyz");
    CHECK(m->text == "yo");
    CHECK(m->sent_at == at(kMay1));
    CHECK(m->incoming());
    CHECK_FALSE(m->acked_at);
  }
  SECTION("from / to / sent_at, as Unix ms or as text") {
    auto m = DaemonChatMessage::from_event(
        chat_event({{"from", "Eabc"}, {"to", "Exyz"}, {"text", "yo"}, {"sent_at", kMay1 + 7}, {"direction", "outgoing"}}));
    REQUIRE(m);
    CHECK(m->from_addr == "Eabc");
    CHECK(m->to_addr == "Exyz");
    CHECK(m->sent_at == at(kMay1 + 7));
    CHECK_FALSE(m->incoming());
    m = DaemonChatMessage::from_event(
        chat_event({{"from", "Eabc"}, {"text", "yo"}, {"sent_at", "2026-05-01T10:00:00.042Z"}, {"acked_at", kMay1 + 50}}));
    REQUIRE(m);
    CHECK(m->sent_at == at(kMay1 + 42));
    CHECK(m->acked_at == at(kMay1 + 50));
    CHECK(m->direction.empty());
    CHECK(m->id.empty());
  }
}

TEST_CASE("DaemonChatMessage::from_event is empty, never a throw, for anything else") {
  const json good = {{"From", "Eabc"}, {"Text", "hi"}, {"Direction", "incoming"}};
  REQUIRE(DaemonChatMessage::from_event(chat_event(good)));

  // Another event type with a chat-shaped payload.
  CHECK_FALSE(DaemonChatMessage::from_event(DaemonEvent::from_wire("peer_online", good.dump())));
  // Not JSON, not an object.
  for (const std::string raw : {"hello", "", "[1,2,3]", "\"Eabc\"", "42", "null", "{\"From\":"}) {
    CHECK_FALSE(DaemonChatMessage::from_event(DaemonEvent::from_wire("chat_message", raw)));
  }
  // No sender, no text, empty ones, or ones of the wrong type.
  auto without = [&](const char* key) {
    auto p = good;
    p.erase(key);
    return p;
  };
  CHECK_FALSE(DaemonChatMessage::from_event(chat_event(without("From"))));
  CHECK_FALSE(DaemonChatMessage::from_event(chat_event(without("Text"))));
  CHECK_FALSE(DaemonChatMessage::from_event(chat_event({{"From", ""}, {"Text", "hi"}})));
  CHECK_FALSE(DaemonChatMessage::from_event(chat_event({{"From", "Eabc"}, {"Text", ""}})));
  CHECK_FALSE(DaemonChatMessage::from_event(chat_event({{"From", 7}, {"Text", "hi"}})));
  CHECK_FALSE(DaemonChatMessage::from_event(chat_event({{"From", "Eabc"}, {"Text", json::array({"hi"})}})));
  CHECK_FALSE(DaemonChatMessage::from_event(chat_event({{"From", nullptr}, {"Text", "hi"}})));
  // Strange but harmless extras decode the chat and ignore the rest.
  const auto odd = DaemonChatMessage::from_event(chat_event(
      {{"From", "Eabc"}, {"Text", "hi"}, {"SentAt", json::object()}, {"AckedAt", 1e300}, {"ID", 5}, {"Extra", "x"}}));
  REQUIRE(odd);
  CHECK(odd->sent_at == ensemble::Timestamp{});
  CHECK_FALSE(odd->acked_at);
  CHECK(odd->id.empty());
}

TEST_CASE("DaemonFileOffer reads Go and snake_case offers, and nothing else") {
  auto offer = ensemble::DaemonFileOffer::from_event(DaemonEvent::from_wire(
      "file_offer", R"({"TransferID":"t1","From":"Eabc","Filename":"a.bin","Size":5242880})"));
  REQUIRE(offer);
  CHECK(offer->transfer_id == "t1");
  CHECK(offer->from_addr == "Eabc");
  CHECK(offer->filename == "a.bin");
  CHECK(offer->size == 5242880);
  offer = ensemble::DaemonFileOffer::from_event(
      DaemonEvent::from_wire("file_offer", R"({"transfer_id":"t2","from_addr":"Eabc","filename":"b","size":3})"));
  REQUIRE(offer);
  CHECK(offer->transfer_id == "t2");
  CHECK(offer->size == 3);
  CHECK_FALSE(ensemble::DaemonFileOffer::from_event(DaemonEvent::from_wire("file_offer", R"({"Filename":"x"})")));
  CHECK_FALSE(ensemble::DaemonFileOffer::from_event(DaemonEvent::from_wire("file_offer", "nope")));
  CHECK_FALSE(ensemble::DaemonFileOffer::from_event(DaemonEvent::from_wire("chat_message", R"({"TransferID":"t"})")));
}

// ---- the stream, against the daemon double -------------------------------------------

TEST_CASE("events deliver chat_message; the incoming filter drops the node's own echoes") {
  Node node;
  const std::string peer = stranger_address();
  EventLog log;
  std::atomic<int> replies{0};
  auto sub = node.client.events([&](const DaemonEvent& ev) {
    if (auto m = DaemonChatMessage::from_event(ev); m && m->incoming()) ++replies;
    log(ev);  // last: the test thread wakes on it
  });
  REQUIRE(await_subscribed(node.daemon, *sub));
  CHECK(node.client.open_calls() == 1);

  // The operator dials (chat needs a connection), writes, and the bus echoes it as outgoing.
  REQUIRE(node.client.connect(peer).accepted);
  const auto before = std::chrono::system_clock::now();
  const std::string id = node.client.send(peer, "hello from the operator");
  // The peer answers; it arrives as incoming.
  REQUIRE(node.daemon.inject_node_chat(peer, "hello operator"));

  const auto echo = log.wait_for([&](const DaemonEvent& ev) {
    auto m = DaemonChatMessage::from_event(ev);
    return m && !m->incoming();
  });
  REQUIRE(echo);
  const auto sent = DaemonChatMessage::from_event(*echo);
  CHECK(sent->id == id);
  CHECK(sent->from_addr == node.daemon.node_address());
  CHECK(sent->to_addr == peer);
  CHECK(sent->text == "hello from the operator");
  CHECK(sent->direction == "outgoing");
  CHECK(sent->sent_at >= std::chrono::floor<std::chrono::milliseconds>(before) - 1s);

  const auto reply_ev = log.wait_for([](const DaemonEvent& ev) {
    auto m = DaemonChatMessage::from_event(ev);
    return m && m->incoming();
  });
  REQUIRE(reply_ev);
  CHECK(reply_ev->payload.contains("SentAt"));  // the double speaks Go keys
  const auto reply = DaemonChatMessage::from_event(*reply_ev);
  CHECK(reply->from_addr == peer);
  CHECK(reply->to_addr == node.daemon.node_address());
  CHECK(reply->text == "hello operator");
  CHECK(reply->sent_at <= std::chrono::system_clock::now() + 1s);
  CHECK(reply->sent_at >= std::chrono::floor<std::chrono::milliseconds>(before) - 1s);

  CHECK(replies == 1);  // the echo was filtered out
  CHECK(sub->events_received() >= 2);
  CHECK_FALSE(sub->done());
}

TEST_CASE("events carry connection requests to the operator as the requester's address") {
  Node node;
  EventLog log;
  auto sub = node.client.events(std::ref(log));
  REQUIRE(await_subscribed(node.daemon, *sub));
  const std::string peer = stranger_address();
  node.daemon.inject_node_connection_request(peer);
  const auto ev = log.wait_type(ensemble::node_event_type::connection_request);
  REQUIRE(ev);
  REQUIRE(ev->payload.is_string());
  node.client.accept_connection(ev->payload.get<std::string>());
  CHECK(node.daemon.wait_decision(peer, 5s) == "accepted");
}

TEST_CASE("cancelling a subscription mid-stream ends it with CANCELLED") {
  Node node;
  const std::string peer = stranger_address();
  EventLog log;
  std::promise<grpc::Status> ended;
  auto sub = node.client.events(std::ref(log), [&](const grpc::Status& s) { ended.set_value(s); });
  REQUIRE(await_subscribed(node.daemon, *sub));
  for (int i = 0; i < 5; ++i) REQUIRE(node.daemon.inject_node_chat(peer, "msg " + std::to_string(i)));
  REQUIRE(log.wait_for([](const DaemonEvent& ev) {
    auto m = DaemonChatMessage::from_event(ev);
    return m && m->text == "msg 4";
  }));

  sub->cancel();
  const grpc::Status status = sub->wait();
  CHECK(status.error_code() == grpc::StatusCode::CANCELLED);
  auto on_end = ended.get_future();
  REQUIRE(on_end.wait_for(0s) == std::future_status::ready);  // on_end ran before wait() returned
  CHECK(on_end.get().error_code() == grpc::StatusCode::CANCELLED);
  CHECK(sub->done());
  CHECK(sub->wait_for(0ms)->error_code() == grpc::StatusCode::CANCELLED);
  CHECK(node.client.open_calls() == 0);

  // Nothing arrives after the end.
  const auto count = sub->events_received();
  REQUIRE(node.daemon.inject_node_chat(peer, "after"));
  std::this_thread::sleep_for(100ms);
  CHECK(sub->events_received() == count);
  sub->cancel();  // again: harmless
}

TEST_CASE("releasing the last handle cancels the subscription and waits for its end") {
  Node node;
  std::atomic<bool> ended{false};
  std::atomic<grpc::StatusCode> code{grpc::StatusCode::OK};
  // on_end runs on a gRPC thread, and Catch2's assertions are not thread-safe: record, check later.
  auto sub = node.client.events({}, [&](const grpc::Status& s) {
    code = s.error_code();
    ended = true;
  });
  REQUIRE(await_subscribed(node.daemon, *sub));
  sub.reset();
  CHECK(ended);
  CHECK(code.load() == grpc::StatusCode::CANCELLED);
  CHECK(node.client.open_calls() == 0);
}

TEST_CASE("a handle released from inside its own handler does not deadlock") {
  Node node;
  std::shared_ptr<ensemble::EventSubscription> sub;
  std::mutex mu;
  std::promise<void> released;
  sub = node.client.events([&](const DaemonEvent&) {
    std::shared_ptr<ensemble::EventSubscription> mine;
    {
      std::lock_guard lock(mu);
      mine.swap(sub);
    }
    if (mine) {
      mine.reset();  // on a gRPC thread: cancels, does not wait
      released.set_value();
    }
  });
  // The first event releases it: offer events until one has arrived.
  auto was_released = released.get_future();
  for (int i = 0; i < 250 && was_released.wait_for(20ms) != std::future_status::ready; ++i) {
    node.daemon.publish_node_event("test.subscribed", "{}");
  }
  REQUIRE(was_released.wait_for(0ms) == std::future_status::ready);
  CHECK(eventually([&] { return node.client.open_calls() == 0; }));
}

TEST_CASE("a throwing handler is reported and the stream goes on") {
  Node node;
  const std::string peer = stranger_address();
  std::atomic<int> calls{0};
  test_support::StderrCapture err;
  auto sub = node.client.events([&](const DaemonEvent& ev) {
    if (ev.type != "chat_message") return;  // await_subscribed's markers
    if (++calls == 1) throw std::runtime_error("boom");
  });
  REQUIRE(await_subscribed(node.daemon, *sub));
  REQUIRE(node.daemon.inject_node_chat(peer, "one"));
  REQUIRE(node.daemon.inject_node_chat(peer, "two"));
  REQUIRE(eventually([&] { return calls == 2; }));
  sub->cancel();
  sub->wait();
  CHECK_THAT(err.text(), Contains("node event handler threw: boom"));
}

TEST_CASE("the end status reports how a subscription ended") {
  SECTION("the daemon went away: UNAVAILABLE") {
    Node node;
    std::promise<grpc::Status> ended;
    auto sub = node.client.events({}, [&](const grpc::Status& s) { ended.set_value(s); });
    REQUIRE(await_subscribed(node.daemon, *sub));
    node.daemon.stop();
    const auto status = sub->wait_for(10s);
    REQUIRE(status);
    CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
    CHECK(ended.get_future().get().error_code() == grpc::StatusCode::UNAVAILABLE);
  }
  SECTION("a key the daemon does not know: PERMISSION_DENIED") {
    Node node;
    ensemble::Client stranger({.socket_path = node.daemon.unix_socket_path(), .auth_seed = ensemble::Seed::generate()});
    auto sub = stranger.events({});
    const auto status = sub->wait_for(10s);
    REQUIRE(status);
    CHECK(status->error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(status->error_message() == "unauthorized public key");
    CHECK(sub->events_received() == 0);
  }
  SECTION("the CallOptions timeout: DEADLINE_EXCEEDED") {
    Node node;
    auto sub = node.client.events({}, {}, {.timeout = 200ms});
    const auto status = sub->wait_for(10s);
    REQUIRE(status);
    CHECK(status->error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  SECTION("nothing listening: UNAVAILABLE, no hang") {
    test_support::TempDir dir;
    ensemble::Client nowhere({.socket_path = (dir / "none.sock").string()});
    auto sub = nowhere.events({});
    const auto status = sub->wait_for(20s);
    REQUIRE(status);
    CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
  }
}

TEST_CASE("destroying the Client cancels its subscriptions; held handles report the end") {
  auto node = std::make_unique<Node>();
  auto sub = node->client.events({});
  REQUIRE(await_subscribed(node->daemon, *sub));
  {
    ensemble::Client gone = std::move(node->client);
  }
  REQUIRE(sub->done());
  CHECK(sub->wait().error_code() == grpc::StatusCode::CANCELLED);
  node.reset();
  sub.reset();  // after the Client and the daemon: still fine
}

TEST_CASE("many subscriptions on one client each get every event") {
  Node node;
  constexpr int kSubs = 8;
  std::vector<std::unique_ptr<EventLog>> logs;
  std::vector<std::shared_ptr<ensemble::EventSubscription>> subs;
  for (int i = 0; i < kSubs; ++i) {
    logs.push_back(std::make_unique<EventLog>());
    subs.push_back(node.client.events(std::ref(*logs.back())));
  }
  for (auto& s : subs) REQUIRE(await_subscribed(node.daemon, *s));
  CHECK(node.client.open_calls() == kSubs);
  REQUIRE(node.daemon.inject_node_chat(stranger_address(), "to all"));
  for (auto& log : logs) CHECK(log->wait_type("chat_message"));
  subs.clear();
  CHECK(node.client.open_calls() == 0);
}

}  // namespace test_node_events
