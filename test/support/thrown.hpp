// The message of an exception a call throws, for CHECK_THAT on what the error says.
#pragma once

#include <catch2/catch.hpp>

#include <string>

namespace test_support {

// The what() of the E that `f` throws; any other exception escapes and fails the test, and
// throwing nothing fails it too.
template <class E, class F>
std::string thrown(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("nothing was thrown");
  return {};
}

}  // namespace test_support
