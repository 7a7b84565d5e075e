// Discovery and transport between doubles that share a rendezvous directory (the real
// daemon's --signaling=loopback, section 9), in one process or several.
//
// Layout of the directory:
//   <node-address>.sock        this daemon's peer socket (internal LoopbackPeer gRPC,
//                              proto/ensemble_double.proto; not the public API)
//   <service-address>.sock     a symlink to the hosting daemon's <node-address>.sock,
//                              made when the service first registers on that daemon
//   <node-address>.json        {"address","onion","pid"}: what AddNode and GetDebugInfo list
// Looking an address up is one lstat; reaching it is one dial of that path. Nothing is
// configured: every daemon that shares the directory sees every other.
//
// A link stays while its daemon holds the key, registered or not, so a service that is
// offline is "not registered" to its peers rather than silently becoming a synthetic peer.
// A daemon that stops removes its links when its keys die with it (no data dir); with a
// data dir they stay, so its addresses read "peer unreachable" until it comes back with the
// same keys and the links work again.
#pragma once

#include <ensemble/detail/inputs.hpp>
#include <ensemble/errors.hpp>

#include "ensemble_double.grpc.pb.h"
#include "host.hpp"
#include "util.hpp"

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace ensemble::testing::detail {

// What the rendezvous needs from its daemon.
class PeerHost {
 public:
  virtual ~PeerHost() = default;
  // An envelope from another daemon for one of this daemon's identities.
  virtual void deliver_inbound(Envelope env, Completion done) = 0;
  virtual lb::ChunkReply put_chunk(const lb::FileChunk& chunk) = 0;
};

// True when something accepts connections on the Unix socket at `path`.
inline bool unix_socket_alive(const std::filesystem::path& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.size() >= sizeof sa.sun_path) return false;
  std::copy(p.begin(), p.end(), sa.sun_path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return ok;
}

struct KnownDaemon {
  std::string address;
  std::string onion;
  std::int64_t last_seen_ms = 0;
};

class Rendezvous {
 public:
  Rendezvous(std::filesystem::path dir, std::string node_address, std::string node_onion,
             PeerHost* host)
      : dir_(std::move(dir)), node_address_(std::move(node_address)), host_(host),
        service_(this) {
    std::error_code ec;
    if (!std::filesystem::exists(dir_)) {
      std::filesystem::create_directories(dir_, ec);
      if (ec) throw Error("cannot create loopback dir " + dir_.string() + ": " + ec.message());
      ::chmod(dir_.c_str(), 0700);
    }
    dir_ = std::filesystem::absolute(dir_);
    socket_ = dir_ / (node_address_ + ".sock");
    if (socket_.string().size() >= sizeof(sockaddr_un{}.sun_path)) {
      throw Error("loopback dir " + dir_.string() + " is too long for a Unix socket path (" +
                  socket_.string() + " exceeds " +
                  std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes)");
    }
    if (unix_socket_alive(socket_)) {
      throw Error("another daemon with node address " + node_address_ + " is already live in " +
                  dir_.string() + " (two daemons share one data dir?)");
    }
    std::filesystem::remove(socket_, ec);  // stale, from a daemon that died

    grpc::ServerBuilder builder;
    builder.AddListeningPort(ensemble::detail::unix_target(socket_.string()),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    builder.SetMaxReceiveMessageSize(64 << 20);
    server_ = builder.BuildAndStart();
    if (!server_) throw Error("cannot listen on " + socket_.string());

    nlohmann::json info{{"address", node_address_}, {"onion", node_onion}, {"pid", ::getpid()}};
    const auto info_path = dir_ / (node_address_ + ".json");
    {
      std::ofstream out(info_path.string() + ".tmp", std::ios::trunc);
      out << info.dump() << '\n';
    }
    std::filesystem::rename(info_path.string() + ".tmp", info_path, ec);
  }

  Rendezvous(const Rendezvous&) = delete;
  Rendezvous& operator=(const Rendezvous&) = delete;
  ~Rendezvous() { stop(false); }

  const std::filesystem::path& dir() const { return dir_; }

  // Makes `address` reachable through this daemon (atomic replace of any stale link).
  void publish(const std::string& address) {
    const auto link = dir_ / (address + ".sock");
    const auto tmp = dir_ / ("." + address + ".sock.tmp");
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    std::filesystem::create_symlink(socket_.filename(), tmp, ec);
    if (!ec) std::filesystem::rename(tmp, link, ec);
  }

  // The socket another daemon hosts `address` on, if the directory lists one.
  std::optional<std::filesystem::path> lookup(const std::string& address) const {
    if (address.empty() || address.find('/') != std::string::npos || address[0] == '.') {
      return std::nullopt;
    }
    const auto link = dir_ / (address + ".sock");
    struct stat st {};
    if (::lstat(link.c_str(), &st) != 0) return std::nullopt;
    std::filesystem::path target = link;
    if (S_ISLNK(st.st_mode)) {
      std::error_code ec;
      const auto rel = std::filesystem::read_symlink(link, ec);
      if (ec) return std::nullopt;
      target = rel.is_absolute() ? rel : dir_ / rel;
    }
    if (target == socket_) return std::nullopt;  // ours: a stale entry, not another daemon
    return target;
  }

  // Every other daemon that has announced itself in the directory and is alive.
  std::vector<KnownDaemon> daemons() const {
    std::vector<KnownDaemon> out;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      if (entry.path().extension() != ".json") continue;
      const std::string stem = entry.path().stem().string();
      if (stem == node_address_) continue;
      const auto sock = dir_ / (stem + ".sock");
      if (!unix_socket_alive(sock)) continue;
      const auto j = read_json_file(entry.path());
      if (!j || !j->is_object()) continue;
      KnownDaemon d;
      d.address = json_string_or(*j, "address", stem);
      d.onion = json_string_or(*j, "onion", "");
      std::error_code mec;
      const auto mtime = std::filesystem::last_write_time(entry.path(), mec);
      if (!mec) {
        d.last_seen_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::file_clock::to_sys(mtime).time_since_epoch())
                             .count();
      }
      out.push_back(std::move(d));
    }
    return out;
  }

  // Hands `env` to the daemon on `socket`; `done` gets its answer, or "peer unreachable".
  void send(const std::filesystem::path& socket, const Envelope& env,
            std::chrono::milliseconds timeout, Completion done) {
    auto call = std::make_shared<DeliverCall>();
    call->request = env;
    call->done = std::move(done);
    call->ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    auto stub = stub_for(socket);
    if (!stub || !track(&call->ctx)) {
      call->done(Outcome::refused("peer unreachable: daemon shutting down"));
      return;
    }
    stub->async()->Deliver(&call->ctx, &call->request, &call->reply,
                           [this, call, socket](grpc::Status status) {
                             if (!status.ok()) forget(socket);
                             Outcome outcome =
                                 status.ok()
                                     ? Outcome{call->reply.accepted(), call->reply.reason()}
                                     : Outcome::refused("peer unreachable: " +
                                                        status.error_message());
                             call->done(std::move(outcome));
                             untrack(&call->ctx);
                           });
  }

  void send_chunk(const std::filesystem::path& socket, lb::FileChunk chunk,
                  std::function<void(bool ok, std::string error)> done) {
    auto call = std::make_shared<ChunkCall>();
    call->request = std::move(chunk);
    call->done = std::move(done);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto stub = stub_for(socket);
    if (!stub || !track(&call->ctx)) {
      call->done(false, "daemon shutting down");
      return;
    }
    stub->async()->PutChunk(&call->ctx, &call->request, &call->reply,
                            [this, call](grpc::Status status) {
                              if (status.ok()) {
                                call->done(call->reply.ok(), call->reply.error());
                              } else {
                                call->done(false, "peer unreachable: " + status.error_message());
                              }
                              untrack(&call->ctx);
                            });
  }

  // Cancels outbound calls in flight and waits (bounded) until their callbacks have run.
  void cancel_outbound() {
    std::unique_lock lock(mu_);
    closing_ = true;
    for (auto* ctx : in_flight_) ctx->TryCancel();
    cv_.wait_for(lock, std::chrono::seconds(5), [&] { return in_flight_.empty(); });
  }

  // Stops serving and removes the socket and the announcement; the identity links too
  // unless `keep_links` (see the top of this file). Idempotent.
  void stop(bool keep_links) {
    if (stopped_) return;
    stopped_ = true;
    cancel_outbound();
    std::error_code ec;
    std::vector<std::filesystem::path> ours;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      std::error_code lec;
      if (!keep_links && entry.is_symlink(lec) &&
          std::filesystem::read_symlink(entry.path(), lec) == socket_.filename()) {
        ours.push_back(entry.path());
      }
    }
    for (const auto& p : ours) std::filesystem::remove(p, ec);
    std::filesystem::remove(dir_ / (node_address_ + ".json"), ec);
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    std::filesystem::remove(socket_, ec);
    std::lock_guard lock(mu_);
    stubs_.clear();
  }

 private:
  struct DeliverCall {
    grpc::ClientContext ctx;
    Envelope request;
    lb::DeliverReply reply;
    Completion done;
  };
  struct ChunkCall {
    grpc::ClientContext ctx;
    lb::FileChunk request;
    lb::ChunkReply reply;
    std::function<void(bool, std::string)> done;
  };

  // The server side: envelopes from other daemons.
  class PeerService final : public lb::LoopbackPeer::CallbackService {
   public:
    explicit PeerService(Rendezvous* owner) : owner_(owner) {}

    grpc::ServerUnaryReactor* Deliver(grpc::CallbackServerContext* ctx, const Envelope* request,
                                      lb::DeliverReply* reply) override {
      auto* reactor = ctx->DefaultReactor();
      owner_->host_->deliver_inbound(*request, [reactor, reply](Outcome o) {
        reply->set_accepted(o.ok);
        reply->set_reason(o.reason);
        reactor->Finish(grpc::Status::OK);
      });
      return reactor;
    }

    grpc::ServerUnaryReactor* PutChunk(grpc::CallbackServerContext* ctx,
                                       const lb::FileChunk* request,
                                       lb::ChunkReply* reply) override {
      *reply = owner_->host_->put_chunk(*request);
      auto* reactor = ctx->DefaultReactor();
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }

   private:
    Rendezvous* owner_;
  };

  std::shared_ptr<lb::LoopbackPeer::Stub> stub_for(const std::filesystem::path& socket) {
    std::lock_guard lock(mu_);
    if (closing_) return nullptr;
    auto& stub = stubs_[socket.string()];
    if (!stub) {
      grpc::ChannelArguments args;
      // A peer that restarts comes back at the same path: retry it promptly.
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
      args.SetMaxReceiveMessageSize(64 << 20);
      stub = lb::LoopbackPeer::NewStub(grpc::CreateCustomChannel(
          ensemble::detail::unix_target(socket.string()), grpc::InsecureChannelCredentials(), args));
    }
    return stub;
  }

  void forget(const std::filesystem::path& socket) {
    std::lock_guard lock(mu_);
    stubs_.erase(socket.string());
  }

  bool track(grpc::ClientContext* ctx) {
    std::lock_guard lock(mu_);
    if (closing_) return false;
    in_flight_.insert(ctx);
    return true;
  }

  void untrack(grpc::ClientContext* ctx) {
    std::lock_guard lock(mu_);
    in_flight_.erase(ctx);
    cv_.notify_all();
  }

  std::filesystem::path dir_;
  std::string node_address_;
  PeerHost* host_;
  std::filesystem::path socket_;
  PeerService service_;
  std::unique_ptr<grpc::Server> server_;
  bool stopped_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  bool closing_ = false;
  std::map<std::string, std::shared_ptr<lb::LoopbackPeer::Stub>> stubs_;
  std::set<grpc::ClientContext*> in_flight_;
};

}  // namespace ensemble::testing::detail
