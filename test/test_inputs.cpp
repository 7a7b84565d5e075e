// Inputs that reach gRPC (issue 14): metadata values, socket paths, URI characters, slow
// listeners, host names and registrations that end with OK. Each case is one a user met;
// each talks gRPC over real sockets where there is something to dial.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>

#include "support/delaying_proxy.hpp"
#include "support/identity_server.hpp"
#include "support/registry_server.hpp"
#include "support/scoped_env.hpp"
#include "support/tempdir.hpp"
#include "support/thrown.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace test_inputs {  // this file's names; test_ensemble is a unity build (meson.build)

using Catch::Matchers::Contains;
using test_support::IdentityServer;
using test_support::Transport;

using test_support::ScopedEnv;

namespace {

ensemble::Seed seed_of(std::uint8_t first) {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(first + i);
  return ensemble::Seed::from_bytes(bytes);
}

std::array<std::uint8_t, 32> public_key_of(const ensemble::Seed& seed) {
  return ensemble::Signer(seed).public_key();
}

// The message of the ConfigError that f throws.
template <class F>
std::string config_error(F f) {
  return test_support::thrown<ensemble::ConfigError>(std::move(f));
}

constexpr auto kCall = ensemble::CallOptions{.timeout = std::chrono::seconds(10)};

}  // namespace

// ---- 1. metadata values ----

TEST_CASE("a token gRPC would refuse is a ConfigError naming its source, never the secret") {
  test_support::TempDir dir;
  ScopedEnv env;
  env.set("ENSEMBLE_SOCKET", (dir / "api.sock").string()).set("ENSEMBLE_AUTH_SEED", std::nullopt);

  SECTION("ENSEMBLE_SERVICE_TOKEN ending in \\r (an env file with CRLF line endings)") {
    env.set("ENSEMBLE_SERVICE_TOKEN", "secret-token-4711\r");
    const auto message = config_error([] { ensemble::Client::from_env(); });
    CHECK_THAT(message, Contains("ENSEMBLE_SERVICE_TOKEN") && Contains("\"\\r\"") &&
                            Contains("CRLF"));
    CHECK_THAT(message, !Contains("secret-token-4711"));
  }
  SECTION("ENSEMBLE_SERVICE_TOKEN with a control character inside") {
    env.set("ENSEMBLE_SERVICE_TOKEN", "secret\x01token");
    const auto message = config_error([] { ensemble::Client::from_env(); });
    CHECK_THAT(message, Contains("ENSEMBLE_SERVICE_TOKEN") && Contains("\\x01") &&
                            Contains("offset 6") && Contains("0x20 to 0x7E"));
    CHECK_THAT(message, !Contains("secret"));
  }
  SECTION("ClientOptions::service_token: a \\r inside, a byte over 0x7E, a surrounding space") {
    for (const std::string token : {"secret\rtoken", "secret\xc3\xa4token", " secrettoken"}) {
      const auto message = config_error([&] {
        ensemble::Client({.socket_path = (dir / "api.sock").string(), .service_token = token});
      });
      CHECK_THAT(message, Contains("ClientOptions::service_token"));
      CHECK_THAT(message, !Contains("secret"));
    }
  }
}

TEST_CASE("every printable ASCII byte goes out in the token, over a real socket") {
  test_support::TempDir dir;
  test_support::OkEndingRegistry registry(dir / "api.sock", "");
  std::string token;
  for (char c = 0x21; c <= 0x7e; ++c) token += c;
  token.insert(10, " ");  // a space inside is legal metadata
  ensemble::Client client({.socket_path = (dir / "api.sock").string(), .service_token = token});
  auto svc = client.service("bot");
  CHECK_THROWS_AS(svc->start(), ensemble::RegistrationError);
  REQUIRE(registry.tokens_seen().size() == 1);
  CHECK(registry.tokens_seen()[0] == token);
}

// ---- 2. the kernel's limit on a Unix socket path ----

TEST_CASE("a socket path over the kernel's limit is a ConfigError with the length and the limit") {
  test_support::TempDir dir;
  const std::string base = (dir.path() / "").string();
  const auto path_of_length = [&](std::size_t length) {
    return base + std::string(length - base.size(), 's');
  };
  REQUIRE(ensemble::detail::kMaxSocketPathBytes == 107);  // Linux

  // 107 bytes is allowed and dials: a server really listens there.
  const auto longest = path_of_length(107);
  IdentityServer server(Transport::unix_socket, public_key_of(seed_of(1)), dir.path(),
                        std::filesystem::path(longest).filename().string());
  ensemble::Client client({.socket_path = longest, .auth_seed = seed_of(1)});
  CHECK(client.get_identity(kCall).address == ensemble::address_from_public_key(public_key_of(seed_of(1))));

  for (const std::size_t length : {std::size_t{108}, std::size_t{117}}) {
    const auto path = path_of_length(length);
    CHECK_THAT(config_error([&] { ensemble::Client({.socket_path = path}); }),
               Contains("ClientOptions::socket_path") &&
                   Contains(std::to_string(length) + " bytes long") && Contains("at most 107 bytes"));
    CHECK_THAT(config_error([&] { ensemble::Client({.socket_path = "unix://" + path}); }),
               Contains(std::to_string(length) + " bytes long"));
    ScopedEnv env;
    env.set("ENSEMBLE_SOCKET", path).set("ENSEMBLE_SERVICE_TOKEN", std::nullopt).set("ENSEMBLE_AUTH_SEED", std::nullopt);
    CHECK_THAT(config_error([] { ensemble::Client::from_env(); }),
               Contains("ENSEMBLE_SOCKET") && Contains(std::to_string(length) + " bytes long"));
  }
}

// ---- 3. characters that mean something in a URI ----

TEST_CASE("a bare socket path is dialled exactly, whatever characters it holds") {
  test_support::TempDir dir;
  const ensemble::Seed right = seed_of(1);
  const ensemble::Seed wrong = seed_of(100);
  const std::string right_address = ensemble::address_from_public_key(public_key_of(right));

  // {directory of the real socket, where "unix:" + path would land instead (dir, socket name)}
  struct Case {
    const char* directory;
    const char* decoy_directory;
    const char* decoy_name;
  };
  const Case cases[] = {
      {"h#1", ".", "h"},            // '#' starts a fragment
      {"q?x=1", ".", "q"},          // '?' starts a query
      {"p%41", "pA", "api.sock"},   // "%41" decodes to 'A'
      {"sp ace:colon", "", ""},     // nothing special, but worth dialling once
  };
  for (const Case& c : cases) {
    CAPTURE(c.directory);
    std::filesystem::create_directories(dir / c.directory);
    IdentityServer server(Transport::unix_socket, public_key_of(right), dir / c.directory);
    std::optional<IdentityServer> decoy;
    if (*c.decoy_name != '\0') {
      std::filesystem::create_directories(dir / c.decoy_directory);
      decoy.emplace(Transport::unix_socket, public_key_of(wrong), dir / c.decoy_directory, c.decoy_name);
    }
    const std::string path = (dir / c.directory / "api.sock").string();
    ensemble::Client client({.socket_path = path, .auth_seed = right});
    // The decoy does not admit this seed: reaching it would be PERMISSION_DENIED.
    CHECK(client.get_identity(kCall).address == right_address);
    CHECK(server.seen_timestamps().size() == 1);
    if (decoy) CHECK(decoy->seen_timestamps().empty());
  }
}

TEST_CASE("socket_path forms: unix: prefixes for plain paths, a ConfigError for the rest") {
  test_support::TempDir dir;
  IdentityServer server(Transport::unix_socket, public_key_of(seed_of(1)), dir.path());
  const std::string path = (dir / "api.sock").string();
  for (const std::string& form : {path, "unix:" + path, "unix://" + path}) {
    CAPTURE(form);
    ensemble::Client client({.socket_path = form, .auth_seed = seed_of(1)});
    CHECK_FALSE(client.get_identity(kCall).address.empty());
  }

  CHECK_THAT(config_error([] { ensemble::Client({.socket_path = "unix://relative.sock"}); }),
             Contains("ClientOptions::socket_path \"unix://relative.sock\"") &&
                 Contains("host name") && Contains("accepted forms") && Contains("unix:///"));
  // In the URI forms '#', '?' and '%' are ambiguous: the bare path says what is meant.
  for (const std::string form : {"unix:/x/h#1/api.sock", "unix:///x/a?b", "unix:/x/p%41"}) {
    CHECK_THAT(config_error([&] { ensemble::Client({.socket_path = form}); }),
               Contains("give the bare path instead"));
  }
  CHECK_THAT(config_error([] { ensemble::Client({.socket_path = "unix:"}); }), Contains("names no path"));
  CHECK_THAT(config_error([] { ensemble::Client({.socket_path = std::string("/x/a\0b", 6)}); }),
             Contains("NUL byte at offset 4"));
}

// gRPC would read "unix:9090" as a target with a scheme and dial the Unix socket "9090";
// as an addr it is host "unix", port 9090, and nothing else is dialled.
TEST_CASE("an addr is never read as a gRPC scheme") {
  test_support::TempDir dir;
  IdentityServer server(Transport::unix_socket, public_key_of(seed_of(1)), dir.path(), "9090");
  const auto previous = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  {
    ensemble::Client client({.addr = "unix:9090"});
    CHECK_THROWS_AS(client.get_identity({.timeout = std::chrono::seconds(2)}), ensemble::RpcError);
  }
  std::filesystem::current_path(previous);
  CHECK(server.seen_timestamps().empty());
}

// ---- 4. a slow listener ----

TEST_CASE("a listener that takes 300 ms to accept each connection still connects") {
  test_support::TempDir dir;
  const ensemble::Seed seed = seed_of(1);
  IdentityServer server(Transport::loopback_tcp, public_key_of(seed), dir.path());
  test_support::DelayingProxy slow(server.port(), std::chrono::milliseconds(300));

  ensemble::Client client({.addr = "127.0.0.1:" + std::to_string(slow.port()), .auth_seed = seed});
  const auto started = std::chrono::steady_clock::now();
  CHECK(client.get_identity(kCall).address == ensemble::address_from_public_key(public_key_of(seed)));
  CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(300));
  CHECK(slow.accepted() >= 1);
}

// ---- 5. host names ----

TEST_CASE("every spelling of loopback counts as loopback, and nothing else") {
  const auto signed_to = [](const std::string& addr) {
    return [addr] { ensemble::Client({.addr = addr, .auth_seed = seed_of(1)}); };
  };
  for (const std::string host :
       {"localhost", "LOCALHOST", "LocalHost", "localhost.", "LOCALHOST.", "127.0.0.1",
        "127.255.255.254", "127.1", "127.000.000.001", "0x7f.0.0.1", "0177.0.0.1", "2130706433",
        "[::1]", "[0:0:0:0:0:0:0:1]", "[0000:0000:0000:0000:0000:0000:0000:0001]",
        "[::ffff:127.0.0.1]", "[::FFFF:7f00:1]", "[::1%lo]"}) {
    CAPTURE(host);
    CHECK_NOTHROW(signed_to(host + ":9090")());
  }
  for (const std::string host :
       {"127.evil.com", "localhost.evil.com", "evil-localhost", "foo.localhost",
        "ip6-localhost", "0127.0.0.1", "128.0.0.1", "0.0.0.0", "10.0.0.1", "[::]",
        "[::127.0.0.1]", "[::ffff:10.0.0.1]", "[fe80::1%lo]", "example.org"}) {
    CAPTURE(host);
    CHECK_THAT(config_error(signed_to(host + ":9090")), Contains("is not a loopback address"));
  }
}

TEST_CASE("LOCALHOST and other loopback spellings dial, signed, over real TCP") {
  test_support::TempDir dir;
  const ensemble::Seed seed = seed_of(1);
  IdentityServer server(Transport::loopback_tcp, public_key_of(seed), dir.path());
  const std::string port = std::to_string(server.port());
  for (const std::string host : {"LOCALHOST", "127.000.000.001", "[::ffff:127.0.0.1]"}) {
    CAPTURE(host);
    ensemble::Client client({.addr = host + ":" + port, .auth_seed = seed});
    CHECK(client.get_identity(kCall).address == ensemble::address_from_public_key(public_key_of(seed)));
  }
}

TEST_CASE("addr must be host:port, as gRPC splits it") {
  for (const auto& [addr, why] : std::vector<std::pair<std::string, std::string>>{
           {"no-port", "no port"},
           {"host:", "no port"},
           {":9090", "no host"},
           {"::1:9090", "IPv6 address goes in brackets"},
           {"[::1]9090", "no \":PORT\" after the ']'"},
           {"[::1:9090", "no ']'"},
           {"[nope]:9090", "is not an IPv6 address"},
           {"[::1%]:9090", "no zone after the '%'"},
           {"[::1%l/o]:9090", "the zone has the character \"/\""},
           {"host:0", "not a number from 1 to 65535"},
           {"host:65536", "not a number from 1 to 65535"},
           {"host:https", "not a number from 1 to 65535"},
           {"dns:///localhost:9090", "the host has the character \"/\""},
           {"h#st:9090", "the host has the character \"#\""},
           {"host\r:9090", "the host has the character \"\\r\""},
       }) {
    CAPTURE(addr);
    CHECK_THAT(config_error([&] { ensemble::Client({.addr = addr}); }),
               Contains("ClientOptions::addr") && Contains("is not host:port") && Contains(why) &&
                   Contains("accepted forms"));
  }
}

// ---- 6. a refusal that ends with status OK ----

TEST_CASE("a registration refused with error{message} and then OK never reports OK") {
  test_support::TempDir dir;
  SECTION("error{message}, then OK: the server's text with a non-OK code") {
    test_support::OkEndingRegistry registry(dir / "api.sock", "the name \"bot\" is reserved");
    ensemble::Client client({.socket_path = (dir / "api.sock").string()});
    auto svc = client.service("bot");
    try {
      svc->start();
      FAIL("start() succeeded");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::UNKNOWN);
      CHECK(e.daemon_message() == "the name \"bot\" is reserved");
      CHECK_THAT(std::string(e.what()), Contains("UNKNOWN: the name \"bot\" is reserved"));
    }
    CHECK(svc->wait().error_code() == grpc::StatusCode::UNKNOWN);
  }
  SECTION("OK without a word: still not OK") {
    test_support::OkEndingRegistry registry(dir / "api.sock", "");
    ensemble::Client client({.socket_path = (dir / "api.sock").string()});
    auto svc = client.service("bot");
    try {
      svc->start();
      FAIL("start() succeeded");
    } catch (const ensemble::RegistrationError& e) {
      CHECK(e.code() == grpc::StatusCode::UNKNOWN);
      CHECK_THAT(e.daemon_message(), Contains("before registering"));
    }
  }
}

}  // namespace test_inputs
