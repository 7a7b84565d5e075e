// Client construction: option checks, Client::from_env precedence, and the operator calls
// over real sockets against the daemon double.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include "support/delaying_proxy.hpp"
#include "support/scoped_env.hpp"
#include "support/tempdir.hpp"
#include "support/thrown.hpp"

#include <cstdlib>
#include <optional>
#include <string>

namespace test_client {  // this file's names; test_ensemble is a unity build (meson.build)

using ensemble::testing::DaemonDouble;
using ensemble::testing::DaemonDoubleOptions;

using test_support::ScopedEnv;
using test_support::thrown;

namespace {

ensemble::Seed admin_seed() {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i);
  return ensemble::Seed::from_bytes(bytes);
}

}  // namespace

TEST_CASE("exactly one of socket_path and addr") {
  CHECK_THAT(thrown<ensemble::ConfigError>([&] { ensemble::Client(ensemble::ClientOptions{}); }), Catch::Matchers::Contains("neither is set"));
  CHECK_THAT(thrown<ensemble::ConfigError>([&] { ensemble::Client({.socket_path = "/run/x.sock", .addr = "localhost:1"}); }), Catch::Matchers::Contains("both are set"));
}

TEST_CASE("option combinations that cannot work are refused at construction") {
  CHECK_THAT(thrown<ensemble::ConfigError>([&] { ensemble::Client({.socket_path = "/run/x.sock", .tls = true}); }), Catch::Matchers::Contains("tls applies to addr only"));
  CHECK_THAT(thrown<ensemble::ConfigError>([&] { ensemble::Client({.addr = "no-port"}); }), Catch::Matchers::Contains("\"no-port\" is not host:port"));
  CHECK_THAT(thrown<ensemble::ConfigError>([&] { ensemble::Client({.addr = "example.org:9090", .auth_seed = admin_seed()}); }), Catch::Matchers::Contains("not a loopback address"));
  // The same seed over TLS, or without a seed, is fine (no I/O happens at construction).
  CHECK_NOTHROW(ensemble::Client({.addr = "example.org:9090", .tls = true, .auth_seed = admin_seed()}));
  CHECK_NOTHROW(ensemble::Client({.addr = "example.org:9090", .tls_insecure = true}));
  CHECK_NOTHROW(ensemble::Client({.addr = "example.org:9090"}));
}

TEST_CASE("from_env: a missing ENSEMBLE_SOCKET names the variable") {
  ScopedEnv env;
  env.set("ENSEMBLE_SOCKET", std::nullopt).set("ENSEMBLE_SERVICE_TOKEN", std::nullopt).set("ENSEMBLE_AUTH_SEED", std::nullopt);
  CHECK_THAT(thrown<ensemble::ConfigError>([&] { ensemble::Client::from_env(); }), Catch::Matchers::Contains("ENSEMBLE_SOCKET"));
}

TEST_CASE("from_env: a token means supervised, with no seed even when one is named") {
  ScopedEnv env;
  env.set("ENSEMBLE_SOCKET", "/run/ensemble/sock")
      .set("ENSEMBLE_SERVICE_TOKEN", "tok-123")
      .set("ENSEMBLE_AUTH_SEED", "/nonexistent/seed");
  auto options = ensemble::Client::options_from(ensemble::SpawnContext::from_env());
  CHECK(options.socket_path == "/run/ensemble/sock");
  CHECK(options.service_token == "tok-123");
  CHECK_FALSE(options.auth_seed.has_value());
}

TEST_CASE("from_env: without a token the seed file signs, and a bad one is named") {
  test_support::TempDir dir;
  ScopedEnv env;
  env.set("ENSEMBLE_SOCKET", (dir / "api.sock").string()).set("ENSEMBLE_SERVICE_TOKEN", std::nullopt);

  SECTION("no seed: unsigned") {
    env.set("ENSEMBLE_AUTH_SEED", std::nullopt);
    auto options = ensemble::Client::options_from(ensemble::SpawnContext::from_env());
    CHECK_FALSE(options.auth_seed.has_value());
  }
  SECTION("a good seed file") {
    test_support::write_file(dir / "admin.seed", std::string(64, 'a') + "\n", 0600);
    env.set("ENSEMBLE_AUTH_SEED", (dir / "admin.seed").string());
    auto options = ensemble::Client::options_from(ensemble::SpawnContext::from_env());
    REQUIRE(options.auth_seed.has_value());
    CHECK(options.auth_seed->bytes()[0] == 0xaa);
  }
  SECTION("a short seed file") {
    test_support::write_file(dir / "short.seed", std::string(31, 'x'), 0600);
    env.set("ENSEMBLE_AUTH_SEED", (dir / "short.seed").string());
    CHECK_THAT(thrown<ensemble::AuthError>([&] { ensemble::Client::from_env(); }), Catch::Matchers::Contains("ENSEMBLE_AUTH_SEED") && Catch::Matchers::Contains("short.seed") &&
                             Catch::Matchers::Contains("31"));
  }
}

TEST_CASE("from_env: the client it builds talks to the daemon") {
  test_support::TempDir dir;
  DaemonDoubleOptions o;
  o.unix_socket = (dir / "api.sock").string();
  o.admin_key = ensemble::Signer(admin_seed()).public_key();
  DaemonDouble daemon(o);
  const auto token = daemon.mint_token("from-env");

  ScopedEnv env;
  env.set("ENSEMBLE_SOCKET", o.unix_socket).set("ENSEMBLE_SERVICE_TOKEN", token).set("ENSEMBLE_AUTH_SEED", std::nullopt);
  auto client = ensemble::Client::from_env();
  auto svc = client.service("from-env");
  svc->start();
  CHECK(svc->address() == daemon.service_address("from-env"));
}

TEST_CASE("operator connect and send are signed calls with typed results") {
  test_support::TempDir dir;
  DaemonDoubleOptions o;
  o.unix_socket = (dir / "api.sock").string();
  o.admin_key = ensemble::Signer(admin_seed()).public_key();
  DaemonDouble daemon(o);
  ensemble::Client client({.socket_path = o.unix_socket, .auth_seed = admin_seed()});

  auto svc = client.service("target", {.acl = ensemble::ACL::public_});
  svc->on_connection_request([&](const ensemble::ConnectionRequest& r) { svc->accept_connection(r.request_id); });
  svc->start();
  auto result = client.connect(svc->address(), {.timeout = std::chrono::seconds(5)});
  CHECK(result.accepted);

  auto id = client.send(svc->address(), "hello from the operator");
  CHECK_FALSE(id.empty());

  ensemble::Client stranger({.socket_path = o.unix_socket, .auth_seed = ensemble::Seed::generate()});
  CHECK_THROWS_MATCHES(stranger.send(svc->address(), "x"), ensemble::RpcError,
                       Catch::Predicate<ensemble::RpcError>(
                           [](const auto& e) { return e.code() == grpc::StatusCode::PERMISSION_DENIED; }));
}

// Issue 14, item 4: the connect timeout is gRPC's default, not the 100 ms reconnect backoff,
// so a daemon behind a listener that takes 300 ms to accept can be registered with and
// called. (test_inputs.cpp does the same for a unary call against a smaller server.)
TEST_CASE("start() and calls go through a listener that takes 300 ms to accept") {
  DaemonDouble daemon(DaemonDoubleOptions{.tcp_address = "127.0.0.1:0"});
  test_support::DelayingProxy slow(daemon.tcp_port(), std::chrono::milliseconds(300));
  ensemble::Client client({.addr = "127.0.0.1:" + std::to_string(slow.port()), .auth_seed = admin_seed()});
  auto svc = client.service("behind-a-slow-listener");
  svc->start();
  CHECK(svc->address() == daemon.service_address("behind-a-slow-listener"));
  CHECK_FALSE(client.get_identity({.timeout = std::chrono::seconds(10)}).address.empty());
  CHECK(slow.accepted() >= 1);
}

}  // namespace test_client
