// File transfer between nodes: SendFile (a ServerWriteReactor streaming TransferProgress),
// AcceptFile / RejectFile on the receiving node, and the receiving side's chunk sink.
//
// The sender reads the real file and offers it to the peer (a file_offer node event there).
// Once the peer's operator accepts, the bytes are copied chunk by chunk over the rendezvous
// socket into the path the receiver chose; the sender's stream then carries one message,
// complete = true, as the daemon's does. A synthetic peer accepts at once and
// only counts the bytes (peer_inbox records a "file").
#pragma once

#include <ensemble/address.hpp>

#include "core.hpp"

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cerrno>
#include <deque>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ensemble::testing::detail {

inline constexpr std::size_t kFileChunkBytes = 256 * 1024;

inline std::string file_progress_json(const std::string& id, const std::string& filename,
                                      std::uint64_t total, std::uint64_t done, bool complete,
                                      const std::string& error) {
  const double percent = total == 0 ? 100.0 : 100.0 * static_cast<double>(done) / total;
  return nlohmann::json{{"TransferID", id},   {"Filename", filename}, {"TotalBytes", total},
                        {"SentBytes", done},  {"Percent", percent},   {"Complete", complete},
                        {"Error", error}}
      .dump();
}

// One SendFile call.
// Writes raw bytes: SendFile is registered raw, so that its request meets the daemon's
// receive checks before it is parsed (api_service.hpp).
class FileSender final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  FileSender(Core* core, api::SendFileRequest request)
      : core_(core), request_(std::move(request)) {}

  static FileSender* refused(grpc::Status status) {
    auto s = std::make_shared<FileSender>(nullptr, api::SendFileRequest{});
    std::lock_guard lock(s->mu_);
    s->self_ = s;
    s->fail_locked(std::move(status));
    return s.get();
  }

  static FileSender* start(const std::shared_ptr<FileSender>& self) {
    {
      std::lock_guard lock(self->mu_);
      self->self_ = self;
      self->weak_ = self;
    }
    self->begin();
    return self.get();
  }

  void end(grpc::Status status) {
    std::lock_guard lock(mu_);
    stopped_ = true;
    fail_locked(std::move(status));
  }

 private:
  void begin() {
    const std::string& to = request_.address();
    auto fail = [&](const std::string& cause) {
      std::lock_guard lock(mu_);
      fail_locked(grpc::Status(grpc::StatusCode::INTERNAL, "sending file: " + cause));
    };
    if (!is_valid_address(to)) return fail("invalid address " + ensemble::detail::go_quote(to));
    if (to == core_->node().address) return fail("cannot send a file to yourself");
    const std::filesystem::path path = request_.file_path();
    file_.open(path, std::ios::binary);
    std::error_code ec;
    const bool regular = std::filesystem::is_regular_file(path, ec);
    if (!file_ || !regular) {
      return fail("open " + path.string() + ": " +
                  (regular || !std::filesystem::exists(path, ec) ? std::strerror(ENOENT)
                                                                 : "not a regular file"));
    }
    total_ = std::filesystem::file_size(path, ec);
    filename_ = path.filename().string();
    id_ = random_hex(16);
    if (auto* rdv = core_->rendezvous()) socket_ = rdv->lookup(to);
    

    Envelope env;
    env.set_kind(lb::ENVELOPE_FILE_OFFER);
    env.set_from_addr(core_->node().address);
    env.set_to_addr(to);
    env.set_transfer_id(id_);
    env.set_filename(filename_);
    env.set_size(total_);
    env.set_ts_ms(unix_ms(core_->now()));
    core_->route(env, [w = weak_](Outcome o) {
      auto self = w.lock();
      if (!self) return;
      if (!o.ok) {
        std::lock_guard lock(self->mu_);
        self->fail_locked(grpc::Status(grpc::StatusCode::INTERNAL, "sending file: " + o.reason));
        return;
      }
      self->next_chunk();
    });
  }

  // Reads and ships the next chunk; for a synthetic peer, runs through the whole file.
  void next_chunk() {
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (stopped_) return;
      }
      lb::FileChunk chunk;
      chunk.set_transfer_id(id_);
      chunk.set_offset(sent_);
      std::string data(kFileChunkBytes, '\0');
      file_.read(data.data(), static_cast<std::streamsize>(data.size()));
      data.resize(static_cast<std::size_t>(file_.gcount()));
      if (file_.bad()) {
        std::lock_guard lock(mu_);
        return fail_locked(grpc::Status(grpc::StatusCode::INTERNAL, "sending file: read failed"));
      }
      const std::uint64_t n = data.size();
      const bool last = sent_ + n >= total_ || n == 0;
      chunk.set_data(std::move(data));
      chunk.set_last(last);
      if (!socket_) {  // a synthetic peer swallows it
        sent_ += n;
        publish_progress(last);
        if (last) {
          core_->record_synthetic_file(request_.address(), core_->node().address, filename_, sent_);
          return;
        }
        continue;
      }
      core_->rendezvous()->send_chunk(*socket_, std::move(chunk),
                                      [w = weak_, n, last](bool ok, std::string error) {
                                        auto self = w.lock();
                                        if (!self) return;
                                        if (!ok) {
                                          std::lock_guard lock(self->mu_);
                                          return self->fail_locked(grpc::Status(
                                              grpc::StatusCode::INTERNAL, "sending file: " + error));
                                        }
                                        self->sent_ += n;
                                        self->publish_progress(last);
                                        if (!last) self->next_chunk();
                                      });
      return;
    }
  }

  // The daemon streams nothing while a transfer runs: success is exactly one
  // TransferProgress {transfer_id, complete: true}, with no name, sizes or percent
  // (section 10); failure is the call's status. (Headers go out with that one message.)
  void publish_progress(bool complete) {
    if (!complete) return;
    api::TransferProgress p;
    p.set_transfer_id(id_);
    p.set_complete(true);
    std::lock_guard lock(mu_);
    if (stopped_) return;
    queue_.push_back(std::move(p));
    finish_wanted_ = true;
    status_ = grpc::Status::OK;
    pump_locked();
  }

  void fail_locked(grpc::Status status) {
    stopped_ = true;
    queue_.clear();
    if (!finish_wanted_) {
      finish_wanted_ = true;
      status_ = std::move(status);
    }
    pump_locked();
  }

  void pump_locked() {
    if (finish_called_ || writing_) return;
    if (!queue_.empty()) {
      out_.Clear();  // the previous write is done with it
      bool own_buffer = false;
      grpc::SerializationTraits<api::TransferProgress>::Serialize(queue_.front(), &out_, &own_buffer);
      queue_.pop_front();
      writing_ = true;
      StartWrite(&out_);
      return;
    }
    if (finish_wanted_) {
      finish_called_ = true;
      Finish(status_);
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) fail_locked(grpc::Status::CANCELLED);
    pump_locked();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    fail_locked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    std::shared_ptr<FileSender> keep;
    std::lock_guard lock(mu_);
    stopped_ = true;
    keep = std::move(self_);
  }

  Core* core_;
  api::SendFileRequest request_;
  std::ifstream file_;
  std::string id_;
  std::string filename_;
  std::uint64_t total_ = 0;
  std::atomic<std::uint64_t> sent_{0};
  std::optional<std::filesystem::path> socket_;

  std::mutex mu_;
  std::deque<api::TransferProgress> queue_;
  grpc::ByteBuffer out_;  // the write in flight
  bool writing_ = false;
  bool stopped_ = false;
  bool finish_wanted_ = false;
  bool finish_called_ = false;
  grpc::Status status_;
  std::shared_ptr<FileSender> self_;
  std::weak_ptr<FileSender> weak_;
};

// The node's file transfers: senders in flight, offers waiting for AcceptFile / RejectFile,
// and accepted transfers being written.
class FileTransfers {
 public:
  explicit FileTransfers(Core* core) : core_(core) {
    core_->set_node_file_offer_handler(
        [this](Envelope env, Completion done) { offer(std::move(env), std::move(done)); });
    core_->set_chunk_sink([this](const lb::FileChunk& c) { return put_chunk(c); });
  }

  FileTransfers(const FileTransfers&) = delete;
  FileTransfers& operator=(const FileTransfers&) = delete;

  grpc::ServerWriteReactor<grpc::ByteBuffer>* send(const api::SendFileRequest& request) {
    auto sender = std::make_shared<FileSender>(core_, request);
    {
      std::lock_guard lock(mu_);
      senders_.push_back(sender);
      std::erase_if(senders_, [](const auto& w) { return w.expired(); });
    }
    return FileSender::start(sender);
  }

  grpc::Status accept(const std::string& id, const std::string& save_path) {
    Offer offer;
    {
      std::lock_guard lock(mu_);
      auto it = offers_.find(id);
      if (it == offers_.end()) return not_found("accepting file", id);
      offer = std::move(it->second);
      offers_.erase(it);
    }
    core_->timer().cancel(offer.timer);
    const std::filesystem::path path = destination(save_path, offer.filename);
    Incoming in;
    in.path = path;
    in.filename = offer.filename;
    in.total = offer.size;
    in.out = std::make_unique<std::ofstream>(path, std::ios::binary | std::ios::trunc);
    if (!*in.out) {
      const std::string why = "open " + path.string() + ": " + std::strerror(errno);
      offer.done(Outcome::refused("receiver could not save the file"));
      return grpc::Status(grpc::StatusCode::INTERNAL, "accepting file: " + why);
    }
    {
      std::lock_guard lock(mu_);
      incoming_[id] = std::move(in);
    }
    offer.done(Outcome::accepted());
    return grpc::Status::OK;
  }

  grpc::Status reject(const std::string& id) {
    Offer offer;
    {
      std::lock_guard lock(mu_);
      auto it = offers_.find(id);
      if (it == offers_.end()) return not_found("rejecting file", id);
      offer = std::move(it->second);
      offers_.erase(it);
    }
    core_->timer().cancel(offer.timer);
    offer.done(Outcome::refused("transfer rejected by peer"));
    return grpc::Status::OK;
  }

  // Shutdown: every waiting offer is refused and every sender ended.
  void stop() {
    std::map<std::string, Offer> offers;
    std::vector<std::shared_ptr<FileSender>> senders;
    {
      std::lock_guard lock(mu_);
      offers.swap(offers_);
      for (auto& w : senders_) {
        if (auto s = w.lock()) senders.push_back(std::move(s));
      }
      senders_.clear();
      incoming_.clear();
    }
    for (auto& [_, o] : offers) o.done(Outcome::refused("daemon shutting down"));
    for (auto& s : senders) s->end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "daemon shutting down"));
  }

 private:
  struct Offer {
    std::string from;
    std::string filename;
    std::uint64_t size = 0;
    Completion done;
    Timer::Id timer = 0;
  };
  struct Incoming {
    std::filesystem::path path;
    std::string filename;
    std::uint64_t total = 0;
    std::uint64_t received = 0;
    std::unique_ptr<std::ofstream> out;
  };

  // The daemon's words for an unknown transfer (section 10), e.g. "accepting file: no
  // pending offer with ID abc".
  static grpc::Status not_found(const char* doing, const std::string& id) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        std::string(doing) + ": no pending offer with ID " + id);
  }

  std::filesystem::path destination(const std::string& save_path, const std::string& filename) {
    std::error_code ec;
    if (!save_path.empty() && !std::filesystem::is_directory(save_path, ec)) return save_path;
    std::filesystem::path dir = save_path;
    if (dir.empty()) {
      dir = core_->options().data_dir.empty()
                ? std::filesystem::temp_directory_path() / "ensemble-double-received"
                : core_->options().data_dir / "received";
      std::filesystem::create_directories(dir, ec);
    }
    return dir / filename;
  }

  void offer(Envelope env, Completion done) {
    // Only the last path component: a peer must not choose where the file lands.
    std::string filename = std::filesystem::path(env.filename()).filename().string();
    if (filename.empty() || filename == "." || filename == "..") filename = "received.bin";
    const std::string id = env.transfer_id();
    {
      std::lock_guard lock(mu_);
      if (id.empty() || offers_.count(id) || incoming_.count(id)) {
        done(Outcome::refused("duplicate transfer id"));
        return;
      }
      Offer& o = offers_[id];
      o.from = env.from_addr();
      o.filename = filename;
      o.size = env.size();
      o.done = std::move(done);
      o.timer = core_->timer().limit(core_->options().request_timeout, [this, id] {
        Offer expired;
        {
          std::lock_guard lock(mu_);
          auto it = offers_.find(id);
          if (it == offers_.end()) return;
          expired = std::move(it->second);
          offers_.erase(it);
        }
        expired.done(Outcome::refused("file offer timed out"));
      });
    }
    core_->bus().publish("file_offer", nlohmann::json{{"TransferID", id},
                                                      {"From", env.from_addr()},
                                                      {"Filename", filename},
                                                      {"Size", env.size()}}
                                           .dump());
  }

  lb::ChunkReply put_chunk(const lb::FileChunk& chunk) {
    lb::ChunkReply reply;
    std::string progress;
    {
      std::lock_guard lock(mu_);
      auto it = incoming_.find(chunk.transfer_id());
      if (it == incoming_.end()) {
        reply.set_error("no accepted transfer " + chunk.transfer_id());
        return reply;
      }
      Incoming& in = it->second;
      if (chunk.offset() != in.received) {
        reply.set_error("chunk out of order");
        return reply;
      }
      in.out->write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      in.received += chunk.data().size();
      if (chunk.last()) in.out->close();
      if (!*in.out && !chunk.last()) {
        reply.set_error("writing " + in.path.string() + " failed");
        incoming_.erase(it);
        return reply;
      }
      progress = file_progress_json(chunk.transfer_id(), in.filename, in.total, in.received,
                                    chunk.last(), "");
      if (chunk.last()) incoming_.erase(it);
    }
    core_->bus().publish("file_progress", progress);
    reply.set_ok(true);
    return reply;
  }

  Core* core_;
  std::mutex mu_;
  std::map<std::string, Offer> offers_;
  std::map<std::string, Incoming> incoming_;
  std::vector<std::weak_ptr<FileSender>> senders_;
};

}  // namespace ensemble::testing::detail
