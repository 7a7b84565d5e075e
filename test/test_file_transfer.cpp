// send_file (SendFile's TransferProgress stream as a ClientReadReactor) between two daemon
// doubles that share a rendezvous directory: the receiving operator accepts the offer from
// its node event stream, progress rises to 100%, the bytes arrive intact; and the ways a
// transfer fails (rejected, cancelled, a bad path, a throwing progress handler).
#include <catch2/catch.hpp>

#include "support/node_double.hpp"

#include <atomic>
#include <random>
#include <string>

namespace test_file_transfer {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace node_test;
using Catch::Matchers::Contains;

namespace {

std::string random_bytes(std::size_t n) {
  std::mt19937_64 rng(42);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// Two nodes on one rendezvous; the receiver's operator watches its node events.
struct Pair {
  test_support::TempDir rendezvous;
  Node sender{rendezvous.path()};
  Node receiver{rendezvous.path()};
  test_support::TempDir files;
  EventLog receiver_events;
  std::shared_ptr<ensemble::EventSubscription> receiver_sub = receiver.client.events(std::ref(receiver_events));

  Pair() {
    if (!await_subscribed(receiver.daemon, *receiver_sub)) throw std::runtime_error("receiver subscription did not start");
  }

  std::optional<ensemble::DaemonFileOffer> wait_offer() {
    auto ev = receiver_events.wait_type(ensemble::node_event_type::file_offer);
    if (!ev) return std::nullopt;
    return ensemble::DaemonFileOffer::from_event(*ev);
  }
};


// The daemon reports a successful transfer with exactly one message: {transfer_id,
// complete: true}, no name, sizes or percent (daemon-protocol.md section 10).
void check_one_final_report(const std::vector<ensemble::FileProgress>& reports) {
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].complete);
  CHECK_FALSE(reports[0].transfer_id.empty());
  CHECK(reports[0].error.empty());
}

}  // namespace

TEST_CASE("a file of several MiB crosses between two nodes; success is one complete report") {
  Pair pair;
  constexpr std::size_t kSize = 5 * 1024 * 1024 + 123;
  const std::string content = random_bytes(kSize);
  const auto source = pair.files / "report.bin";
  test_support::write_file(source, content);
  const auto save_dir = pair.files / "inbox";
  std::filesystem::create_directories(save_dir);

  // The receiving operator accepts from the test thread as soon as the offer shows up.
  std::thread acceptor([&] {
    auto offer = pair.wait_offer();
    if (!offer) return;
    CHECK(offer->from_addr == pair.sender.daemon.node_address());
    CHECK(offer->filename == "report.bin");
    CHECK(offer->size == kSize);
    pair.receiver.client.accept_file(offer->transfer_id, save_dir.string(), {.timeout = 5s});
  });

  std::vector<ensemble::FileProgress> reports;
  const auto caller = std::this_thread::get_id();
  bool on_caller_thread = true;
  const auto last = pair.sender.client.send_file(pair.receiver.daemon.node_address(), source.string(),
                                                 [&](const ensemble::FileProgress& p) {
                                                   on_caller_thread = on_caller_thread && std::this_thread::get_id() == caller;
                                                   reports.push_back(p);
                                                 },
                                                 {.timeout = 60s});
  acceptor.join();

  CHECK(on_caller_thread);  // the blocking form reports on the calling thread
  check_one_final_report(reports);
  CHECK(last.complete);
  CHECK(last.transfer_id == reports.back().transfer_id);
  CHECK(test_support::read_file(save_dir / "report.bin") == content);
  CHECK(pair.sender.client.open_calls() == 0);
}

TEST_CASE("the callback form reports progress and the result, and its handle follows along") {
  Pair pair;
  constexpr std::size_t kSize = 3 * 1024 * 1024;
  const auto source = pair.files / "data.bin";
  test_support::write_file(source, random_bytes(kSize));

  std::mutex mu;
  std::vector<ensemble::FileProgress> reports;
  std::promise<ensemble::Result<ensemble::FileProgress>> done;
  auto transfer = pair.sender.client.send_file(
      pair.receiver.daemon.node_address(), source.string(),
      [&](const ensemble::FileProgress& p) {
        std::lock_guard lock(mu);
        reports.push_back(p);
      },
      [&](ensemble::Result<ensemble::FileProgress> r) { done.set_value(std::move(r)); });

  const auto offer = pair.wait_offer();
  REQUIRE(offer);
  // Before acceptance nothing is reported: the daemon's stream is silent until the end.
  CHECK_FALSE(transfer->latest().has_value());
  CHECK_FALSE(transfer->done());
  CHECK_FALSE(transfer->wait_for(50ms));

  test_support::TempDir inbox;  // not the source's directory: the receiver truncates what it writes
  auto accepted = await<ensemble::Done>(
      [&](auto cb) { pair.receiver.client.accept_file(offer->transfer_id, inbox.path().string(), cb); });
  REQUIRE(accepted.ok());

  auto future = done.get_future();
  REQUIRE(future.wait_for(60s) == std::future_status::ready);
  auto result = future.get();
  REQUIRE(result.ok());
  CHECK(result.value().complete);
  // on_done runs before the handle reports the end, so wait for it rather than poll.
  REQUIRE(transfer->wait_for(5s));
  CHECK(transfer->done());
  CHECK(transfer->wait().complete);
  CHECK(transfer->latest()->complete);
  CHECK(std::filesystem::file_size(inbox / "data.bin") == kSize);
  std::lock_guard lock(mu);
  check_one_final_report(reports);

  // The receiver saw its own side as file_progress events ending complete.
  CHECK(pair.receiver_events.wait_for([](const ensemble::DaemonEvent& ev) {
    return ev.type == "file_progress" && ev.payload.value("Complete", false);
  }));
}

TEST_CASE("a rejected offer fails the send with the daemon's INTERNAL \"sending file: ...\"") {
  Pair pair;
  const auto source = pair.files / "nope.bin";
  test_support::write_file(source, random_bytes(1000));
  std::thread rejecter([&] {
    if (auto offer = pair.wait_offer()) pair.receiver.client.reject_file(offer->transfer_id);
  });
  try {
    pair.sender.client.send_file(pair.receiver.daemon.node_address(), source.string(), {}, {.timeout = 20s});
    FAIL("send_file should have thrown");
  } catch (const ensemble::RpcError& e) {
    CHECK(e.code() == grpc::StatusCode::INTERNAL);
    CHECK(e.daemon_message() == "sending file: transfer rejected by peer");
    CHECK(e.call() == "SendFile");
  }
  rejecter.join();
}

TEST_CASE("cancelling a transfer ends it with CANCELLED") {
  Pair pair;
  const auto source = pair.files / "big.bin";
  test_support::write_file(source, random_bytes(1024 * 1024));
  std::promise<ensemble::Result<ensemble::FileProgress>> done;
  auto transfer = pair.sender.client.send_file(pair.receiver.daemon.node_address(), source.string(), {},
                                               [&](ensemble::Result<ensemble::FileProgress> r) { done.set_value(std::move(r)); });
  REQUIRE(pair.wait_offer());  // waiting for the receiver's decision, which never comes
  transfer->cancel();
  CHECK_THROWS_MATCHES(transfer->wait(), ensemble::RpcError, rpc_code(grpc::StatusCode::CANCELLED));
  auto result = done.get_future().get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.status()->error_code() == grpc::StatusCode::CANCELLED);
  CHECK(pair.sender.client.open_calls() == 0);

  SECTION("releasing the handle cancels too") {
    auto second = pair.sender.client.send_file(pair.receiver.daemon.node_address(), source.string(), {}, nullptr);
    second.reset();
    CHECK(pair.sender.client.open_calls() == 0);
  }
}

TEST_CASE("a progress handler that throws cancels the blocking transfer and the exception propagates") {
  Node node;
  test_support::TempDir files;
  const auto source = files / "x.bin";
  test_support::write_file(source, random_bytes(2 * 1024 * 1024));
  CHECK_THROWS_MATCHES(node.client.send_file(stranger_address(), source.string(),
                                             [](const ensemble::FileProgress&) { throw std::logic_error("stop here"); }),
                       std::logic_error, what_contains<std::logic_error>("stop here"));
  CHECK(node.client.open_calls() == 0);
}

TEST_CASE("a synthetic peer takes the file at once") {
  Node node;
  test_support::TempDir files;
  const auto source = files / "small.txt";
  test_support::write_file(source, "hello file");
  const std::string peer = stranger_address();
  const auto last = node.client.send_file(peer, source.string());
  CHECK(last.complete);
  REQUIRE(node.daemon.wait_peer_inbox(peer, 1, 5s));
  const auto inbox = node.daemon.peer_inbox(peer);
  CHECK(inbox[0].kind == "file");
  CHECK(inbox[0].size == 10);
}

TEST_CASE("send_file: bad input is refused before sending; daemon-side failures are RpcError") {
  Node node;
  CHECK_THROWS_MATCHES(node.client.send_file("bogus", "/etc/hostname"), ensemble::AddressError, what_contains<ensemble::AddressError>("send_file address"));
  CHECK_THROWS_MATCHES(node.client.send_file(stranger_address(), ""), ensemble::InvalidArgumentError, what_contains<ensemble::InvalidArgumentError>("send_file: file_path is empty"));
  CHECK_THROWS_AS(node.client.send_file(stranger_address(), "", {}, [](ensemble::Result<ensemble::FileProgress>) {}),
                  ensemble::InvalidArgumentError);

  try {
    node.client.send_file(stranger_address(), "/nonexistent/file.bin");
    FAIL("send_file should have thrown");
  } catch (const ensemble::RpcError& e) {
    CHECK(e.code() == grpc::StatusCode::INTERNAL);
    CHECK_THAT(e.daemon_message(), Contains("sending file: open /nonexistent/file.bin"));
  }

  ensemble::Client stranger({.socket_path = node.daemon.unix_socket_path(), .auth_seed = ensemble::Seed::generate()});
  CHECK_THROWS_MATCHES(stranger.send_file(stranger_address(), "/etc/hostname"), ensemble::RpcError,
                       rpc_code(grpc::StatusCode::PERMISSION_DENIED));
}

TEST_CASE("file_transfer_result: how a finished stream becomes the final result") {
  using ensemble::FileProgress;
  using ensemble::detail::file_transfer_result;
  const FileProgress ok{"t", "f", 10, 10, 100, true, ""};
  CHECK(file_transfer_result(grpc::Status::OK, ok).value().complete);
  // A Go daemon's single final report: only the id and complete.
  CHECK(file_transfer_result(grpc::Status::OK, FileProgress{.transfer_id = "t", .complete = true}).ok());

  CHECK_THROWS_MATCHES(file_transfer_result(grpc::Status::OK, std::nullopt).value(), ensemble::FileTransferError, what_contains<ensemble::FileTransferError>("without any progress report"));
  FileProgress failed = ok;
  failed.complete = false;
  failed.error = "peer went away";
  try {
    file_transfer_result(grpc::Status::OK, failed).value();
    FAIL("should throw");
  } catch (const ensemble::FileTransferError& e) {
    CHECK_THAT(e.what(), Contains("transfer t failed: peer went away"));
    REQUIRE(e.last_progress());
    CHECK(e.last_progress()->error == "peer went away");
  }
  FileProgress unfinished = ok;
  unfinished.complete = false;
  CHECK_THROWS_MATCHES(file_transfer_result(grpc::Status::OK, unfinished).value(), ensemble::FileTransferError, what_contains<ensemble::FileTransferError>("before transfer t was complete"));
  CHECK_THROWS_MATCHES(file_transfer_result(grpc::Status(grpc::StatusCode::INTERNAL, "sending file: x"), ok).value(),
                       ensemble::RpcError, rpc_code(grpc::StatusCode::INTERNAL));
}

}  // namespace test_file_transfer
