// The reactor half of Service (service.hpp): the bodies of BasicService's private members,
// where the stream is read, events are queued and delivered, actions are written, the
// registration is retried and the service ends. service.hpp declares them and includes this
// file at its end; service.hpp is the header to include.
//
// The read loop is OnReadDone() just below; the write queue is OnWriteDone(); the one
// ending is OnDone() -> finish() -> end().
#pragma once

#include <ensemble/service.hpp>

namespace ensemble {

template <class Unused>
void BasicService<Unused>::OnReadDone(bool ok) {
  detail::CallbackScope scope(this);
  if (!ok) {
    // The daemon ended the stream (or it broke). Nothing more will be written; whatever
    // is still queued is reported when the stream finishes.
    bool release = false;
    {
      std::lock_guard lock(mu_);
      read_ended_ = true;
      release = release_hold_locked();
    }
    if (release) RemoveHold();
    return;
  }
  // Read ahead: decode into the queue and start the next read at once, then run what the
  // queue says is ready (here, or on the executor), so that reading goes on while turns
  // run. Once this thread's turns have proved quick they run before the read starts, as a
  // raw reactor's would: the reply does not wait behind the read (run_before_reading()).
  // incoming_ is free for the next read because the queue holds decoded values.
  bool launch = false;
  switch (incoming_.msg_case()) {
    case api::ServiceServerMessage::kRegistered: on_registered(); break;
    case api::ServiceServerMessage::kEvent:
      launch = accept(std::visit([](auto&& e) -> InboundEvent { return std::move(e); },
                                 detail::decode_event(incoming_.event())));
      break;
    case api::ServiceServerMessage::kError: launch = on_daemon_error(); break;
    case api::ServiceServerMessage::MSG_NOT_SET:  // a newer daemon's message kind: on_unknown
      launch = accept(detail::decode_unknown_message(incoming_));
      break;
  }
  if (launch && queue_->run_before_reading()) {
    queue_->launch();
    StartRead(&incoming_);
    return;
  }
  StartRead(&incoming_);
  if (launch) queue_->launch();
}

template <class Unused>
bool BasicService<Unused>::accept(InboundEvent event) {
  switch (queue_->push(event)) {
    case detail::TurnQueue::Push::queued: return false;
    case detail::TurnQueue::Push::launch: return true;
    case detail::TurnQueue::Push::refused: break;
  }
  if (draining()) answer_unhandled(event);
  return false;
}

template <class Unused>
void BasicService<Unused>::deliver(InboundEvent& event) {
  std::visit(
      [this](const auto& e) {
        using E = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<E, ServiceError>) call(error_handler_, e);
        else if constexpr (std::is_same_v<E, EventsDropped>) call(dropped_handler_, e.count);
        else
          detail::dispatch_value(e,
                                 {chat_handler_, connection_handler_, rpc_handler_,
                                  introduction_handler_, unknown_handler_},
                                 [this](const auto& handler, const auto& value) { this->call(handler, value); });
      },
      event);
}

template <class Unused>
void BasicService<Unused>::unhandled(std::vector<InboundEvent>& events) {
  for (auto& event : events) answer_unhandled(event);
}

template <class Unused>
void BasicService<Unused>::drained() {
  disarm_drain_timer();
  close_stream(/*graceful=*/true);
}

template <class Unused>
void BasicService<Unused>::answer_unhandled(const InboundEvent& event) {
  const auto* request = std::get_if<ConnectionRequest>(&event);
  if (!request) return;
  try {
    reject_connection(request->request_id, std::string(detail::kStreamClosedReason));
  } catch (const Error&) {
  }
}

template <class Unused>
template <class Handler, class Value>
void BasicService<Unused>::call(const Handler& handler, const Value& value) {
  if (!handler) return;
  try {
    handler(value);
  } catch (...) {
    report_handler_exception(std::current_exception());
  }
}

template <class Unused>
void BasicService<Unused>::report_handler_exception(std::exception_ptr error) {
  if (exception_handler_) {
    try {
      exception_handler_(error);
      return;
    } catch (...) {
    }
  }
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    detail::log(LogLevel::error, "a handler of service \"" + name_ + "\" threw: " + detail::escaped_text(e.what()),
                {.service = name_});
  } catch (...) {
    detail::log(LogLevel::error, "a handler of service \"" + name_ + "\" threw", {.service = name_});
  }
}

template <class Unused>
template <class Handler, class Value>
void BasicService<Unused>::notify(const Handler& handler, Value value) {
  if (!handler) return;  // handlers are fixed at start(): none, no turn
  if (queue_->push_notice([this, &handler, value = std::move(value)] { call(handler, value); })) {
    queue_->launch();
  }
}

template <class Unused>
void BasicService<Unused>::on_registered() {
  std::optional<std::promise<void>> registration;
  bool again = false;
  {
    std::lock_guard lock(mu_);
    // Too late: the deadline already cancelled this attempt, which ends DEADLINE_EXCEEDED.
    if (attempt_timed_out_) return;
    address_ = incoming_.registered().address();
    onion_ = incoming_.registered().onion();
    state_ = ServiceState::registered;
    again = ever_registered_;
    ever_registered_ = true;
    failed_attempts_ = 0;
    registration.swap(registration_);
    changed_.notify_all();
  }
  detail::log(LogLevel::info,
              "service \"" + name_ + "\" registered " + (again ? "again, after a reconnect, " : "") +
                  "as " + incoming_.registered().address(),
              {.service = name_, .call = "RegisterService"});
  disarm_registration_timer();
  if (registration) registration->set_value();
  notify_state(ServiceState::registered);
}

template <class Unused>
bool BasicService<Unused>::on_daemon_error() {
  {
    std::lock_guard lock(mu_);
    if (state_ == ServiceState::registering) {
      // The daemon explains a refused manifest here, then ends the call with a status.
      registration_error_ = incoming_.error().message();
      return false;
    }
  }
  return accept(detail::decode_error(incoming_.error()));
}

template <class Unused>
void BasicService<Unused>::OnWriteDone(bool ok) {
  detail::CallbackScope scope(this);
  bool start_write = false;
  bool start_writes_done = false;
  bool release = false;
  {
    std::lock_guard lock(mu_);
    // By now gRPC has serialized the manifest; the copy written need not hold the seed
    // until the next action replaces it.
    wipe_keypair_seed(outgoing_);
    if (!ok) {
      write_failed_ = true;
      if (!outgoing_.has_manifest()) unsent_.push_back(std::move(outgoing_));
    } else if (!outgoing_.has_manifest()) {
      actions_written_.fetch_add(1, std::memory_order_relaxed);
    }
    if (ok && !read_ended_ && !pending_.empty()) {
      outgoing_ = std::move(pending_.front());
      pending_.pop_front();
      start_write = true;
    } else {
      write_in_flight_ = false;
      if (closing_ && !read_ended_ && !write_failed_) start_writes_done = begin_writes_done_locked();
      release = release_hold_locked();
    }
    changed_.notify_all();
  }
  if (start_write) StartWrite(&outgoing_);
  if (start_writes_done) StartWritesDone();
  if (release) RemoveHold();
}

template <class Unused>
void BasicService<Unused>::OnWritesDoneDone(bool /*ok*/) {
  detail::CallbackScope scope(this);
  bool release = false;
  {
    std::lock_guard lock(mu_);
    writes_done_in_flight_ = false;
    release = release_hold_locked();
  }
  if (release) RemoveHold();
}

template <class Unused>
void BasicService<Unused>::OnDone(const grpc::Status& status) {
  detail::CallbackScope scope(this);
  disarm_registration_timer();
  std::vector<api::ServiceClientMessage> unsent;
  bool reconnect = false;
  grpc::Status final_status = status;
  grpc::Status refusal = status;
  {
    std::lock_guard lock(mu_);
    attempt_active_ = false;
    unsent = std::move(unsent_);
    unsent_.clear();
    for (auto& m : pending_) unsent.push_back(std::move(m));
    pending_.clear();
    const bool was_registered = state_ == ServiceState::registered;
    if (attempt_timed_out_) {
      final_status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                  "no `registered` from the daemon within " +
                                      std::to_string(options_.registration_timeout.count()) +
                                      " ms (ServiceOptions::registration_timeout)");
    } else if (!status.ok() && status.error_message().empty() && !registration_error_.empty()) {
      final_status = grpc::Status(status.error_code(), registration_error_);
    }
    // A registration that did not succeed never reports OK, even when the server ends the
    // call with OK after its error{message} (mock servers do) or without a word. wait()
    // still says OK when it was the user who closed the stream.
    if (!was_registered && status.ok()) {
      refusal = grpc::Status(grpc::StatusCode::UNKNOWN,
                             registration_error_.empty()
                                 ? "the daemon ended the stream before registering the service"
                                 : registration_error_);
      if (!user_closed_) final_status = refusal;
    }
    if (!was_registered) {
      ++failed_attempts_;
      refusal_ = final_status.ok() ? refusal : final_status;  // for start(), if this was the last attempt
    }
    // close() while registering cancelled the attempt itself: a graceful end that needed
    // nothing from the daemon.
    if (cancelled_registration_) {
      refusal_ = closed_before_registered();
      final_status = graceful_ ? grpc::Status::OK : refusal_;
    }
    reconnect = !user_closed_ && !draining_ && should_retry_locked(final_status, was_registered);
    if (reconnect) state_ = ServiceState::reconnecting;
    changed_.notify_all();
  }
  report_unsent(unsent, final_status);
  if (reconnect) {
    notify_state(ServiceState::reconnecting);
    schedule_reconnect();
    return;
  }
  finish(final_status);
}

template <class Unused>
auto BasicService<Unused>::closed_before_registered() const -> grpc::Status {
  return grpc::Status(grpc::StatusCode::CANCELLED,
                      std::string(graceful_ ? "close()" : "cancel()") + " was called before the daemon registered service \"" +
                          name_ + "\"");
}

template <class Unused>
void BasicService<Unused>::finish(const grpc::Status& status) {
  disarm_drain_timer();
  std::optional<std::promise<void>> registration;
  grpc::Status registration_failure;
  {
    std::lock_guard lock(mu_);
    state_ = ServiceState::closed;
    registration.swap(registration_);
    registration_failure = status.ok() ? refusal_ : status;
  }
  // start() ends here when no attempt ever registered (a refusal, or giving up waiting).
  // It never reports OK: a user's close() during registration still fails start() with
  // what the last attempt met.
  if (registration) {
    registration->set_exception(std::make_exception_ptr(RegistrationError(name_, registration_failure)));
  }
  end_with(status, /*stream_reference=*/true);
}

template <class Unused>
void BasicService<Unused>::end_without_stream(const grpc::Status& status, bool stream_reference) {
  {
    std::lock_guard lock(mu_);
    state_ = ServiceState::closed;
  }
  end_with(status, stream_reference);
}

template <class Unused>
void BasicService<Unused>::end_with(const grpc::Status& status, bool stream_reference) {
  detail::log(LogLevel::info,
              "service \"" + name_ + "\" ended: " + RpcError::status_name(status.error_code()) +
                  (status.error_message().empty() ? "" : ": " + status.error_message()),
              {.service = name_, .call = "RegisterService"});
  const auto queue = queue_;
  queue->finish(
      [this, &status] {
        call(state_handler_, ServiceState::closed);
        call(closed_handler_, status);
      },
      [this, &status, stream_reference] { end(status, stream_reference); });
}

template <class Unused>
void BasicService<Unused>::end(const grpc::Status& status, bool stream_reference) {
  drop_handlers();
  {
    // The context holds the channel, which the Client releases on its own thread once the
    // registry is idle.
    std::lock_guard context_lock(context_mu_);
    context_.reset();
  }
  // Leave the Client's registry before wait() returns, so that once a service has ended
  // its Client no longer counts it (and a Client being destroyed stops waiting for it).
  conn_->calls.remove(this);
  publish_end(status);
  if (stream_reference) unref();  // may delete this
}

template <class Unused>
void BasicService<Unused>::publish_end(const grpc::Status& status) {
  std::lock_guard lock(mu_);
  final_status_ = status;
  finished_ = true;
  changed_.notify_all();
}

template <class Unused>
void BasicService<Unused>::drop_handlers() noexcept {
  // Moved out and destroyed here: a handler's captures may own what the user frees as
  // soon as the end is published. The stop callbacks go too (a std::stop_callback being
  // destroyed waits for its callback, which never waits for the end).
  std::vector<std::unique_ptr<std::stop_callback<StopAction>>> stops;
  {
    std::lock_guard lock(mu_);
    stops = std::move(stop_callbacks_);
  }
  stops.clear();
  auto chat = std::move(chat_handler_);
  auto connection = std::move(connection_handler_);
  auto introduction = std::move(introduction_handler_);
  auto unknown = std::move(unknown_handler_);
  auto error = std::move(error_handler_);
  auto unsent = std::move(unsent_handler_);
  auto state = std::move(state_handler_);
  auto closed = std::move(closed_handler_);
  auto exception = std::move(exception_handler_);
  auto dropped = std::move(dropped_handler_);
  auto rpc = std::move(rpc_handler_);
}

template <class Unused>
void BasicService<Unused>::report_unsent(std::vector<api::ServiceClientMessage>& unsent, const grpc::Status& why) {
  for (auto& m : unsent) {
    UnsentAction a{UnsentAction::Kind::send_message, {}, why};
    switch (m.msg_case()) {
      case api::ServiceClientMessage::kSendMessage: a.target = m.send_message().to_addr(); break;
      case api::ServiceClientMessage::kAccept:
        a.kind = UnsentAction::Kind::accept;
        a.target = m.accept().request_id();
        break;
      case api::ServiceClientMessage::kReject:
        a.kind = UnsentAction::Kind::reject;
        a.target = m.reject().request_id();
        break;
      case api::ServiceClientMessage::kSendBytes:
        a.kind = UnsentAction::Kind::send_bytes;
        a.target = m.send_bytes().to_addr();
        break;
      case api::ServiceClientMessage::kIntroducePeers:
        a.kind = UnsentAction::Kind::introduce_peers;
        a.target = m.introduce_peers().to_addr();
        break;
      default: continue;
    }
    actions_unsent_.fetch_add(1, std::memory_order_relaxed);
    notify(unsent_handler_, std::move(a));
  }
}

template <class Unused>
auto BasicService<Unused>::prepare_attempt_locked() -> std::uint64_t {
  ++attempt_id_;
  attempt_timed_out_ = false;
  cancelled_registration_ = false;
  {
    std::lock_guard context_lock(context_mu_);
    context_ = std::make_unique<grpc::ClientContext>();
    context_attempt_ = attempt_id_;
    if (!conn_->service_token.empty()) {
      context_->AddMetadata(std::string(kServiceTokenHeader), conn_->service_token);
    }
  }
  state_ = ServiceState::registering;
  attempt_active_ = true;
  read_ended_ = false;
  write_failed_ = false;
  closing_ = false;
  writes_done_started_ = false;
  writes_done_in_flight_ = false;
  hold_released_ = false;
  registration_error_.clear();
  write_in_flight_ = true;  // the manifest
  outgoing_ = manifest_;
  return attempt_id_;
}

template <class Unused>
bool BasicService<Unused>::should_retry_locked(grpc::Status& status, bool was_registered) {
  const auto& policy = options_.reconnect;
  if (policy.max_attempts != 0 && failed_attempts_ >= policy.max_attempts) return false;
  const auto code = status.error_code();
  const bool not_ready = code == grpc::StatusCode::UNAVAILABLE ||
                         (code == grpc::StatusCode::UNIMPLEMENTED &&
                          status.error_message().find("service registry") != std::string::npos);
  bool retry = false;
  if (ever_registered_) {
    retry = policy.enabled &&
            (code == grpc::StatusCode::UNAVAILABLE ||
             (!was_registered && (not_ready || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
                                  code == grpc::StatusCode::ALREADY_EXISTS)));
  } else {
    retry = options_.wait_for_daemon && not_ready;
  }
  if (!retry) return false;
  const detail::FailureCause cause = detail::classify_failure(status, conn_->socket_file);
  if (cause.permanent) {
    status = detail::with_cause(status, cause);
    return false;
  }
  last_failure_ = status;
  retry_note_ = retry_notes_.note("service \"" + name_ + "\"",
                                  (ever_registered_ ? "reconnecting: " : "waiting for the daemon: ") + cause.why,
                                  std::max(failed_attempts_, 1));
  return true;
}

template <class Unused>
void BasicService<Unused>::start_attempt(std::uint64_t attempt) {
  conn_->stub->async()->RegisterService(context_.get(), this);
  StartWrite(&outgoing_);
  StartRead(&incoming_);
  AddHold();
  // Before StartCall, so the attempt's OnDone (which disarms it) cannot come first.
  arm_registration_timer(attempt);
  StartCall();
}

template <class Unused>
void BasicService<Unused>::arm_registration_timer(std::uint64_t attempt) {
  const auto deadline = detail::system_deadline(options_.registration_timeout);
  if (options_.registration_timeout.count() <= 0 || !deadline) return;
  auto alarm = std::make_unique<grpc::Alarm>();
  refs_.fetch_add(1, std::memory_order_relaxed);
  alarm->Set(*deadline, [this, attempt](bool fired) {
    detail::CallbackScope scope(this);
    if (fired) on_registration_timeout(attempt);
    unref();
  });
  std::unique_ptr<grpc::Alarm> previous;
  {
    std::lock_guard lock(mu_);
    previous = std::exchange(registration_alarm_, std::move(alarm));
  }
  // `previous` belonged to an attempt already decided; dropping it cancels it.
}

template <class Unused>
void BasicService<Unused>::disarm_registration_timer() {
  std::unique_ptr<grpc::Alarm> alarm;
  {
    std::lock_guard lock(mu_);
    alarm = std::move(registration_alarm_);
  }
  if (alarm) alarm->Cancel();  // its callback runs with fired == false and lets go
}

template <class Unused>
void BasicService<Unused>::on_registration_timeout(std::uint64_t attempt) {
  {
    std::lock_guard lock(mu_);
    if (attempt_id_ != attempt || state_ != ServiceState::registering || !attempt_active_) return;
    attempt_timed_out_ = true;
  }
  // Outside mu_, as in cancel_call(); context_attempt_ makes sure a newer attempt's
  // context is never the one cancelled.
  std::lock_guard context_lock(context_mu_);
  if (context_ && context_attempt_ == attempt) context_->TryCancel();
}

template <class Unused>
void BasicService<Unused>::arm_drain_timer(std::chrono::milliseconds grace) {
  const auto deadline = detail::system_deadline(grace);
  if (!deadline) return;  // too long for the clock: no deadline
  auto alarm = std::make_unique<grpc::Alarm>();
  {
    std::lock_guard lock(mu_);
    if (user_closed_ || finished_) return;  // the drain is already over
    refs_.fetch_add(1, std::memory_order_relaxed);
    alarm->Set(*deadline, [this](bool fired) {
      detail::CallbackScope scope(this);
      if (fired) queue_->expire_drain();
      unref();
    });
    drain_alarm_ = std::move(alarm);
  }
}

template <class Unused>
void BasicService<Unused>::disarm_drain_timer() {
  std::unique_ptr<grpc::Alarm> alarm;
  {
    std::lock_guard lock(mu_);
    alarm = std::move(drain_alarm_);
  }
  if (alarm) alarm->Cancel();
}

template <class Unused>
void BasicService<Unused>::schedule_reconnect() {
  std::optional<std::string> note;
  {
    std::lock_guard lock(mu_);
    note = std::exchange(retry_note_, std::nullopt);
  }
  if (note) detail::log(LogLevel::warning, *note, {.service = name_});
  refs_.fetch_add(1, std::memory_order_relaxed);
  const auto delay = next_backoff();
  {
    std::lock_guard alarm_lock(alarm_mu_);
    backoff_alarm_ = std::make_shared<grpc::Alarm>();
    backoff_alarm_->Set(std::chrono::system_clock::now() + delay, [this](bool /*fired*/) {
      after_backoff();
      unref();
    });
  }
  // A close() or cancel() that came after OnDone chose to reconnect but before the alarm
  // existed had nothing to cancel: cancel it now so it gives up at once, not after `delay`.
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    closed = user_closed_;
  }
  if (closed) cancel_backoff();
}

template <class Unused>
void BasicService<Unused>::cancel_backoff() {
  std::shared_ptr<grpc::Alarm> alarm;
  {
    std::lock_guard alarm_lock(alarm_mu_);
    alarm = backoff_alarm_;
  }
  if (alarm) alarm->Cancel();
}

template <class Unused>
void BasicService<Unused>::after_backoff() {
  detail::CallbackScope scope(this);
  std::optional<grpc::Status> give_up;
  std::uint64_t attempt = 0;
  {
    std::lock_guard lock(mu_);
    if (user_closed_) {
      // start() (when still waiting) says what stopped it and what the daemon said last.
      std::string why = "closed while waiting to register service \"" + name_ + "\" again";
      // The failure being waited out (a lost stream's too), else the last refusal.
      const grpc::Status& last = !last_failure_.ok() ? last_failure_ : refusal_;
      if (!last.ok()) {
        why += " (the last attempt: " + RpcError::status_name(last.error_code()) + ": " +
               last.error_message() + ")";
      }
      refusal_ = grpc::Status(grpc::StatusCode::CANCELLED, why);
      give_up = graceful_ ? grpc::Status::OK : refusal_;
    } else {
      attempt = prepare_attempt_locked();
    }
  }
  if (give_up) {
    finish(*give_up);
  } else {
    notify_state(ServiceState::registering);
    start_attempt(attempt);
  }
}

template <class Unused>
auto BasicService<Unused>::next_backoff() -> std::chrono::milliseconds {
  const auto& p = options_.reconnect;
  double delay = static_cast<double>(p.initial_backoff.count());
  for (int i = 1; i < failed_attempts_ && delay < static_cast<double>(p.max_backoff.count()); ++i) {
    delay *= p.multiplier;
  }
  // At most kForever (100 years), so that no duration overflows the clock.
  delay = std::min({delay, static_cast<double>(p.max_backoff.count()), static_cast<double>(detail::kForever.count())});
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_real_distribution<double> factor(1.0 - p.jitter, 1.0 + p.jitter);
  return std::chrono::milliseconds(static_cast<long long>(delay * factor(rng)));
}

template <class Unused>
void BasicService<Unused>::close_stream(bool graceful) {
  bool never_started = false;
  bool start_writes_done = false;
  bool stop_backoff = false;
  bool cancel_attempt = false;
  {
    std::lock_guard lock(mu_);
    if (state_ == ServiceState::idle) {
      state_ = ServiceState::closed;  // start() refuses from now on
      never_started = true;
    } else if (state_ == ServiceState::closed || user_closed_) {
      return;
    } else {
      user_closed_ = true;
      graceful_ = graceful;
      stop_backoff = state_ == ServiceState::reconnecting;
      if (attempt_active_ && state_ == ServiceState::registering) {
        cancelled_registration_ = true;
        cancel_attempt = true;
      } else if (attempt_active_ && !read_ended_ && !writes_done_started_) {
        closing_ = true;
        if (!write_in_flight_) start_writes_done = begin_writes_done_locked();
      }
    }
  }
  if (never_started) {
    end_without_stream(grpc::Status::OK, /*stream_reference=*/false);
    return;
  }
  if (stop_backoff) cancel_backoff();  // the backoff sees user_closed_ and gives up
  if (cancel_attempt) {
    std::lock_guard context_lock(context_mu_);
    if (context_) context_->TryCancel();
  }
  if (start_writes_done) StartWritesDone();
}

template <class Unused>
void BasicService<Unused>::cancel_call() noexcept {
  bool never_started = false;
  bool active = false;
  bool reconnecting = false;
  {
    std::lock_guard lock(mu_);
    if (state_ == ServiceState::idle) {
      state_ = ServiceState::closed;  // start() refuses from now on
      never_started = true;
    }
    user_closed_ = true;
    graceful_ = false;
    active = attempt_active_;
    reconnecting = state_ == ServiceState::reconnecting;
  }
  if (never_started) {
    end_without_stream(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled before start()"),
                       /*stream_reference=*/false);
    return;
  }
  if (reconnecting) cancel_backoff();
  queue_->discard();  // events read ahead are not delivered after a cancel, in either mode
  // context_mu_ keeps the context from being replaced by a reconnect, or dropped by
  // end(), while we cancel it. It is the innermost lock (nothing is taken under it),
  // and TryCancel runs no reaction inline (gRPC's callback tags are never inlined).
  std::lock_guard context_lock(context_mu_);
  if (active && context_) context_->TryCancel();
}

template <class Unused>
void BasicService<Unused>::refuse_blocking(const char* what) const {
  if (detail::inside_callback_of(this)) {
    throw Error(std::string(what) + " called from inside a callback of service \"" + name_ +
                "\": the service cannot end until that callback returns. Call close(), drain() "
                "or cancel() there and wait from another thread");
  }
  std::lock_guard lock(mu_);
  if (state_ == ServiceState::idle) {
    throw Error(std::string(what) + " on service \"" + name_ +
                "\" before start(): nothing would end it");
  }
}

template <class Unused>
void BasicService<Unused>::release_from_owner() {
  if (state() != ServiceState::idle) {
    cancel_call();
    if (!detail::on_callback_thread()) {
      std::unique_lock lock(mu_);
      changed_.wait(lock, [&] { return finished_; });
    }
  }
  unref();
}

template <class Unused>
void BasicService<Unused>::unref() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

template <class Unused>
bool BasicService<Unused>::accepting_locked() const {
  return state_ == ServiceState::registered && attempt_active_ && !read_ended_ && !write_failed_ &&
         !closing_ && !user_closed_;
}

template <class Unused>
bool BasicService<Unused>::draining() const {
  std::lock_guard lock(mu_);
  return draining_;
}

template <class Unused>
auto BasicService<Unused>::describe_locked() const -> std::string {
  switch (state_) {
    case ServiceState::idle: return "not started";
    case ServiceState::registering: return "still registering";
    case ServiceState::reconnecting: return "reconnecting after losing the daemon";
    case ServiceState::closed: return "closed";
    case ServiceState::registered: break;
  }
  return user_closed_ ? "closing" : "ending (the stream is no longer writable)";
}

template <class Unused>
bool BasicService<Unused>::begin_writes_done_locked() {
  writes_done_started_ = true;
  writes_done_in_flight_ = true;
  return true;
}

template <class Unused>
bool BasicService<Unused>::release_hold_locked() {
  if (hold_released_ || !read_ended_ || write_in_flight_ || writes_done_in_flight_) return false;
  hold_released_ = true;
  return true;
}

template <class Unused>
template <class Predicate>
bool BasicService<Unused>::wait_up_to(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds timeout, Predicate ready) {
  return detail::wait_up_to(changed_, lock, timeout, std::move(ready));
}

template <class Unused>
auto BasicService<Unused>::connect_as_request_for(const std::string& service, std::string address) -> api::ConnectAsRequest {
  api::ConnectAsRequest request;
  request.set_service(service);
  request.set_address(std::move(address));
  return request;
}

template <class Unused>
auto BasicService<Unused>::connect_as_request(std::string address) const -> api::ConnectAsRequest {
  require_valid_address(address, "connect_peer address");
  return connect_as_request_for(name_, std::move(address));
}

}  // namespace ensemble
