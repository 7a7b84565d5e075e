// One version, set in meson.build's project(): the generated macros, the string and
// ensemble::version() must all say the same thing as meson. ENSEMBLE_MESON_PROJECT_VERSION
// comes from test/meson.build (meson.project_version()), so a stale or hand-edited header
// fails here.
#include <catch2/catch.hpp>

#include <ensemble/version.hpp>

#include <algorithm>
#include <cctype>
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
  // Three dot-separated decimal numbers without leading zeros, and nothing else.
  const std::string version = ENSEMBLE_CLIENT_VERSION_STRING;
  int parts = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = version.find('.', start);
    const std::string part = version.substr(start, dot == std::string::npos ? std::string::npos
                                                                             : dot - start);
    INFO("part " << parts << ": '" << part << "'");
    CHECK_FALSE(part.empty());
    CHECK(std::all_of(part.begin(), part.end(), [](unsigned char c) { return std::isdigit(c); }));
    CHECK((part.size() == 1 || part.front() != '0'));
    ++parts;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  CHECK(parts == 3);
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
