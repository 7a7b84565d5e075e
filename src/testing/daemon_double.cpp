// ensemble::testing::DaemonDouble: the one translation unit that compiles the double
// (detail/). The public header declares the class only, so tests that use the double do not
// pay for its implementation at every compile.
#include <ensemble/testing/daemon_double.hpp>

#include "detail/api_service.hpp"
#include "detail/core.hpp"
#include "detail/files.hpp"
#include "detail/rendezvous.hpp"

#include <ensemble/detail/inputs.hpp>
#include <ensemble/errors.hpp>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>

namespace ensemble::testing {

struct DaemonDouble::Impl {
  DaemonDoubleOptions options;
  std::unique_ptr<detail::Core> core;
  std::unique_ptr<detail::FileTransfers> files;
  std::unique_ptr<detail::ApiService> api;
  std::unique_ptr<grpc::Server> server;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopped = false;
  std::thread opener;  // listens after options.socket_delay
  std::string unix_path;
  std::string tcp_host;
  int tcp_port = 0;

  void listen();  // builds and starts the server; throws Error when it cannot listen

  static detail::Envelope envelope(detail::lb::EnvelopeKind kind, std::string_view from) {
    detail::Envelope env;
    env.set_kind(kind);
    env.set_from_addr(std::string(from));
    return env;
  }

  bool deliver(std::string_view service, detail::Envelope env) {
    auto s = core->service(service);
    if (!s) return false;
    env.set_to_addr(s->address());
    bool ok = false;
    s->deliver(env, [&ok](detail::Outcome o) { ok = o.ok; });  // synchronous for these kinds
    return ok;
  }
};

DaemonDouble::DaemonDouble(DaemonDoubleOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  if (options.unix_socket.empty() && options.tcp_address.empty()) {
    options.tcp_address = "127.0.0.1:0";
  }
  if (options.socket_delay.count() > 0 && !options.tcp_address.empty()) {
    throw Error("DaemonDoubleOptions: socket_delay applies to a Unix socket only (tcp_address \"" +
                options.tcp_address + "\" is set)");
  }
  d.options = options;
  d.core = std::make_unique<detail::Core>(options);
  d.files = std::make_unique<detail::FileTransfers>(d.core.get());
  d.api = std::make_unique<detail::ApiService>(d.core.get(), d.files.get());
  d.core->start_rendezvous();
  if (!options.unix_socket.empty()) {
    d.unix_path = std::filesystem::absolute(options.unix_socket).string();
    if (detail::unix_socket_alive(d.unix_path)) {
      throw Error("something already listens on " + d.unix_path);
    }
    std::error_code ec;
    std::filesystem::remove(d.unix_path, ec);
  }
  if (options.socket_delay.count() <= 0) {
    d.listen();
    return;
  }
  // The daemon's start-up: no socket for a while (calls fail UNAVAILABLE meanwhile).
  d.opener = std::thread([&d] {
    std::unique_lock lock(d.stop_mu);
    if (ensemble::detail::wait_up_to(d.stop_cv, lock, d.options.socket_delay, [&d] { return d.stopped; })) return;
    try {
      d.listen();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ensemble daemon double: %s\n", e.what());
    }
  });
}

void DaemonDouble::Impl::listen() {
  grpc::ServerBuilder builder;
  if (!unix_path.empty()) {
    // Percent-encoded as the client dials it: gRPC reads server targets as URIs too.
    builder.AddListeningPort(ensemble::detail::unix_target(unix_path), grpc::InsecureServerCredentials());
  }
  if (!options.tcp_address.empty()) {
    const auto colon = options.tcp_address.rfind(':');
    tcp_host = colon == std::string::npos ? "127.0.0.1" : options.tcp_address.substr(0, colon);
    if (tcp_host.empty() || tcp_host == "0.0.0.0") tcp_host = "127.0.0.1";
    if (tcp_host == "[::]") tcp_host = "[::1]";
    builder.AddListeningPort(options.tcp_address, grpc::InsecureServerCredentials(), &tcp_port);
  }
  builder.RegisterService(api.get());
  // Messages are received up to a generous transport limit; the daemon's own limit
  // (max_receive_message_bytes) is applied per call with the daemon's words.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::max<std::size_t>(options.max_receive_message_bytes, 64u << 20)));
  // grpc-go's keepalive enforcement, which the daemon keeps (section 10): a client may ping
  // at most once per 5 minutes while nothing is sent to it, never without an open call; the
  // third early ping gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5 * 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  server = builder.BuildAndStart();
  if (!server || (!options.tcp_address.empty() && tcp_port == 0)) {
    server.reset();
    core->begin_stop();
    core->stop_peers();
    throw Error("daemon double could not listen on " +
                (options.unix_socket.empty() ? options.tcp_address
                                             : options.unix_socket + " / " + options.tcp_address));
  }
  core->start_bootstrap();
}

DaemonDouble::~DaemonDouble() { stop(); }

void DaemonDouble::stop() {
  Impl& d = *impl_;
  {
    std::lock_guard lock(d.stop_mu);
    d.stopped = true;
    d.stop_cv.notify_all();
  }
  if (d.opener.joinable()) d.opener.join();
  std::lock_guard lock(d.stop_mu);
  if (!d.server) {
    d.core->begin_stop();
    d.core->stop_peers();
    return;
  }
  d.core->begin_stop();
  d.files->stop();
  // Every call has been told to finish; the grace period only covers clients that do not
  // let a call complete (one that never reads, or a synchronous client whose thread is
  // elsewhere), which are then cancelled.
  d.server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  d.server.reset();
  d.core->stop_peers();
  if (!d.unix_path.empty()) {
    std::error_code ec;
    std::filesystem::remove(d.unix_path, ec);
  }
}

std::string DaemonDouble::unix_target() const {
  if (impl_->unix_path.empty()) return {};
  // "unix:" + the percent-encoded absolute path, spelled with the empty authority.
  return "unix://" + ensemble::detail::unix_target(impl_->unix_path).substr(5);
}
const std::string& DaemonDouble::unix_socket_path() const { return impl_->unix_path; }
std::string DaemonDouble::tcp_target() const {
  return impl_->tcp_port == 0 ? "" : impl_->tcp_host + ":" + std::to_string(impl_->tcp_port);
}
int DaemonDouble::tcp_port() const { return impl_->tcp_port; }
const std::string& DaemonDouble::node_address() const { return impl_->core->node().address; }
const std::string& DaemonDouble::node_onion() const { return impl_->core->node().onion; }
const std::array<std::uint8_t, 32>& DaemonDouble::node_public_key() const {
  return impl_->core->node().public_key;
}

std::string DaemonDouble::mint_token(std::string_view service_name) {
  return impl_->core->mint_token(service_name);
}

std::string DaemonDouble::service_address(std::string_view name) const {
  auto s = impl_->core->service(name);
  return s ? s->address() : std::string();
}
bool DaemonDouble::wait_registered(std::string_view name, std::chrono::milliseconds timeout) const {
  return impl_->core->wait_service(name, true, timeout);
}
bool DaemonDouble::wait_unregistered(std::string_view name,
                                     std::chrono::milliseconds timeout) const {
  return impl_->core->wait_service(name, false, timeout);
}

bool DaemonDouble::inject_chat(std::string_view service, std::string_view from_addr,
                               std::string_view text, std::int64_t ts_ms) {
  detail::Envelope env = Impl::envelope(detail::lb::ENVELOPE_CHAT, from_addr);
  env.set_text(std::string(text));
  env.set_ts_ms(ts_ms);
  return impl_->deliver(service, std::move(env));
}

bool DaemonDouble::inject_bytes(std::string_view service, std::string_view from_addr,
                                std::string_view payload) {
  detail::Envelope env = Impl::envelope(detail::lb::ENVELOPE_BYTES, from_addr);
  env.set_payload(std::string(payload));
  return impl_->deliver(service, std::move(env));
}

std::string DaemonDouble::inject_connection_request(std::string_view service,
                                                    std::string_view from_addr) {
  auto s = impl_->core->service(service);
  if (!s) return {};
  detail::Envelope env = Impl::envelope(detail::lb::ENVELOPE_DIAL, from_addr);
  env.set_to_addr(s->address());
  return s->deliver(env, [](detail::Outcome) {});
}

bool DaemonDouble::inject_introduction(std::string_view service,
                                       const api::ServicePeerIntroductionEvent& ev) {
  detail::Envelope env =
      Impl::envelope(detail::lb::ENVELOPE_INTRODUCTION, ev.from_service_addr());
  env.set_peer_addr(ev.peer_addr());
  env.set_session_id(ev.session_id());
  env.set_expires_at_ms(ev.expires_at_ms());
  env.set_role_hint(ev.role_hint());
  env.set_payload(ev.payload());
  return impl_->deliver(service, std::move(env));
}

bool DaemonDouble::inject_event(std::string_view service, std::string_view type,
                                std::string_view payload_bytes) {
  auto s = impl_->core->service(service);
  if (!s) return false;
  api::ServiceServerMessage msg;
  msg.mutable_event()->set_type(std::string(type));
  msg.mutable_event()->set_payload(std::string(payload_bytes));
  return s->inject_raw(std::move(msg));
}

std::uint64_t DaemonDouble::push_chat_burst(std::string_view service, std::string_view from_addr,
                                            std::size_t count, std::string_view text,
                                            std::chrono::milliseconds timeout) {
  auto s = impl_->core->service(service);
  if (!s) return 0;
  return s->burst(std::string(from_addr), count, std::string(text), timeout);
}

bool DaemonDouble::inject_node_chat(std::string_view from_addr, std::string_view text) {
  detail::Envelope env = Impl::envelope(detail::lb::ENVELOPE_CHAT, from_addr);
  env.set_to_addr(node_address());
  env.set_text(std::string(text));
  bool ok = false;
  impl_->core->deliver_inbound(env, [&ok](detail::Outcome o) { ok = o.ok; });
  return ok;
}

void DaemonDouble::publish_node_event(std::string_view type, std::string_view payload_json) {
  impl_->core->bus().publish(std::string(type), std::string(payload_json));
}

void DaemonDouble::inject_node_connection_request(std::string_view from_addr) {
  detail::Envelope env = Impl::envelope(detail::lb::ENVELOPE_DIAL, from_addr);
  env.set_to_addr(node_address());
  impl_->core->deliver_inbound(
      env, [core = impl_->core.get(), from = std::string(from_addr)](detail::Outcome o) {
        core->on_decision("node", from, o.ok ? "accepted" : "rejected: " + o.reason);
      });
}

std::vector<api::ServiceClientMessage> DaemonDouble::actions(std::string_view service) const {
  return impl_->core->actions(service);
}
std::uint64_t DaemonDouble::action_count(std::string_view service) const {
  return impl_->core->action_count(service);
}
bool DaemonDouble::wait_for_actions(std::string_view service, std::size_t count,
                                    std::chrono::milliseconds timeout) const {
  return impl_->core->wait_for_actions(service, count, timeout);
}
void DaemonDouble::set_action_observer(
    std::function<void(std::string_view service, const api::ServiceClientMessage&)> observer) {
  impl_->core->set_action_observer(std::move(observer));
}

std::uint64_t DaemonDouble::dropped_events(std::string_view service) const {
  return impl_->core->dropped_events(service);
}
std::uint64_t DaemonDouble::dropped_node_events() const {
  return impl_->core->dropped_node_events();
}

std::optional<std::string> DaemonDouble::decision(std::string_view request_id) const {
  return impl_->core->decision(request_id);
}
std::optional<std::string> DaemonDouble::wait_decision(std::string_view request_id,
                                                       std::chrono::milliseconds timeout) const {
  return impl_->core->wait_decision(request_id, timeout);
}

std::vector<PeerMessage> DaemonDouble::peer_inbox(std::string_view address) const {
  return impl_->core->peer_inbox(address);
}
std::uint64_t DaemonDouble::peer_inbox_count(std::string_view address) const {
  return impl_->core->peer_inbox_count(address);
}
bool DaemonDouble::wait_peer_inbox(std::string_view address, std::size_t count,
                                   std::chrono::milliseconds timeout) const {
  return impl_->core->wait_peer_inbox(address, count, timeout);
}
void DaemonDouble::set_peer_unreachable(std::string_view address, bool unreachable) {
  impl_->core->set_unreachable(std::string(address), unreachable);
}

}  // namespace ensemble::testing
