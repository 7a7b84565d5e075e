// One version, set in meson.build's project(): the generated macros, the string and
// ensemble::version() must all say the same thing as meson. ENSEMBLE_MESON_PROJECT_VERSION
// comes from test/meson.build (meson.project_version()), so a stale or hand-edited header
// fails here.
#include <catch2/catch.hpp>

#include <ensemble/version.hpp>

#include <regex>
#include <string>

#ifndef ENSEMBLE_MESON_PROJECT_VERSION
#error "test/meson.build must define ENSEMBLE_MESON_PROJECT_VERSION"
#endif

TEST_CASE("the version macros, the string, version() and meson agree") {
  const std::string from_parts = std::to_string(ENSEMBLE_CLIENT_VERSION_MAJOR) + "." +
                                 std::to_string(ENSEMBLE_CLIENT_VERSION_MINOR) + "." +
                                 std::to_string(ENSEMBLE_CLIENT_VERSION_PATCH);
  CHECK(from_parts == ENSEMBLE_CLIENT_VERSION_STRING);
  CHECK(std::string(ensemble::version()) == ENSEMBLE_CLIENT_VERSION_STRING);
  CHECK(std::string(ENSEMBLE_MESON_PROJECT_VERSION) == ENSEMBLE_CLIENT_VERSION_STRING);
}

TEST_CASE("the version is plain MAJOR.MINOR.PATCH, as release tags client-cpp/vX.Y.Z need") {
  CHECK(std::regex_match(std::string(ENSEMBLE_CLIENT_VERSION_STRING),
                         std::regex("(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)")));
}

TEST_CASE("the macros are usable in the preprocessor, for feature checks") {
#if ENSEMBLE_CLIENT_VERSION_MAJOR > 0 || ENSEMBLE_CLIENT_VERSION_MINOR >= 1
  SUCCEED();
#else
  FAIL("version below 0.1.0");
#endif
}

static_assert(ensemble::version() == ENSEMBLE_CLIENT_VERSION_STRING,
              "ensemble::version() is usable at compile time");
