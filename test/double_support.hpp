// Helpers for the daemon double's tests: channels (plain or signed, Unix or TCP), a
// RegisterService stream driven with the generated synchronous stub, and message builders.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/proto/ensemble.grpc.pb.h>
#include <ensemble/testing/daemon_double.hpp>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <unistd.h>

namespace double_test {

namespace api = ensemble::api;
using namespace std::chrono_literals;

// A fresh directory under /tmp (short, so socket paths fit), removed at scope end.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string templ = "/tmp/edt-XXXXXX";
    path = ::mkdtemp(templ.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str(const std::string& leaf) const { return (path / leaf).string(); }
};

inline std::shared_ptr<grpc::Channel> plain_channel(const std::string& target) {
  return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
}

// Signed with `seed` over local credentials of the right kind (section 4).
inline std::shared_ptr<grpc::Channel> signed_channel(const std::string& target,
                                                     const ensemble::Seed& seed) {
  const bool uds = target.rfind("unix:", 0) == 0;
  auto local = grpc::experimental::LocalCredentials(uds ? UDS : LOCAL_TCP);
  auto call = ensemble::signing_call_credentials(std::make_shared<const ensemble::Signer>(seed));
  return grpc::CreateChannel(target, grpc::CompositeChannelCredentials(local, call));
}

inline std::unique_ptr<api::EnsembleService::Stub> stub(const std::shared_ptr<grpc::Channel>& ch) {
  return api::EnsembleService::NewStub(ch);
}

inline api::ServiceClientMessage manifest(const std::string& name,
                                          api::ACL acl = api::ACL_PUBLIC) {
  api::ServiceClientMessage m;
  m.mutable_manifest()->set_name(name);
  m.mutable_manifest()->set_acl(acl);
  return m;
}

inline api::ServiceClientMessage send_message(const std::string& to, const std::string& text) {
  api::ServiceClientMessage m;
  m.mutable_send_message()->set_to_addr(to);
  m.mutable_send_message()->set_text(text);
  return m;
}

// One RegisterService call on the synchronous stub. Every read has the context's deadline,
// so a broken double fails a test instead of hanging it. The deadline counts from the
// construction, across the whole test, so it is generous: under TSan on a loaded machine a
// test of a dozen round trips took over 20 s.
class Stream {
 public:
  Stream(api::EnsembleService::Stub& stub, std::chrono::milliseconds deadline = 60s,
         const std::string& token = {}) {
    ctx_.set_deadline(std::chrono::system_clock::now() + deadline);
    if (!token.empty()) ctx_.AddMetadata("x-service-token", token);
    rw_ = stub.RegisterService(&ctx_);
  }
  ~Stream() {
    if (!finished_) {
      ctx_.TryCancel();
      api::ServiceServerMessage drain;
      while (rw_->Read(&drain)) {
      }
      rw_->Finish();
    }
  }

  bool write(const api::ServiceClientMessage& m) { return rw_->Write(m); }
  std::optional<api::ServiceServerMessage> read() {
    api::ServiceServerMessage m;
    if (!rw_->Read(&m)) return std::nullopt;
    return m;
  }
  // Half-close, drain, and return the final status.
  grpc::Status finish(std::vector<api::ServiceServerMessage>* rest = nullptr) {
    rw_->WritesDone();
    api::ServiceServerMessage m;
    while (rw_->Read(&m)) {
      if (rest) rest->push_back(m);
    }
    finished_ = true;
    return rw_->Finish();
  }
  // Reads until the stream ends and returns the final status (no half-close).
  grpc::Status end(std::vector<api::ServiceServerMessage>* rest = nullptr) {
    api::ServiceServerMessage m;
    while (rw_->Read(&m)) {
      if (rest) rest->push_back(m);
    }
    finished_ = true;
    return rw_->Finish();
  }
  void cancel() { ctx_.TryCancel(); }
  grpc::ClientContext& context() { return ctx_; }

  // Sends the manifest and expects `registered`; returns the address ("" on failure).
  std::string register_as(const api::ServiceClientMessage& manifest_msg) {
    if (!write(manifest_msg)) return {};
    auto first = read();
    if (!first || !first->has_registered()) return {};
    onion_ = first->registered().onion();
    return first->registered().address();
  }
  const std::string& onion() const { return onion_; }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<api::ServiceClientMessage, api::ServiceServerMessage>>
      rw_;
  bool finished_ = false;
  std::string onion_;
};

template <typename Message>
Message decode(const api::ServiceServerMessage& m) {
  Message out;
  out.ParseFromString(m.event().payload());
  return out;
}

// A valid address nobody hosts: a synthetic peer.
inline std::string synthetic_address() {
  const auto seed = ensemble::Seed::generate();
  const ensemble::Signer signer(seed);
  return ensemble::address_from_public_key(signer.public_key());
}

}  // namespace double_test
