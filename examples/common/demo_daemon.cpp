// DemoDaemon (demo.hpp): the daemon double behind every example's --demo.
#include "demo.hpp"

#include <ensemble/testing/daemon_double.hpp>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>

namespace examples {

namespace {

std::filesystem::path make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "ensemble-demo-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("cannot make a temporary directory from " + pattern);
  }
  return pattern;
}

}  // namespace

DemoDaemon::DemoDaemon() : dir_(make_temp_dir()), admin_seed_(ensemble::Seed::generate()) {
  ensemble::testing::DaemonDoubleOptions options;
  options.unix_socket = (dir_ / "ensemble.sock").string();
  options.admin_key = ensemble::Signer(admin_seed_).public_key();
  daemon_ = std::make_unique<ensemble::testing::DaemonDouble>(options);
  say("daemon: double listening on ", daemon_->unix_target(), " (operator ",
      short_addr(daemon_->node_address()), ")");
}

DemoDaemon::~DemoDaemon() {
  daemon_.reset();  // ends every stream, then stops listening
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

ensemble::ClientOptions DemoDaemon::client_options() const {
  ensemble::ClientOptions options;
  options.socket_path = daemon_->unix_socket_path();
  options.auth_seed = admin_seed_;
  return options;
}

}  // namespace examples
