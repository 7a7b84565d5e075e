// A RegisterService server that answers `registered` and then only counts what it reads: the
// other end of workload 2 (outbound sends). The daemon double routes every action (a gate,
// a peer, an outcome, strictly one at a time per stream), which is what a double is for but
// makes it, not the client, the limit on how fast actions go out. Against this sink the
// library and the raw baseline are limited only by themselves and gRPC.
#pragma once

#include "measure.hpp"

#include <ensemble/proto/ensemble.grpc.pb.h>

#include <grpcpp/grpcpp.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace bench {

class SinkServer {
 public:
  // Listens on the Unix socket `unix_path` and on a free loopback TCP port; every action read
  // is reported to `arrivals` under the stream's service name.
  SinkServer(const std::string& unix_path, ArrivalTracker& arrivals) : service_(arrivals) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + unix_path, grpc::InsecureServerCredentials());
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &tcp_port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (!server_ || tcp_port_ == 0) throw std::runtime_error("sink server: could not listen");
  }
  ~SinkServer() { server_->Shutdown(); }

  SinkServer(const SinkServer&) = delete;
  SinkServer& operator=(const SinkServer&) = delete;

  std::string tcp_address() const { return "127.0.0.1:" + std::to_string(tcp_port_); }

 private:
  using Reactor = grpc::ServerBidiReactor<ensemble::api::ServiceClientMessage, ensemble::api::ServiceServerMessage>;

  // One stream: the manifest gets `registered`, every later message is one arrival.
  class Stream final : public Reactor {
   public:
    explicit Stream(ArrivalTracker& arrivals) : arrivals_(arrivals) { StartRead(&in_); }

    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      if (in_.has_manifest()) {
        name_ = in_.manifest().name();
        out_.mutable_registered()->set_address("sink");
        StartWrite(&out_);
      } else {
        arrivals_.on_action(name_);
      }
      StartRead(&in_);
    }
    void OnWriteDone(bool) override {}
    void OnDone() override { delete this; }

   private:
    ArrivalTracker& arrivals_;
    std::string name_;
    ensemble::api::ServiceClientMessage in_;
    ensemble::api::ServiceServerMessage out_;
  };

  class Service final : public ensemble::api::EnsembleService::CallbackService {
   public:
    explicit Service(ArrivalTracker& arrivals) : arrivals_(arrivals) {}
    Reactor* RegisterService(grpc::CallbackServerContext*) override { return new Stream(arrivals_); }

   private:
    ArrivalTracker& arrivals_;
  };

  Service service_;
  int tcp_port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace bench
