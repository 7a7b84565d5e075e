// The log sink (log.hpp): every diagnostic the library prints goes to the sink the
// application set, and to stderr, as before, when none is set.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/tempdir.hpp"

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace test_log {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;

namespace {

struct Recorded {
  ensemble::LogLevel level;
  std::string message;
};

// A sink that records, installed for the test's scope.
class RecordingSink {
 public:
  RecordingSink() {
    ensemble::set_log_sink([this](ensemble::LogLevel level, std::string_view message) {
      std::lock_guard lock(mu_);
      lines_.push_back({level, std::string(message)});
    });
  }
  ~RecordingSink() { ensemble::set_log_sink({}); }
  std::vector<Recorded> lines() {
    std::lock_guard lock(mu_);
    return lines_;
  }
  bool wait_for_lines(std::size_t n) {
    for (int i = 0; i < 250; ++i) {
      if (lines().size() >= n) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

 private:
  std::mutex mu_;
  std::vector<Recorded> lines_;
};

std::string world_readable_seed(const test_support::TempDir& dir) {
  const auto path = dir / "admin.seed";
  test_support::write_file(path, std::string(64, 'a'), 0644);
  return path.string();
}

}  // namespace

TEST_CASE("a handler that throws on a gRPC thread is reported to the sink, not stderr") {
  test_support::StderrCapture err;
  RecordingSink sink;
  ensemble::testing::DaemonDouble daemon;
  ensemble::Client client({.addr = daemon.tcp_target()});
  auto svc = client.service("thrower");
  svc->on_chat([](const ensemble::ChatMessage&) { throw std::runtime_error("boom"); });
  svc->start();
  const std::string peer =
      ensemble::address_from_public_key(ensemble::Signer(ensemble::Seed::generate()).public_key());
  REQUIRE(daemon.inject_chat("thrower", peer, "hi"));
  REQUIRE(sink.wait_for_lines(1));
  const auto lines = sink.lines();
  CHECK(lines[0].level == ensemble::LogLevel::error);
  CHECK(lines[0].message == "a handler of service \"thrower\" threw: boom");
  CHECK(err.text().find("boom") == std::string::npos);
}

TEST_CASE("a world-readable seed file warns through the sink; with none set, on stderr") {
  test_support::TempDir dir;
  const std::string path = world_readable_seed(dir);
  {
    RecordingSink sink;
    ensemble::Seed::from_file(path);
    const auto lines = sink.lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].level == ensemble::LogLevel::warning);
    CHECK(lines[0].message.find("chmod 600") != std::string::npos);
  }
  test_support::StderrCapture err;
  ensemble::Seed::from_file(path);
  CHECK(err.text().rfind("ensemble: WARNING: ", 0) == 0);
}

TEST_CASE("a sink that throws loses nothing: the message goes to stderr") {
  test_support::TempDir dir;
  const std::string path = world_readable_seed(dir);
  ensemble::set_log_sink([](ensemble::LogLevel, std::string_view) { throw std::runtime_error("sink down"); });
  test_support::StderrCapture err;
  ensemble::Seed::from_file(path);
  ensemble::set_log_sink({});
  CHECK(err.text().find("chmod 600") != std::string::npos);
}

}  // namespace test_log
