// Compile-cost baseline: an echo bot written straight on gRPC's callback API and the
// generated stubs, as a user without this library would write it. Never run: only compiled
// by bench/compile_cost.sh, next to bot.cpp (the same bot with the library).
#include <ensemble/proto/ensemble.grpc.pb.h>

#include <grpcpp/grpcpp.h>

#include <deque>
#include <mutex>

namespace api = ensemble::api;

class EchoBot : public grpc::ClientBidiReactor<api::ServiceClientMessage, api::ServiceServerMessage> {
 public:
  explicit EchoBot(api::EnsembleService::Stub& stub) {
    stub.async()->RegisterService(&ctx_, this);
    api::ServiceClientMessage hello;
    hello.mutable_manifest()->set_name("echo");
    write(std::move(hello));
    StartRead(&in_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (in_.has_event() && in_.event().type() == "chat_message") {
      api::ServiceChatMessageEvent chat;
      chat.ParseFromString(in_.event().payload());
      api::ServiceClientMessage reply;
      reply.mutable_send_message()->set_to_addr(chat.from_addr());
      reply.mutable_send_message()->set_text("echo: " + chat.text());
      write(std::move(reply));
    }
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    queue_.pop_front();
    if (ok && !queue_.empty()) StartWrite(&queue_.front());
  }
  void OnDone(const grpc::Status&) override {}

 private:
  void write(api::ServiceClientMessage m) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(m));
    if (queue_.size() == 1) StartWrite(&queue_.front());
  }
  grpc::ClientContext ctx_;
  api::ServiceServerMessage in_;
  std::mutex mu_;
  std::deque<api::ServiceClientMessage> queue_;
};

int main() {
  auto channel = grpc::CreateChannel("unix:/run/ensemble/api.sock", grpc::InsecureChannelCredentials());
  auto stub = api::EnsembleService::NewStub(channel);
  EchoBot bot(*stub);
}
