/// @file
/// Sending a file as the operator (SendFile): the daemon streams TransferProgress while the
/// peer receives, and the call ends when the transfer has. Client::send_file is the way in;
/// this header holds what it returns.
///
///   // Blocking: progress on this thread, the final report returned (or an exception).
///   auto last = client.send_file(peer, "/srv/files/report.pdf",
///                                [](const ensemble::FileProgress& p) { show(p.percent); });
///
///   // Callback: progress and the end on gRPC threads; the handle can cancel.
///   auto transfer = client.send_file(peer, path, on_progress,
///                                    [](ensemble::Result<ensemble::FileProgress> r) { ... });
///
/// The path is opened by the DAEMON, so it names a file on the daemon's machine, readable by
/// the daemon's user. The peer must accept the offer (its operator calls accept_file with
/// the transfer id from its file_offer event) before bytes flow.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/client_options.hpp>
#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/connection.hpp>
#include <ensemble/detail/read_stream.hpp>
#include <ensemble/errors.hpp>
#include <ensemble/result.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace ensemble {

/// One TransferProgress report. percent is 0..100 as the daemon computes it. complete is
/// the authoritative end marker: a Go daemon sends a single final report with complete set
/// and only transfer_id filled in, while the daemon double reports bytes and percent as
/// they go.
struct FileProgress {
  std::string transfer_id{};  ///< the daemon's id of the transfer
  std::string filename{};  ///< the file's name as the daemon reports it
  std::uint64_t total_bytes = 0;  ///< the file's size
  std::uint64_t sent_bytes = 0;  ///< bytes sent so far
  double percent = 0;  ///< 0..100, as the daemon computes it
  bool complete = false;  ///< the transfer finished: the last report
  std::string error{};  ///< non-empty: the daemon reports the transfer failed
};

/// The SendFile call itself succeeded (status OK) but the transfer did not: the daemon
/// reported an error in a progress message, or ended the stream without reporting the
/// transfer complete. last_progress() is the last report received, if any. Failures of the
/// call itself (INTERNAL "sending file: <cause>", UNAVAILABLE, CANCELLED, ...) are RpcError.
class FileTransferError : public Error {
 public:
  /// `what` is the message; `last` the last report received, if any.
  FileTransferError(std::string what, std::optional<FileProgress> last)
      : Error(std::move(what)), last_(std::move(last)) {}
  /// The last report received before the transfer failed; empty when none came.
  const std::optional<FileProgress>& last_progress() const noexcept { return last_; }

 private:
  std::optional<FileProgress> last_;
};

namespace detail {

inline FileProgress to_file_progress(api::TransferProgress& p) {
  return FileProgress{std::move(*p.mutable_transfer_id()), std::move(*p.mutable_filename()),
                      p.total_bytes(), p.sent_bytes(), static_cast<double>(p.percent()),
                      p.complete(), std::move(*p.mutable_error())};
}

// The outcome of a finished SendFile stream, as the blocking form reports it.
inline Result<FileProgress> file_transfer_result(const grpc::Status& status,
                                                 const std::optional<FileProgress>& last) {
  if (!status.ok()) return Result<FileProgress>(std::make_exception_ptr(RpcError("SendFile", status)));
  if (!last) {
    return Result<FileProgress>(std::make_exception_ptr(
        FileTransferError("SendFile: the daemon ended the call without any progress report", last)));
  }
  if (!last->error.empty()) {
    return Result<FileProgress>(std::make_exception_ptr(
        FileTransferError("SendFile: transfer " + escaped_text(last->transfer_id) +
                              " failed: " + escaped_text(last->error), last)));
  }
  if (!last->complete) {
    return Result<FileProgress>(std::make_exception_ptr(FileTransferError(
        "SendFile: the daemon ended the call before transfer " + escaped_text(last->transfer_id) +
            " was complete", last)));
  }
  return Result<FileProgress>(*last);
}

}  // namespace detail

class FileTransfer;

namespace detail {
inline std::shared_ptr<FileTransfer> open_file_transfer(
    std::shared_ptr<Connection> conn, api::SendFileRequest request,
    std::function<void(const FileProgress&)> on_progress,
    std::function<void(Result<FileProgress>)> on_done, const CallOptions& options);
}  // namespace detail

/// A running SendFile call. Get one from the callback form of Client::send_file().
///
/// Threading: on_progress runs on a gRPC thread for each report, in order, one at a time;
/// on_done runs once, on a gRPC thread, with the final report or the error, before wait()
/// returns. An exception escaping either is printed to stderr. cancel(), wait(),
/// wait_for(), done() and latest() may be called from any thread; wait() and wait_for()
/// throw Error from inside this transfer's own callbacks. Once wait() (or the release
/// below) has returned, both callbacks have been destroyed.
///
/// Lifetime: when the last shared_ptr copy goes, the transfer is CANCELLED and, unless that
/// happens on a gRPC callback thread, the release waits for on_done. Keep the handle for as
/// long as the transfer should run. Destroying the Client cancels it and waits.
class FileTransfer final : private detail::ReadStream<api::TransferProgress> {
  using Base = detail::ReadStream<api::TransferProgress>;

 public:
  /// What on_progress is: called with each report.
  using ProgressHandler = std::function<void(const FileProgress&)>;
  /// What on_done is: called once with the final report or the error.
  using DoneHandler = std::function<void(Result<FileProgress>)>;

  /// Ends the transfer; it then fails with RpcError CANCELLED.
  using Base::cancel;
  using Base::done;

  /// Blocks until the end; the final report, or throws what the blocking send_file throws
  /// (RpcError, FileTransferError).
  FileProgress wait() const {
    Base::wait();
    std::lock_guard lock(mu_);
    return Result<FileProgress>(*result_).value();
  }

  /// True when the transfer ended within `timeout` (wait() then returns at once).
  bool wait_for(std::chrono::milliseconds timeout) const { return Base::wait_for(timeout).has_value(); }

  /// The most recent report received so far.
  std::optional<FileProgress> latest() const {
    std::lock_guard lock(mu_);
    return last_;
  }

 private:
  friend std::shared_ptr<FileTransfer> detail::open_file_transfer(std::shared_ptr<detail::Connection>,
                                                                  api::SendFileRequest, ProgressHandler,
                                                                  DoneHandler, const CallOptions&);

  FileTransfer(std::shared_ptr<detail::Connection> conn, api::SendFileRequest request,
               ProgressHandler on_progress, DoneHandler on_done)
      : Base(std::move(conn), "SendFile", request),
        request_(std::move(request)),
        on_progress_(std::move(on_progress)),
        on_done_(std::move(on_done)) {}

  void on_message(api::TransferProgress& message) override {
    FileProgress progress = detail::to_file_progress(message);
    {
      std::lock_guard lock(mu_);
      last_ = progress;
    }
    if (on_progress_) {
      detail::call_user_callback({.call = "SendFile"}, "a send_file", "progress handler", on_progress_, progress);
    }
  }

  void on_end(const grpc::Status& status) override {
    std::optional<Result<FileProgress>> result;
    {
      std::lock_guard lock(mu_);
      result_ = detail::file_transfer_result(status, last_);
      result = result_;
    }
    if (on_done_) {
      detail::call_user_callback({.call = "SendFile"}, "a send_file", "done handler", on_done_, std::move(*result));
    }
  }

  void drop_callbacks() noexcept override {
    ProgressHandler on_progress = std::move(on_progress_);
    DoneHandler on_done = std::move(on_done_);
  }

  const api::SendFileRequest request_;
  // Installed before the call starts and dropped in OnDone, after the last reaction, so
  // reactions read them unlocked.
  ProgressHandler on_progress_;
  DoneHandler on_done_;

  mutable std::mutex mu_;
  std::optional<FileProgress> last_;
  std::optional<Result<FileProgress>> result_;
};

namespace detail {

inline std::shared_ptr<FileTransfer> open_file_transfer(std::shared_ptr<Connection> conn,
                                                        api::SendFileRequest request,
                                                        std::function<void(const FileProgress&)> on_progress,
                                                        std::function<void(Result<FileProgress>)> on_done,
                                                        const CallOptions& options) {
  check_call_options(options);
  auto* raw = new FileTransfer(std::move(conn), std::move(request), std::move(on_progress), std::move(on_done));
  // The handle's deleter is the user's reference: releasing it cancels and waits.
  std::shared_ptr<FileTransfer> handle(raw, [](FileTransfer* t) { t->release_from_owner(); });
  raw->start(options, [raw](auto* async, grpc::ClientContext* context, auto* reactor) {
    async->SendFile(context, &raw->request_, reactor);
  });
  return handle;
}

// The blocking form: the transfer runs on gRPC's threads, but on_progress runs on the
// calling thread, in order, before this returns. If on_progress throws, the transfer is
// cancelled and the exception propagates once the call has ended. It waits on gRPC's
// threads, so do not call it from inside a handler (use the callback form there).
inline FileProgress send_file_blocking(std::shared_ptr<Connection> conn, api::SendFileRequest request,
                                       std::function<void(const FileProgress&)> on_progress,
                                       const CallOptions& options) {
  struct Mailbox {
    std::mutex mu;
    std::condition_variable changed;
    std::deque<FileProgress> reports;
    bool ended = false;
  };
  auto box = std::make_shared<Mailbox>();
  std::function<void(const FileProgress&)> forward;
  if (on_progress) {
    forward = [box](const FileProgress& p) {
      std::lock_guard lock(box->mu);
      box->reports.push_back(p);
      box->changed.notify_all();
    };
  }
  auto transfer = open_file_transfer(std::move(conn), std::move(request), std::move(forward),
                                     [box](Result<FileProgress>) {
                                       std::lock_guard lock(box->mu);
                                       box->ended = true;
                                       box->changed.notify_all();
                                     },
                                     options);
  while (true) {
    std::deque<FileProgress> batch;
    bool ended = false;
    {
      std::unique_lock lock(box->mu);
      box->changed.wait(lock, [&] { return box->ended || !box->reports.empty(); });
      batch.swap(box->reports);
      ended = box->ended;
    }
    for (const auto& p : batch) {
      try {
        on_progress(p);
      } catch (...) {
        transfer->cancel();  // releasing `transfer` on the way out waits for the end
        throw;
      }
    }
    if (ended) {
      std::lock_guard lock(box->mu);
      if (box->reports.empty()) break;
    }
  }
  return transfer->wait();
}

inline api::SendFileRequest send_file_request(std::string address, std::string file_path) {
  require_valid_address(address, "send_file address");
  if (file_path.empty()) throw InvalidArgumentError("send_file: file_path is empty");
  api::SendFileRequest request;
  request.set_address(std::move(address));
  request.set_file_path(std::move(file_path));
  return request;
}

}  // namespace detail
}  // namespace ensemble
