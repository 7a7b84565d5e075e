// The parts of IdentityServer (identity_server.hpp) that build the gRPC server and the
// generated CallbackService: compiled once for test_ensemble.
#include "identity_server.hpp"

namespace test_support {

IdentityServer::IdentityServer(Transport transport, const std::array<std::uint8_t, 32>& admin_key,
                               const std::filesystem::path& socket_dir, const std::string& socket_name)
    : service_(admin_key), transport_(transport) {
  grpc::ServerBuilder builder;
  int port = 0;
  if (transport == Transport::unix_socket) {
    target_ = ensemble::detail::unix_target((socket_dir / socket_name).string());
    builder.AddListeningPort(target_, grpc::experimental::LocalServerCredentials(UDS));
  } else {
    builder.AddListeningPort("127.0.0.1:0",
                             grpc::experimental::LocalServerCredentials(LOCAL_TCP), &port);
  }
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  if (!server_) throw std::runtime_error("test server failed to start");
  if (transport == Transport::loopback_tcp) {
    if (port == 0) throw std::runtime_error("test server got no TCP port");
    target_ = "127.0.0.1:" + std::to_string(port);
    port_ = port;
  }
}

IdentityServer::~IdentityServer() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

IdentityServer::Service::Service(const std::array<std::uint8_t, 32>& key) : admin_key(key) {}
IdentityServer::Service::~Service() = default;

}  // namespace test_support
