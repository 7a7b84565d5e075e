// SpawnContext::from_env: the supervisor's variables, empty meaning unset, and supervised()
// keyed on the token. Each case sets the whole environment it depends on.
#include <catch2/catch.hpp>

#include <ensemble/spawn.hpp>

#include <cstdlib>
#include <string>

namespace test_spawn {  // this file's names; test_ensemble is a unity build (meson.build)

namespace {

constexpr const char* kVariables[] = {"ENSEMBLE_SOCKET", "ENSEMBLE_SERVICE_NAME",
                                      "ENSEMBLE_SERVICE_TOKEN", "ENSEMBLE_DATA_DIR",
                                      "ENSEMBLE_AUTH_SEED"};

// Clears every ENSEMBLE_* variable on entry and exit, so cases cannot leak into each other.
struct CleanEnvironment {
  CleanEnvironment() { clear(); }
  ~CleanEnvironment() { clear(); }
  static void clear() {
    for (const char* name : kVariables) ::unsetenv(name);
  }
};

}  // namespace

TEST_CASE("nothing set: every field empty, not supervised") {
  CleanEnvironment env;
  const auto context = ensemble::SpawnContext::from_env();
  CHECK_FALSE(context.socket_path);
  CHECK_FALSE(context.service_name);
  CHECK_FALSE(context.service_token);
  CHECK_FALSE(context.auth_seed_path);
  CHECK_FALSE(context.data_dir);
  CHECK_FALSE(context.supervised());
}

TEST_CASE("the supervisor's full contract") {
  CleanEnvironment env;
  ::setenv("ENSEMBLE_SOCKET", "/run/ensemble/api.sock", 1);
  ::setenv("ENSEMBLE_SERVICE_NAME", "echo", 1);
  ::setenv("ENSEMBLE_SERVICE_TOKEN", "tok-123", 1);
  ::setenv("ENSEMBLE_DATA_DIR", "/var/lib/ensemble/services/echo", 1);
  const auto context = ensemble::SpawnContext::from_env();
  CHECK(context.socket_path == "/run/ensemble/api.sock");
  CHECK(context.service_name == "echo");
  CHECK(context.service_token == "tok-123");
  REQUIRE(context.data_dir);
  CHECK(*context.data_dir == std::filesystem::path("/var/lib/ensemble/services/echo"));
  CHECK_FALSE(context.auth_seed_path);
  CHECK(context.supervised());
}

TEST_CASE("a sidecar: socket and seed, no token") {
  CleanEnvironment env;
  ::setenv("ENSEMBLE_SOCKET", "/run/ensemble/api.sock", 1);
  ::setenv("ENSEMBLE_AUTH_SEED", "/etc/ensemble/admin.seed", 1);
  const auto context = ensemble::SpawnContext::from_env();
  CHECK(context.socket_path == "/run/ensemble/api.sock");
  CHECK(context.auth_seed_path == "/etc/ensemble/admin.seed");
  CHECK_FALSE(context.service_token);
  CHECK_FALSE(context.supervised());
}

TEST_CASE("a token and a seed together: the token wins (supervised)") {
  CleanEnvironment env;
  ::setenv("ENSEMBLE_SOCKET", "/s", 1);
  ::setenv("ENSEMBLE_SERVICE_TOKEN", "t", 1);
  ::setenv("ENSEMBLE_AUTH_SEED", "/seed", 1);
  const auto context = ensemble::SpawnContext::from_env();
  CHECK(context.supervised());
  CHECK(context.auth_seed_path == "/seed");  // still reported; the Client decides to ignore it
}

TEST_CASE("empty variables count as unset") {
  CleanEnvironment env;
  for (const char* name : kVariables) ::setenv(name, "", 1);
  const auto context = ensemble::SpawnContext::from_env();
  CHECK_FALSE(context.socket_path);
  CHECK_FALSE(context.service_name);
  CHECK_FALSE(context.service_token);
  CHECK_FALSE(context.auth_seed_path);
  CHECK_FALSE(context.data_dir);
  CHECK_FALSE(context.supervised());
}

TEST_CASE("values are taken verbatim inside, whatever they contain") {
  CleanEnvironment env;
  ::setenv("ENSEMBLE_SERVICE_TOKEN", "spaced token\twith=signs", 1);
  ::setenv("ENSEMBLE_SOCKET", "relative/path.sock", 1);
  ::setenv("ENSEMBLE_SERVICE_NAME", "n\xc3\xa4me", 1);
  const auto context = ensemble::SpawnContext::from_env();
  CHECK(context.service_token == "spaced token\twith=signs");
  CHECK(context.socket_path == "relative/path.sock");
  CHECK(context.service_name == "n\xc3\xa4me");
}

// An env file with CRLF line endings, or a stray space: refused, not trimmed, for every
// variable, with the variable named and the invisible character shown escaped.
TEST_CASE("surrounding whitespace is refused in every variable, naming it") {
  CleanEnvironment env;
  for (const char* name : kVariables) {
    for (const std::string value : {"/some/value\r", " /some/value", "/some/value\n", "\t/some/value"}) {
      CAPTURE(name, value);
      CleanEnvironment::clear();
      ::setenv(name, value.c_str(), 1);
      try {
        ensemble::SpawnContext::from_env();
        FAIL("nothing thrown");
      } catch (const ensemble::ConfigError& e) {
        const std::string message = e.what();
        CHECK_THAT(message, Catch::Matchers::Contains(name) &&
                                Catch::Matchers::Contains("refused, not trimmed"));
        CHECK_THAT(message, !Catch::Matchers::Contains("\r") && !Catch::Matchers::Contains("\n") &&
                                !Catch::Matchers::Contains("\t"));
        // The token is a secret: its value is never shown. The others are, escaped.
        if (std::string(name) == "ENSEMBLE_SERVICE_TOKEN") {
          CHECK_THAT(message, !Catch::Matchers::Contains("/some/value"));
        } else {
          CHECK_THAT(message, Catch::Matchers::Contains("/some/value"));
        }
      }
    }
  }
  ::setenv("ENSEMBLE_SOCKET", "/run/ensemble/api.sock\r", 1);
  CHECK_THROWS_WITH(ensemble::SpawnContext::from_env(),
                    Catch::Matchers::Contains("ENSEMBLE_SOCKET \"/run/ensemble/api.sock\\r\" ends with "
                                              "whitespace \"\\r\"") &&
                        Catch::Matchers::Contains("CRLF"));
}

TEST_CASE("from_env is a snapshot: later changes do not affect it") {
  CleanEnvironment env;
  ::setenv("ENSEMBLE_SOCKET", "/first", 1);
  const auto context = ensemble::SpawnContext::from_env();
  ::setenv("ENSEMBLE_SOCKET", "/second", 1);
  CHECK(context.socket_path == "/first");
  CHECK(ensemble::SpawnContext::from_env().socket_path == "/second");
}

TEST_CASE("SpawnContext is an aggregate that tests can build directly") {
  const ensemble::SpawnContext context{.socket_path = "/s", .service_token = "t"};
  CHECK(context.supervised());
}

}  // namespace test_spawn
