/// @file
/// Service: one registered service, one RegisterService stream, as a gRPC callback reactor.
///
/// Where things are (the reactor's bodies are in detail/service_reactor.hpp):
///   - the read loop ........ OnReadDone(): decode one message, queue it, StartRead again
///   - turns ................ detail/turn_queue.hpp: read-ahead (bounded, drop-oldest, counted),
///                            per-peer order, the in-flight cap, where each callback runs
///   - handler dispatch ..... deliver(): a queued event -> the handler you installed
///   - the write queue ...... enqueue() / OnWriteDone(): one StartWrite in flight, rest queued
///   - stopping ............. close() / drain() / cancel() / stop_on()
///   - the one ending ....... OnDone() -> finish() -> the last turn, end(): wait() released
///
/// Where callbacks run (one rule for every callback: the event handlers, on_state, on_unsent,
/// on_events_dropped, on_error, on_unknown, on_closed and on_handler_exception)
///   - Every callback is a turn. Turns run on ServiceOptions::executor when it is set;
///     otherwise on the thread that made them ready: a gRPC thread for everything the stream
///     does, your own thread for start()'s first `registering` and for the end of a service
///     that never opened a stream (close() or cancel() before start()).
///   - Turns of one service never overlap and run in the order they arose (the daemon's
///     order for events), with one exception: with ServiceOptions::max_turns_in_flight N > 1,
///     events from different peers (ChatMessage::from_addr and the like) run at the same
///     time, up to N. One peer's turns still run one at a time, in order.
///   - Callbacks with no peer (on_state, on_unsent, on_events_dropped, on_closed, errors and
///     unknown events without a peer) run alone: after every turn that arose before them has
///     returned, and before any turn that arose after them starts. So `reconnecting` comes
///     after the chats read before the stream was lost, and on_closed is the very last turn.
///   - on_handler_exception runs inside the turn whose handler threw, on its thread.
///   - The end is where the executor stops counting: once the service ends no new turn
///     starts, the turns running are waited for, and what is left (queued notices, then
///     on_state(closed) and on_closed, the last turn) runs on the thread that ends the
///     service, so that a busy, paused or stopped executor cannot hold the end up.
///   - While turns run the service keeps reading into a bounded queue
///     (ServiceOptions::event_queue_capacity); when full the OLDEST queued event is dropped,
///     counted (stats().events_dropped) and reported to on_events_dropped. (Without an
///     executor, once the turns have proved quick, each runs before the next read starts,
///     for the reply's latency; a slow turn puts the service back to reading first.)
///   - A service started with no event handler is read with next_event() instead (pull mode);
///     its other callbacks still run as turns.
///   - Actions (send_message, accept_connection, ...) may be called from any thread, any
///     number at once, including from inside a handler. They never block on the network:
///     each is queued in call order and written one at a time. An action on a service that
///     is not registered throws ServiceClosedError. "Written" means gRPC's transport took it
///     (the daemon acknowledges nothing, so a written action may still be lost if the daemon
///     goes away); an action that provably never left (still queued, or its write failed)
///     when the stream ended is reported to on_unsent().
///   - Handlers must be installed before start(); installing one later throws, so no event
///     can arrive with nobody to take it.
///   - wait() / wait_for() throw Error from inside any turn of this service (the end cannot
///     come while one runs) and before start() (nothing would end it).
///
/// Lifetime contract
///   - Client::service() and friends return a std::shared_ptr. When the last copy goes, the
///     stream is cancelled and, unless that happens inside a turn, the release waits until the
///     service has fully ended. The ending calls (wait() returning, that release, ~Client)
///     return only after the last turn has run AND every handler, the executor and the stop
///     callbacks have been destroyed: what they capture may be freed next. Releasing from
///     inside a turn is safe too; it just does not wait.
///   - The release waits for running turns: do not release while holding a lock that a
///     handler takes (move the shared_ptr out under the lock, release it after unlocking).
///   - Events still queued when the service is cancelled, released or ends are discarded
///     (stats().events_discarded), except that drain() delivers them first, up to its grace.
///     The executor must outlive the service (every task it accepts must run).
///   - Do not capture the shared_ptr in the service's own handlers (a cycle: the service would
///     only end with its Client). Take the service as the handler's first parameter instead
///     (`on_chat([](ChatService& self, const ChatMessage& m) {...})`), or capture a raw pointer.
///   - Timers (the registration deadline of every attempt, the reconnect backoff, a drain's
///     grace) are gRPC alarms: the library starts no thread of its own.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/client_options.hpp>
#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/connection.hpp>
#include <ensemble/detail/deadline.hpp>
#include <ensemble/detail/dispatch.hpp>
#include <ensemble/detail/event_decoding.hpp>
#include <ensemble/detail/failure.hpp>
#include <ensemble/detail/manifest.hpp>
#include <ensemble/detail/node_conversions.hpp>
#include <ensemble/detail/turn_queue.hpp>
#include <ensemble/detail/unary.hpp>
#include <ensemble/detail/wire_check.hpp>
#include <ensemble/errors.hpp>
#include <ensemble/events.hpp>
#include <ensemble/log.hpp>
#include <ensemble/node_types.hpp>
#include <ensemble/service_options.hpp>

#include <grpcpp/alarm.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/client_callback.h>
#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace ensemble {

/// Where a service is in its life; reported to on_state().
enum class ServiceState {
  idle,          ///< constructed, start() not called
  registering,   ///< RegisterService open, waiting for `registered`
  registered,    ///< address() valid, actions accepted
  reconnecting,  ///< between attempts: the stream was lost (ReconnectPolicy), or start() waits
                 ///< for a daemon that is not ready yet (ServiceOptions::wait_for_daemon)
  closed,        ///< ended for good; wait() returns
};

/// Counters, for metrics and for proving nothing went missing: every accepted action ends up
/// in exactly one of actions_written or actions_unsent.
///   actions_written: gRPC's transport took it (OnWriteDone ok). Not a delivery receipt: the
///     daemon acknowledges nothing, and if it goes away, written actions may never reach it.
///   actions_unsent: provably never left (still queued when the stream ended, or its write
///     failed); each was reported to on_unsent.
/// Likewise every event read off the stream (an event, a message of a kind this version does
/// not know, or a daemon error on the open stream) is counted in events_received and ends up
/// in exactly one of events_delivered (handed to a handler or returned by next_event),
/// events_dropped (the read-ahead queue was full; reported to on_events_dropped),
/// events_discarded (cancelled, ended or drained before it was delivered) or events_queued():
/// received = delivered + dropped + discarded + queued, at every moment (the four are read
/// together).
struct ServiceStats {
  std::uint64_t events_received = 0;  ///< read off the stream, of every kind
  std::uint64_t actions_written = 0;  ///< taken by gRPC's transport
  std::uint64_t actions_unsent = 0;  ///< never left; each reported to on_unsent
  std::uint64_t events_dropped = 0;  ///< dropped from a full read-ahead queue
  std::uint64_t events_discarded = 0;  ///< cancelled, ended or drained before delivery
  std::uint64_t events_delivered = 0;  ///< handed to a handler or returned by next_event
  std::uint64_t events_queued = 0;  ///< waiting in the read-ahead queue
};

/// An action that was accepted by send_message() & co. but provably never left: it was still
/// queued when the stream ended, or gRPC failed its write.
struct UnsentAction {
  /// Which action: send_message, accept_connection, reject_connection, send_bytes or
  /// introduce_peers.
  enum class Kind { send_message, accept, reject, send_bytes, introduce_peers };
  Kind kind;  ///< which action it was
  std::string target;  ///< to_addr, or request_id for accept/reject
  grpc::Status reason;  ///< how the stream ended
};

template <class Unused = void>
class BasicClient;
/// The client: connection, node-level calls, and the factory of services (client.hpp).
using Client = BasicClient<void>;

namespace detail {
struct ServiceReleaser;

// Only a Client makes services (they need its connection, and must be owned by the
// shared_ptr whose deleter ends the stream), so their constructors take this key.
class ServiceKey {
  ServiceKey() = default;
  template <class> friend class ensemble::BasicClient;
};

// The reason a drain gives when it answers a connection request it will not handle: the
// daemon's own words for a request whose service stream closed (daemon-protocol.md §5).
inline constexpr std::string_view kStreamClosedReason = "service stream closed";
}  // namespace detail

/// The reactor is a private base: gRPC drives it, while StartWrite, AddHold, StartCall and
/// the On* reactions stay out of users' reach (a stray StartWrite would break the one-write-
/// in-flight rule the write queue keeps).
///
/// Users name it Service; it is a class template with the one instantiation
/// BasicService<void> only so that a program may compile it once instead of in every file
/// that starts a service: see <ensemble/separate_compilation.hpp>.
template <class Unused = void>
class BasicService : private grpc::ClientBidiReactor<api::ServiceClientMessage, api::ServiceServerMessage>,
                     private detail::LiveCall,
                     private detail::TurnSink {
 public:
  BasicService(const BasicService&) = delete;
  BasicService& operator=(const BasicService&) = delete;

  // ---- Handlers: install before start(). Each replaces any earlier one of its kind. ----
  // (ChatService, RpcService and HttpService add a second form of each, whose handler also
  // receives the service: see ServiceOf below.)
  /// Inbound chats (ChatMessage).
  BasicService& on_chat(std::function<void(const ChatMessage&)> handler) {
    return install(chat_handler_, std::move(handler), "on_chat");
  }
  /// Peers asking to connect (ConnectionRequest); answer with accept_connection() or
  /// reject_connection().
  BasicService& on_connection_request(std::function<void(const ConnectionRequest&)> handler) {
    return install(connection_handler_, std::move(handler), "on_connection_request");
  }
  /// Introductions from other services (PeerIntroduction).
  BasicService& on_peer_introduction(std::function<void(const PeerIntroduction&)> handler) {
    return install(introduction_handler_, std::move(handler), "on_peer_introduction");
  }
  /// Event types this version does not know, and payloads that do not parse.
  BasicService& on_unknown(std::function<void(const UnknownEvent&)> handler) {
    return install(unknown_handler_, std::move(handler), "on_unknown");
  }
  /// Recoverable daemon errors on the open stream (ServiceError::Kind tells which).
  BasicService& on_error(std::function<void(const ServiceError&)> handler) {
    return install(error_handler_, std::move(handler), "on_error");
  }
  /// Actions that were queued but not written when a stream ended.
  BasicService& on_unsent(std::function<void(const UnsentAction&)> handler) {
    return install(unsent_handler_, std::move(handler), "on_unsent");
  }
  /// Every change of ServiceState, in order, from start()'s `registering` to `closed`.
  BasicService& on_state(std::function<void(ServiceState)> handler) {
    return install(state_handler_, std::move(handler), "on_state");
  }
  /// The final status, once, when the service has ended for good (also returned by wait()).
  /// The last turn of the service.
  BasicService& on_closed(std::function<void(const grpc::Status&)> handler) {
    return install(closed_handler_, std::move(handler), "on_closed");
  }
  /// Events the read-ahead queue dropped because it was full (ServiceOptions::
  /// event_queue_capacity), oldest first; `count` covers every drop since the last call. Runs
  /// alone, before the next event that was kept. (In pull mode the report is an
  /// EventsDropped in next_event()'s sequence instead.)
  BasicService& on_events_dropped(std::function<void(std::uint64_t count)> handler) {
    return install(dropped_handler_, std::move(handler), "on_events_dropped");
  }
  /// An exception that escaped one of your callbacks, inside the same turn. Without this
  /// handler it goes to the log sink (log.hpp); either way the stream goes on.
  BasicService& on_handler_exception(std::function<void(std::exception_ptr)> handler) {
    return install(exception_handler_, std::move(handler), "on_handler_exception");
  }

  // ---- Registration ----

  /// Opens the stream, sends the manifest and blocks until the daemon answers. Throws
  /// RegistrationError (ALREADY_EXISTS, INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED,
  /// UNAVAILABLE, UNIMPLEMENTED, or DEADLINE_EXCEEDED after ServiceOptions::registration_timeout).
  /// With ServiceOptions::wait_for_daemon it waits through a daemon that is not up yet
  /// (UNAVAILABLE) or still bootstrapping Tor (UNIMPLEMENTED), registering again with the
  /// ReconnectPolicy's backoff, unless waiting cannot help (the socket path is not a socket,
  /// this user may not open it, the TLS handshake fails: UNAVAILABLE at once, with the cause).
  /// close(), drain(), cancel() or a stop_on() token from another thread end it at once,
  /// without the daemon (RegistrationError CANCELLED, with what the last attempt met). A
  /// failed start() leaves the service ended (wait() returns the status). Throws Error when it
  /// was already started, ServiceClosedError when it was cancelled or closed before start() or
  /// its Client has been destroyed.
  void start() { start_async().get(); }

  /// The same without blocking: the future becomes ready at `registered`, or holds the
  /// RegistrationError. The registration deadline applies as for start(). (With an executor,
  /// the on_state(registered) turn may still be on its way when the future is ready.)
  std::future<void> start_async() {
    std::future<void> registered;
    std::uint64_t attempt = 0;
    {
      std::lock_guard lock(mu_);
      if (state_ == ServiceState::closed) {
        throw ServiceClosedError("service \"" + name_ + "\" was cancelled or closed before start(); "
                                 "make a new one");
      }
      if (state_ != ServiceState::idle) throw Error("service \"" + name_ + "\" was already started");
      registration_ = std::promise<void>();
      registered = registration_->get_future();
      refs_.fetch_add(1, std::memory_order_relaxed);  // held by the stream until the end
      started_ = true;
      queue_->set_pull(!chat_handler_ && !connection_handler_ && !introduction_handler_ &&
                       !unknown_handler_ && !error_handler_ && !rpc_handler_);
      attempt = prepare_attempt_locked();
    }
    // Outside mu_: CallRegistry::close_and_cancel_all() holds the registry lock while it
    // calls cancel_call(), which takes mu_, so the lock order is registry -> mu_.
    if (!conn_->calls.add(this)) {
      // The Client is gone and its channel with it: end here, as if cancelled at once.
      {
        std::lock_guard lock(mu_);
        attempt_active_ = false;
        registration_.reset();
      }
      end_without_stream(grpc::Status(grpc::StatusCode::CANCELLED,
                                      "the Client of service \"" + name_ + "\" was destroyed before start()"),
                         /*stream_reference=*/true);
      throw ServiceClosedError("service \"" + name_ + "\" cannot start: its Client was destroyed");
    }
    notify_state(ServiceState::registering);
    start_attempt(attempt);
    return registered;
  }

  /// The name the service registers under.
  const std::string& name() const noexcept { return name_; }
  /// The transport, fixed by the service's type.
  Transport transport() const noexcept { return transport_; }

  /// The service's own address and onion, as the daemon assigned them at registration.
  /// Stable for a name across reconnects and daemon restarts (the daemon keeps the keypair).
  std::string address() const {
    std::lock_guard lock(mu_);
    return address_;
  }
  /// The service's onion address (see address()); empty until registered.
  std::string onion() const {
    std::lock_guard lock(mu_);
    return onion_;
  }
  /// Where the service is in its life right now (on_state reports each change).
  ServiceState state() const {
    std::lock_guard lock(mu_);
    return state_;
  }

  // ---- Actions (any thread; queued in call order; see the threading contract above) ----

  /// Chat to a peer as this service's own identity (the peer's gate sees the service's
  /// address). For the operator's identity use Client::send.
  void send_message(std::string to_addr, std::string text) {
    require_valid_address(to_addr, "send_message to_addr");
    if (text.empty()) throw InvalidArgumentError("send_message: text is empty");
    api::ServiceClientMessage m;
    auto* body = m.mutable_send_message();
    body->set_to_addr(std::move(to_addr));
    body->set_text(std::move(text));
    enqueue(std::move(m));
  }

  /// Accepts a peer's dial to this service: `request_id` from its ConnectionRequest.
  /// InvalidArgumentError when it is empty.
  void accept_connection(std::string request_id) {
    if (request_id.empty()) throw InvalidArgumentError("accept_connection: request_id is empty");
    api::ServiceClientMessage m;
    m.mutable_accept()->set_request_id(std::move(request_id));
    enqueue(std::move(m));
  }

  /// Refuses a peer's dial to this service, with `reason` for the peer (may be empty).
  /// InvalidArgumentError when `request_id` is empty.
  void reject_connection(std::string request_id, std::string reason = {}) {
    if (request_id.empty()) throw InvalidArgumentError("reject_connection: request_id is empty");
    api::ServiceClientMessage m;
    auto* body = m.mutable_reject();
    body->set_request_id(std::move(request_id));
    body->set_reason(std::move(reason));
    enqueue(std::move(m));
  }

  /// Asks the daemon to introduce to_addr to other_addr. The receiver gets a PeerIntroduction
  /// whose from_service_addr is this service's address, attested by the daemon.
  void introduce_peers(std::string to_addr, std::string other_addr, std::string session_id,
                       Timestamp expires_at, std::string role_hint = {},
                       std::string payload = {}) {
    require_valid_address(to_addr, "introduce_peers to_addr");
    require_valid_address(other_addr, "introduce_peers other_addr");
    if (session_id.empty()) throw InvalidArgumentError("introduce_peers: session_id is empty");
    api::ServiceClientMessage m;
    auto* body = m.mutable_introduce_peers();
    body->set_to_addr(std::move(to_addr));
    body->set_other_addr(std::move(other_addr));
    body->set_session_id(std::move(session_id));
    body->set_expires_at_ms(unix_ms(expires_at));
    body->set_role_hint(std::move(role_hint));
    body->set_payload(std::move(payload));
    enqueue(std::move(m));
  }

  /// Dials a peer as this SERVICE's identity (ConnectAs), so the peer's gate sees the
  /// service's address (address()), not the operator's. Pick this when the peer admits the
  /// service (its allowlist or contacts hold the service address) or the conversation is the
  /// bot's own; Client::connect dials as the operator (the daemon's node identity) instead,
  /// for peers that admit the operator. Mixing them up is the usual reason a peer refuses a
  /// dial it should accept. A refused dial is accepted == false with the daemon's reason,
  /// not an exception; RpcError only for call failures (NOT_FOUND when the service is not
  /// registered right now). Throws AddressError for an invalid address before sending.
  ConnectResult connect_peer(std::string address, CallOptions options = {}) {
    return detail::blocking_call<api::ConnectResponse>(
        *conn_, "ConnectAs", connect_as_request(std::move(address)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.ConnectAs(ctx, req, resp); },
        detail::to_connect_result);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void connect_peer(std::string address, std::function<void(Result<ConnectResult>)> callback,
                    CallOptions options = {}) {
    detail::callback_call<api::ConnectResponse>(
        conn_, "ConnectAs", connect_as_request(std::move(address)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->ConnectAs(ctx, req, resp, std::move(done));
        },
        detail::to_connect_result, std::move(callback));
  }

  /// The counters as of now, read together (ServiceStats says what adds up to what).
  ServiceStats stats() const {
    const auto counts = queue_->counts();
    return {counts.received,
            actions_written_.load(std::memory_order_relaxed),
            actions_unsent_.load(std::memory_order_relaxed),
            counts.dropped,
            counts.discarded,
            counts.delivered,
            counts.queued};
  }

  /// Events read ahead and not yet handed to a handler or to next_event().
  std::size_t events_queued() const { return queue_->size(); }

  // ---- Pull mode: read the service as a sequence ----
  ///
  /// A service started with no event handler installed (on_chat, on_connection_request,
  /// on_peer_introduction, on_unknown, on_error, on_rpc) is in pull mode: every event, daemon
  /// error and loss report waits in the read-ahead queue for this call, in the daemon's
  /// order. Returns the next one, or std::nullopt when none came within `timeout` (0: do not
  /// wait; a timeout too long for the clock waits without limit). Once the service has ended
  /// for good and the queue is empty it throws ServiceClosedError (events read before the end
  /// are still returned first; cancel() discards them). Any thread; several callers share the
  /// sequence. A thread that got an event holds it as a turn until it calls next_event()
  /// again: what drain() waits for. With an event handler installed the service is in
  /// handler mode and this throws Error: events go to the handlers, never to two places.
  std::optional<InboundEvent> next_event(std::chrono::milliseconds timeout) {
    {
      std::lock_guard lock(mu_);
      if (!started_) {
        throw ServiceClosedError("next_event: service \"" + name_ + "\" " +
                                 (state_ == ServiceState::closed ? "was closed before start()" : "is not started"));
      }
    }
    if (!queue_->pull()) {
      throw Error("next_event: service \"" + name_ +
                  "\" has event handlers installed, so its events go to them; pull mode is for "
                  "services started without any");
    }
    std::optional<InboundEvent> event;
    switch (queue_->next(timeout, event)) {
      case detail::TurnQueue::Pull::event: return event;
      case detail::TurnQueue::Pull::timeout: return std::nullopt;
      case detail::TurnQueue::Pull::ended: break;
    }
    throw ServiceClosedError("next_event: service \"" + name_ + "\" has ended and its events were all taken");
  }

  /// Number of actions queued behind the one being written.
  std::size_t queued() const {
    std::lock_guard lock(mu_);
    return pending_.size();
  }

  /// Blocks until every action queued so far has been handed to gRPC's transport (not: has
  /// reached the daemon). False on timeout or when the stream ended first (the leftovers
  /// went to on_unsent). A timeout too long for the clock (milliseconds::max()) is no limit.
  bool flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return wait_up_to(lock, timeout, [&] { return !write_in_flight_ && pending_.empty(); }) &&
           accepting_locked();
  }

  // ---- Ending ----
  //
  // Three ways, all from any thread, at any moment, each returning at once (wait() for the
  // end). None needs the daemon to answer while the service is not registered yet:
  // registering, or waiting for the daemon between attempts, any of them ends the attempt
  // now and start() throws RegistrationError CANCELLED.

  /// Graceful: actions already queued are still written, then the stream is half-closed and
  /// the daemon ends it; wait() returns OK. New actions throw from now on, including replies
  /// of turns still running (drain() lets them finish first). Before start(): ends the
  /// service without opening a stream (on_closed runs as the last turn, start() throws
  /// ServiceClosedError).
  void close() { close_stream(/*graceful=*/true); }

  /// Graceful, for a bot with turns in flight: no new event is taken from now on (each is
  /// counted in events_discarded; a connection request among them is rejected with the
  /// daemon's own reason, "service stream closed"); turns already running finish and their
  /// replies are written; events already queued are still delivered (handler mode) or
  /// returned by next_event() (pull mode) until `grace` has passed, then discarded the same
  /// way. Once nothing is queued or in flight the service closes as close() does and wait()
  /// returns OK. `grace` is in milliseconds: 0 discards the queue at once; a value too long
  /// for the clock means no deadline; negative is an InvalidArgumentError. Not registered
  /// (yet): the same as close(). A second drain() or a close() meanwhile keeps the earliest
  /// end. In pull mode a turn lasts from next_event() returning an event until the same
  /// thread calls next_event() again.
  void drain(std::chrono::milliseconds grace) {
    if (grace.count() < 0) {
      throw InvalidArgumentError("drain: grace is negative (" + std::to_string(grace.count()) + " ms)");
    }
    bool start = false;
    {
      std::lock_guard lock(mu_);
      if (draining_ || user_closed_) return;  // already ending: the earliest end stands
      start = state_ == ServiceState::registered && attempt_active_ && !read_ended_;
      draining_ = start;
    }
    if (!start) {
      close();  // nothing to drain: not registered (yet)
      return;
    }
    queue_->start_drain();
    if (grace.count() == 0) {
      queue_->expire_drain();
    } else {
      arm_drain_timer(grace);
    }
  }

  /// Abrupt: cancels the stream now; queued actions are reported unsent, queued events are
  /// discarded (both modes), turns already running still finish. wait() returns CANCELLED.
  /// Before start(): ends the service without opening a stream (start() throws
  /// ServiceClosedError).
  void cancel() { cancel_call(); }

  /// Drains the service (drain(grace)) when `token` is stopped: the way to connect a
  /// SignalStop (signals.hpp) or any std::stop_source to the service, at any moment of its
  /// life: before start() (start() then throws ServiceClosedError), while start() waits,
  /// registered with turns in flight. A token already stopped drains at once. The stop
  /// callback runs on the thread that requests the stop; it is destroyed with the handlers.
  void stop_on(std::stop_token token, std::chrono::milliseconds grace) {
    if (grace.count() < 0) {
      throw InvalidArgumentError("stop_on: grace is negative (" + std::to_string(grace.count()) + " ms)");
    }
    auto callback = std::make_unique<std::stop_callback<StopAction>>(std::move(token), StopAction{this, grace});
    std::lock_guard lock(mu_);
    if (!finished_) stop_callbacks_.push_back(std::move(callback));
  }

  /// Blocks until the service has ended for good and returns the final status (OK after a
  /// graceful close or drain; CANCELLED after cancel() or ~Client; UNAVAILABLE when the daemon
  /// went away; the registration's status when start() failed). When it returns, no callback
  /// of this service runs again and every handler has been destroyed. Throws Error before
  /// start() (nothing would end it) and from inside any turn of this service (the service
  /// cannot end while one runs: call close(), drain() or cancel() there and return).
  grpc::Status wait() {
    refuse_blocking("wait()");
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return finished_; });
    return final_status_;
  }

  /// The same with a limit; nullopt when the service has not ended within `timeout` (100
  /// years or more: no limit, as wait()). Throws where wait() throws.
  std::optional<grpc::Status> wait_for(std::chrono::milliseconds timeout) {
    refuse_blocking("wait_for()");
    std::unique_lock lock(mu_);
    if (!wait_up_to(lock, timeout, [&] { return finished_; })) return std::nullopt;
    return final_status_;
  }

 protected:
  // The concrete service types' plumbing, not API: left out of the reference.
  /// @cond ENSEMBLE_INTERNAL
  BasicService(std::shared_ptr<detail::Connection> conn, std::string name, Transport transport,
               ServiceOptions options)
      : conn_(std::move(conn)),
        name_(std::move(name)),
        transport_(transport),
        options_(std::move(options)),
        manifest_(detail::make_manifest(name_, transport_, options_)),
        queue_(std::make_shared<detail::TurnQueue>(
            detail::TurnQueue::Limits{checked_capacity(options_), options_.event_queue_max_bytes,
                                      options_.max_turns_in_flight},
            std::exchange(options_.executor, nullptr), static_cast<detail::TurnSink*>(this),
            static_cast<const void*>(this), name_)) {
    // The manifest goes out on every registration attempt: check it once, here, so a bad
    // description or allowlist entry fails at Client::service() rather than as a stream
    // the daemon ends.
    if (auto problem = detail::outgoing_problem(manifest_, conn_->max_message_bytes)) {
      wipe_keypair_seed(manifest_);
      throw InvalidArgumentError("the manifest of service \"" + name_ + "\": " + *problem);
    }
  }

  static std::size_t checked_capacity(const ServiceOptions& options) {
    if (options.event_queue_capacity == 0) {
      throw ConfigError("ServiceOptions::event_queue_capacity must be at least 1");
    }
    return options.event_queue_capacity;
  }

  // "send_message on service \"echo\"": the action, by its wire name, for error texts.
  std::string action_name(const api::ServiceClientMessage& message) const {
    const auto* field = api::ServiceClientMessage::descriptor()->FindFieldByNumber(message.msg_case());
    return (field ? field->name() : std::string("an action")) + " on service \"" + name_ + "\"";
  }

  ~BasicService() override {
    // Secrets in the manifest (keypair_seed) do not outlive the service.
    wipe_keypair_seed(manifest_);
    wipe_keypair_seed(outgoing_);
  }

  // manifest_ keeps the seed for re-registering; every other copy is wiped once written.
  static void wipe_keypair_seed(api::ServiceClientMessage& message) noexcept {
    if (!message.has_manifest()) return;
    auto* seed = message.mutable_manifest()->mutable_keypair_seed();
    sodium_memzero(seed->data(), seed->size());
  }

  template <class Handler>
  BasicService& install(Handler& slot, Handler handler, const char* what) {
    std::lock_guard lock(mu_);
    if (state_ != ServiceState::idle) {
      throw Error(std::string(what) + ": handlers must be installed before start() (service \"" +
                  name_ + "\")");
    }
    slot = std::move(handler);
    return *this;
  }

  // Writes happen in call order, one at a time: if nothing is in flight this call starts
  // the write, otherwise the message waits in pending_ for OnWriteDone to pick it up.
  void enqueue(api::ServiceClientMessage message) {
    // Before anything is queued: what the daemon would end the stream for (wire_check.hpp).
    if (auto problem = detail::outgoing_problem(message, conn_->max_message_bytes)) {
      throw InvalidArgumentError(action_name(message) + ": " + *problem);
    }
    {
      std::lock_guard lock(mu_);
      if (!accepting_locked()) {
        throw ServiceClosedError("service \"" + name_ + "\" is " + describe_locked() +
                                 "; the action was not sent");
      }
      if (write_in_flight_) {
        pending_.push_back(std::move(message));
        return;
      }
      write_in_flight_ = true;
      outgoing_ = std::move(message);
    }
    StartWrite(&outgoing_);
  }

  // Set by RpcService; the core dispatches rpc_message to it.
  std::function<void(const RpcMessage&)> rpc_handler_;

  /// @endcond
 private:
  friend struct detail::ServiceReleaser;

  // ---- The read loop ----
  void OnReadDone(bool ok) override;

  // Queues one event; true when the caller must launch the queue's runners. An event a drain
  // refuses is answered here when it is a connection request.
  bool accept(InboundEvent event);

  // ---- Turns (the queue's sink; see turn_queue.hpp for when and where each runs) ----
  void deliver(InboundEvent& event) override;

  void report_dropped(std::uint64_t count) override { call(dropped_handler_, count); }

  void unhandled(std::vector<InboundEvent>& events) override;

  // A drain is complete: close as close() does (the replies of the drained turns are queued
  // before the half-close).
  void drained() override;

  // The daemon rejects a pending connection request with these words when its stream closes;
  // a drain says the same, at once, for each request it will not handle. The stream may be
  // past writing by now (the daemon then says it itself).
  void answer_unhandled(const InboundEvent& event);

  template <class Handler, class Value>
  void call(const Handler& handler, const Value& value);

  void report_handler_exception(std::exception_ptr error);

  // One of the service's own callbacks, as a turn that runs alone (turn_queue.hpp).
  template <class Handler, class Value>
  void notify(const Handler& handler, Value value);
  void notify_state(ServiceState s) { notify(state_handler_, s); }

  void on_registered();

  // Returns whether the queue's runners must be launched (errors queue behind the events
  // before them).
  bool on_daemon_error();

  // ---- The write queue ----
  void OnWriteDone(bool ok) override;

  void OnWritesDoneDone(bool /*ok*/) override;

  // ---- The one ending (per stream attempt) ----
  void OnDone(const grpc::Status& status) override;

  grpc::Status closed_before_registered() const;

  void finish(const grpc::Status& status);

  // An end with no stream behind it: cancel() or close() before start(), or start() after
  // the Client was destroyed. Its last turns run on this thread, inside this call.
  void end_without_stream(const grpc::Status& status, bool stream_reference);

  // The last turns, on this thread (turn_queue.hpp, TurnQueue::finish): no turn starts any
  // more, handler mode discards the events still queued (pull mode keeps them for
  // next_event()), the turns running are waited for, the notices still queued run, then
  // `closed` and on_closed, then the end itself: every handler, the executor and the stop
  // callbacks are destroyed, the Client stops counting the service, and wait() and the
  // release are let go. The end may destroy this service: the queue is held here.
  void end_with(const grpc::Status& status, bool stream_reference);

  void end(const grpc::Status& status, bool stream_reference);

  // What wait() and the release wait for.
  void publish_end(const grpc::Status& status);

  void drop_handlers() noexcept;

  void report_unsent(std::vector<api::ServiceClientMessage>& unsent, const grpc::Status& why);

  // ---- Stream attempts (the first from start(), later ones from the reconnect policy) ----
  std::uint64_t prepare_attempt_locked();

  // Whether a stream that just ended (callers hold mu_) is worth another attempt:
  //  - registered before (ReconnectPolicy::enabled): the daemon went away (UNAVAILABLE), or
  //    a re-registration met a daemon still starting up again, timed out, or met
  //    ALREADY_EXISTS (after a blip the daemon may still hold the name for the lost stream);
  //  - never registered (ServiceOptions::wait_for_daemon): the daemon is not up yet
  //    (UNAVAILABLE) or its registry is not, while Tor bootstraps (UNIMPLEMENTED "service
  //    registry not configured on this daemon").
  // Either way within ReconnectPolicy::max_attempts consecutive failures, and only while the
  // failure is one time can mend (detail/failure.hpp): on a permanent one (the socket path is
  // not a socket, this user may not open it, the TLS handshake fails) `status` gets the
  // cause added and the wait ends. A retry leaves its reason in retry_note_ for the log.
  bool should_retry_locked(grpc::Status& status, bool was_registered);

  // Canonical order (gRPC's callback examples): bind, first write, first read, hold, call.
  // The hold keeps OnDone from running while a write may still be started from outside a
  // reaction; it is removed once, when the read side has ended and nothing is in flight.
  void start_attempt(std::uint64_t attempt);

  // ServiceOptions::registration_timeout, for every attempt (the first, each wait for the
  // daemon, each reconnect): an attempt still registering when it expires is cancelled and
  // ends DEADLINE_EXCEEDED. A gRPC alarm rather than a thread, so a thousand services
  // registering at once cost no thread each. Its callback holds a reference; the alarm is
  // cancelled as soon as the attempt is decided (registered, or OnDone), so it never keeps a
  // finished service alive for long, and it holds nothing of the user's.
  void arm_registration_timer(std::uint64_t attempt);

  void disarm_registration_timer();

  void on_registration_timeout(std::uint64_t attempt);

  // A drain's grace: when it expires, what is still queued is discarded (and answered). A
  // gRPC alarm, like the other timers; cancelled when the service ends.
  void arm_drain_timer(std::chrono::milliseconds grace);

  void disarm_drain_timer();

  // The reconnect policy's wait is a gRPC alarm too: the library starts no thread of its
  // own. The pending callback holds a reference to the service; close(), cancel() and
  // ~Client cancel the alarm, which then runs its callback at once.
  void schedule_reconnect();

  // Cancelled outside alarm_mu_, in case a cancelled alarm's callback ever runs inline.
  void cancel_backoff();

  // Fired or cancelled: a close(), drain(), cancel() or ~Client while waiting gives up (they
  // set user_closed_ before cancelling the alarm); otherwise the next attempt starts.
  void after_backoff();

  std::chrono::milliseconds next_backoff();

  // ---- Stopping ----

  // close(), and the end of a drain. Graceful: nothing queued is lost. While registering
  // there is nothing to flush, so the attempt is cancelled at once rather than waiting for
  // the daemon's `registered` (or its registration_timeout) first.
  void close_stream(bool graceful);

  void cancel_call() noexcept override;

  // What stop_on() registers: a drain with the grace it was given.
  struct StopAction {
    BasicService* service;
    std::chrono::milliseconds grace;
    void operator()() const noexcept {
      try {
        service->drain(grace);
      } catch (const std::exception& e) {
        detail::log(LogLevel::error, "stopping service \"" + service->name_ + "\" failed: " + e.what(),
                    {.service = service->name_});
      }
    }
  };

  // Blocking calls that cannot complete from where they are called throw instead of hanging.
  void refuse_blocking(const char* what) const;

  // The last user shared_ptr is gone.
  void release_from_owner();

  void unref();

  // ---- Small helpers (callers hold mu_ where the name says so) ----
  bool accepting_locked() const;

  bool draining() const;

  std::string describe_locked() const;

  bool begin_writes_done_locked();

  bool release_hold_locked();

  template <class Predicate>
  bool wait_up_to(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds timeout, Predicate ready);

  static api::ConnectAsRequest connect_as_request_for(const std::string& service, std::string address);
  api::ConnectAsRequest connect_as_request(std::string address) const;

  // Immutable after construction (the executor, moved out of options_, lives in queue_).
  const std::shared_ptr<detail::Connection> conn_;
  const std::string name_;
  const Transport transport_;
  ServiceOptions options_;
  api::ServiceClientMessage manifest_;
  // The turns: read-ahead, order, concurrency, where callbacks run. Shared so that a task
  // on the user's executor may outlive the service.
  const std::shared_ptr<detail::TurnQueue> queue_;

  // Handlers: written before start(), read-only afterwards, so turns need no lock;
  // destroyed by drop_handlers() at the end.
  std::function<void(const ChatMessage&)> chat_handler_;
  std::function<void(const ConnectionRequest&)> connection_handler_;
  std::function<void(const PeerIntroduction&)> introduction_handler_;
  std::function<void(const UnknownEvent&)> unknown_handler_;
  std::function<void(const ServiceError&)> error_handler_;
  std::function<void(const UnsentAction&)> unsent_handler_;
  std::function<void(ServiceState)> state_handler_;
  std::function<void(const grpc::Status&)> closed_handler_;
  std::function<void(std::exception_ptr)> exception_handler_;
  std::function<void(std::uint64_t)> dropped_handler_;

  // Buffers gRPC reads into / writes from: must stay put until the matching On*Done.
  api::ServiceServerMessage incoming_;
  api::ServiceClientMessage outgoing_;

  std::mutex context_mu_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::uint64_t context_attempt_ = 0;  // the attempt context_ belongs to (under context_mu_)
  std::unique_ptr<grpc::Alarm> registration_alarm_;  // the current attempt's timeout (under mu_)
  std::unique_ptr<grpc::Alarm> drain_alarm_;         // a drain's grace (under mu_)
  std::mutex alarm_mu_;                              // guards backoff_alarm_; held only to set or copy it
  std::shared_ptr<grpc::Alarm> backoff_alarm_;       // the reconnect policy's wait

  // The user's shared_ptr (all copies) + the live stream + each pending alarm callback.
  std::atomic<int> refs_{1};
  std::atomic<std::uint64_t> actions_written_{0};
  std::atomic<std::uint64_t> actions_unsent_{0};

  mutable std::mutex mu_;
  std::condition_variable changed_;
  ServiceState state_ = ServiceState::idle;
  std::optional<std::promise<void>> registration_;
  std::string registration_error_;
  std::string address_;
  std::string onion_;
  std::deque<api::ServiceClientMessage> pending_;
  std::vector<api::ServiceClientMessage> unsent_;
  std::vector<std::unique_ptr<std::stop_callback<StopAction>>> stop_callbacks_;
  bool started_ = false;
  bool attempt_active_ = false;
  bool write_in_flight_ = false;
  bool write_failed_ = false;
  bool read_ended_ = false;
  bool closing_ = false;
  bool writes_done_started_ = false;
  bool writes_done_in_flight_ = false;
  bool hold_released_ = false;
  bool user_closed_ = false;             // close(), drain()'s end, cancel() or ~Client
  bool graceful_ = false;                // ... and it was close() or a drain
  bool draining_ = false;
  bool cancelled_registration_ = false;  // close() cancelled an attempt still registering
  bool ever_registered_ = false;
  int failed_attempts_ = 0;
  std::uint64_t attempt_id_ = 0;     // counts stream attempts, so a timer knows its own
  bool attempt_timed_out_ = false;   // registration_timeout cancelled this attempt
  grpc::Status refusal_;             // how the latest unregistered attempt ended, never OK
  grpc::Status last_failure_;        // the failure the reconnect policy is waiting out
  detail::RetryNotes retry_notes_;   // what waiting has logged
  std::optional<std::string> retry_note_;  // a log line for schedule_reconnect()
  bool finished_ = false;
  grpc::Status final_status_;
};

/// The service type users name (ChatService, RpcService and HttpService derive from it).
using Service = BasicService<>;

#if defined(ENSEMBLE_SEPARATE_COMPILATION)
/// Compiled once, in the file that includes <ensemble/separate_compilation.hpp>.
extern template class BasicService<void>;
#endif

/// A concrete service type's handlers in two forms: the event alone, as BasicService takes
/// them, or the service and the event, so that a handler replies through the service it is
/// given instead of a captured pointer (a captured shared_ptr would be a cycle):
///
///     bot->on_chat([](ensemble::ChatService& self, const ensemble::ChatMessage& m) {
///       self.send_message(m.from_addr, "echo: " + m.text);
///     });
///
/// `self` is valid for the whole turn. Each form returns the concrete type, for chaining.
template <class Self>
class ServiceOf : public Service {
 public:
  /// BasicService::on_chat(), with a handler of either form:
  /// void(const ChatMessage&) or void(Self&, const ChatMessage&).
  template <class F>
  Self& on_chat(F&& handler) {
    Service::on_chat(bind<const ChatMessage&>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_connection_request(), with a handler of either form:
  /// void(const ConnectionRequest&) or void(Self&, const ConnectionRequest&).
  template <class F>
  Self& on_connection_request(F&& handler) {
    Service::on_connection_request(bind<const ConnectionRequest&>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_peer_introduction(), with a handler of either form:
  /// void(const PeerIntroduction&) or void(Self&, const PeerIntroduction&).
  template <class F>
  Self& on_peer_introduction(F&& handler) {
    Service::on_peer_introduction(bind<const PeerIntroduction&>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_unknown(), with a handler of either form:
  /// void(const UnknownEvent&) or void(Self&, const UnknownEvent&).
  template <class F>
  Self& on_unknown(F&& handler) {
    Service::on_unknown(bind<const UnknownEvent&>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_error(), with a handler of either form:
  /// void(const ServiceError&) or void(Self&, const ServiceError&).
  template <class F>
  Self& on_error(F&& handler) {
    Service::on_error(bind<const ServiceError&>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_unsent(), with a handler of either form:
  /// void(const UnsentAction&) or void(Self&, const UnsentAction&).
  template <class F>
  Self& on_unsent(F&& handler) {
    Service::on_unsent(bind<const UnsentAction&>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_state(), with a handler of either form:
  /// void(ServiceState) or void(Self&, ServiceState).
  template <class F>
  Self& on_state(F&& handler) {
    Service::on_state(bind<ServiceState>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_closed(), with a handler of either form:
  /// void(const grpc::Status&) or void(Self&, const grpc::Status&).
  template <class F>
  Self& on_closed(F&& handler) {
    Service::on_closed(bind<const grpc::Status&>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_events_dropped(), with a handler of either form:
  /// void(std::uint64_t) or void(Self&, std::uint64_t).
  template <class F>
  Self& on_events_dropped(F&& handler) {
    Service::on_events_dropped(bind<std::uint64_t>(std::forward<F>(handler)));
    return self();
  }
  /// BasicService::on_handler_exception(), with a handler of either form:
  /// void(std::exception_ptr) or void(Self&, std::exception_ptr).
  template <class F>
  Self& on_handler_exception(F&& handler) {
    Service::on_handler_exception(bind<std::exception_ptr>(std::forward<F>(handler)));
    return self();
  }

 protected:
  // The concrete service types' plumbing, not API: left out of the reference.
  /// @cond ENSEMBLE_INTERNAL
  using Service::Service;

  Self& self() noexcept { return static_cast<Self&>(*this); }

  // A handler of either form as the one-argument function the service stores.
  template <class Arg, class F>
  std::function<void(Arg)> bind(F&& handler) {
    using Fn = std::decay_t<F>;
    if constexpr (std::is_invocable_v<Fn&, Self&, Arg>) {
      return [service = &self(), f = Fn(std::forward<F>(handler))](Arg value) mutable { f(*service, value); };
    } else {
      static_assert(std::is_invocable_v<Fn&, Arg>,
                    "a handler takes the event, or the service and the event: "
                    "void(const Event&) or void(Service&, const Event&)");
      return std::function<void(Arg)>(std::forward<F>(handler));
    }
  }
  /// @endcond
};

namespace detail {

// The deleter of the shared_ptr users hold: releasing the last copy ends the stream.
struct ServiceReleaser {
  void operator()(Service* service) const { service->release_from_owner(); }
};

template <class S, class... Args>
std::shared_ptr<S> make_service(Args&&... args) {
  return std::shared_ptr<S>(new S(std::forward<Args>(args)...), ServiceReleaser{});
}

}  // namespace detail
}  // namespace ensemble

// The private members' bodies: the reactor itself.
#include <ensemble/detail/service_reactor.hpp>
