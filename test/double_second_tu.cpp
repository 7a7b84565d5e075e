// A second translation unit that includes the daemon double's headers, linked into
// test_double: a function defined in a header without `inline` is a link error here.
#include <ensemble/testing/daemon_double.hpp>

namespace double_test {

std::string second_tu_node_address(const ensemble::testing::DaemonDouble& daemon) {
  return daemon.node_address();
}

}  // namespace double_test
