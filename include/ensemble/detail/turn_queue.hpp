// The turns of one service: every callback the service makes (its event handlers and its own
// notices: on_state, on_unsent, on_closed, loss reports) is a turn, and this queue decides
// when and where each turn runs. Service (service.hpp) owns one through a shared_ptr so that
// a task posted to the user's executor can outlive the service without touching it.
//
// The rule it keeps (README, "Where callbacks run"):
//   - Turns run on the executor when the service has one, otherwise on the thread that made
//     them ready (a gRPC thread for what the stream does, the caller's for start()'s first
//     `registering` and for an end with no stream).
//   - An event from a peer (from_addr; from_service_addr for an introduction) is keyed by
//     that peer. With max_in_flight > 1, turns of different peers run at the same time, up to
//     max_in_flight; a peer's own turns run one at a time, in the daemon's order.
//   - Everything else runs alone: a turn with no peer waits until every turn queued before it
//     has returned, and no turn queued after it starts until it has returned. With
//     max_in_flight == 1 (the default) that is every turn: one at a time, in order.
//   - The end (finish()) is the one exception to "on the executor": no turn starts after it
//     begins; it waits for the turns running, then runs the notices still queued and the last
//     ones on the ending thread itself, so that an executor that is busy, paused or gone
//     cannot hold up the end of a service (or of its Client).
//
// Why a read-ahead queue at all: the daemon keeps 256 events per stream and drops the oldest
// silently. Reading ahead while a handler works moves that loss here, where it is bounded by
// `capacity` and `max_bytes`, follows the same policy (oldest first) and is counted. Notices
// are never dropped and do not count against the bound.
//
// Every event pushed ends in exactly one of delivered, dropped, discarded or still queued;
// the counts are kept under one lock so that the sum always holds.
#pragma once

#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/deadline.hpp>
#include <ensemble/events.hpp>
#include <ensemble/log.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace ensemble::detail {

// ServiceOptions::executor: runs each task it is given once, on a thread of its choosing.
using Executor = std::function<void(std::function<void()>)>;

// What the queue calls on the service. The service outlives every call: the last one is
// the `end` closure given to TurnQueue::finish(), after which the queue never touches it.
class TurnSink {
 public:
  virtual void deliver(InboundEvent& event) = 0;
  virtual void report_dropped(std::uint64_t count) = 0;
  // Events a drain gave up on while the stream could still answer them (connection requests
  // among them are rejected by the service).
  virtual void unhandled(std::vector<InboundEvent>& events) = 0;
  // A drain is complete: nothing queued, nothing in flight. Called once.
  virtual void drained() = 0;

 protected:
  ~TurnSink() = default;
};

class TurnQueue : public std::enable_shared_from_this<TurnQueue> {
 public:
  struct Limits {
    std::size_t capacity = 8192;                      // queued events
    std::size_t max_bytes = 64u << 20;                // their weight()
    std::size_t max_in_flight = 1;                    // turns running at once
  };

  TurnQueue(Limits limits, Executor executor, TurnSink* sink, const void* owner, std::string name)
      : limits_(limits),
        executor_(std::move(executor)),
        has_executor_(static_cast<bool>(executor_)),
        sink_(sink),
        owner_(owner),
        name_(std::move(name)) {}

  // What an event holds, roughly: its strings and the struct. Enough to bound memory when
  // events are large (an RPC service's payloads), not an exact allocator count.
  static std::size_t weight(const InboundEvent& event) {
    return std::visit(
        [](const auto& e) -> std::size_t {
          using E = std::decay_t<decltype(e)>;
          std::size_t n = sizeof(E);
          if constexpr (std::is_same_v<E, ChatMessage>) n += e.from_addr.size() + e.text.size();
          else if constexpr (std::is_same_v<E, ConnectionRequest>) n += e.request_id.size() + e.from_addr.size();
          else if constexpr (std::is_same_v<E, RpcMessage>) n += e.from_addr.size() + e.payload.size();
          else if constexpr (std::is_same_v<E, PeerIntroduction>)
            n += e.from_service_addr.size() + e.peer_addr.size() + e.session_id.size() + e.role_hint.size() +
                 e.payload.size();
          else if constexpr (std::is_same_v<E, UnknownEvent>) n += e.type.size() + e.payload.size() + e.problem.size();
          else if constexpr (std::is_same_v<E, ServiceError>) n += e.message.size() + e.code.size() + e.from_addr.size();
          return n;
        },
        event);
  }

  // The peer an event belongs to, empty when it has none (it then runs alone).
  static std::string_view peer_of(const InboundEvent& event) noexcept {
    return std::visit(
        [](const auto& e) -> std::string_view {
          using E = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<E, ChatMessage> || std::is_same_v<E, ConnectionRequest> ||
                        std::is_same_v<E, RpcMessage> || std::is_same_v<E, ServiceError>)
            return e.from_addr;
          else if constexpr (std::is_same_v<E, PeerIntroduction>) return e.from_service_addr;
          else return {};
        },
        event);
  }

  // Pull mode: events wait for next() instead of going to the sink. Fixed at start(), before
  // the first event.
  void set_pull(bool pull) {
    std::lock_guard lock(mu_);
    pull_ = pull;
  }
  bool pull() const {
    std::lock_guard lock(mu_);
    return pull_;
  }

  enum class Push {
    queued,   // nothing more to do
    launch,   // queued; the caller must call launch() (after restarting its read)
    refused,  // draining or cancelled: not queued, counted as discarded; `event` is left
              // with the caller, which may still answer it (a connection request)
  };

  // Queues one event, dropping the oldest queued events while it would not fit (in count or
  // bytes; the newest is always kept). Never blocks, never runs user code.
  Push push(InboundEvent& event) {
    const std::size_t w = weight(event);
    std::lock_guard lock(mu_);
    ++received_;
    if (refusing_ || ended_) {
      ++discarded_;
      return Push::refused;
    }
    while (queued_events_ > 0 && (queued_events_ >= limits_.capacity || bytes_ + w > limits_.max_bytes)) {
      if (!drop_oldest_locked()) break;
    }
    bytes_ += w;
    ++queued_events_;
    if (pull_) {
      pulled_.push_back({next_seq_++, std::move(event), w});
      changed_.notify_all();
      return Push::queued;
    }
    enqueue_event_locked(Entry{next_seq_++, std::move(event), w});
    return wants_runner_locked() ? Push::launch : Push::queued;
  }

  // Queues one of the service's own callbacks (never dropped, runs alone). Returns whether the
  // caller must call launch().
  [[nodiscard]] bool push_notice(std::function<void()> notice) {
    std::lock_guard lock(mu_);
    if (ended_) return false;
    alone_.push_back(Entry{next_seq_++, std::move(notice), 0});
    return wants_runner_locked();
  }

  // Starts the runners the queue wants: on this thread without an executor (it returns when
  // nothing is left to run), as tasks with one. launch() keeps the queue alive while it runs.
  void launch() {
    auto self = shared_from_this();
    std::size_t count = 0;
    bool here = false;
    {
      std::lock_guard lock(mu_);
      count = runners_to_add_locked();
      runners_ += count;
      here = !executor_;
      if (count > 0 && !here) posting_ += 1;
    }
    if (count == 0) return;
    if (here) {
      run_turns();
      return;
    }
    post_runners(count);
  }

  // Whether a reader about to start its next read should run the turns it launches first.
  // Reading while a turn runs is what read-ahead is for, but starting a read ahead of a
  // reply costs the reply about 10 us (measured, bench workload 3: 1.25 x a raw reactor
  // against 1.03), which is all an echo takes. So: only without an executor (the turns
  // would run on the reader's own thread), and only once the event turns have been quick
  // (an average under kQuickTurn, over about the last four). A service starts out as if
  // slow, so a handler that is slow from its first event never holds up reading; one slow
  // turn after a quick run does, once, and puts the service back to reading first.
  bool run_before_reading() const noexcept {
    return !has_executor_ && recent_turn_ns_.load(std::memory_order_relaxed) < kQuickTurn.count();
  }

  // ---- Stopping ----

  // cancel(): what is queued is discarded (counted), now and from now on; nothing of it is
  // answered (the stream is being cancelled; the daemon rejects pending requests itself).
  void discard() {
    std::lock_guard lock(mu_);
    refusing_ = true;
    discard_queued_locked(nullptr);
    changed_.notify_all();
  }

  // drain(): from now on events are refused (push() says so); what is queued still runs (or
  // waits for next()). Calls the sink's drained() when nothing is queued or in flight.
  void start_drain() {
    bool done = false;
    {
      std::lock_guard lock(mu_);
      refusing_ = true;
      draining_ = true;
      done = drained_now_locked();
    }
    if (done) sink_->drained();
  }

  // The drain's deadline: what is still queued is discarded (counted) and handed to the
  // sink's unhandled(), so the service can answer the connection requests among it.
  void expire_drain() {
    std::vector<InboundEvent> left;
    bool done = false;
    {
      std::lock_guard lock(mu_);
      if (!draining_ || ended_) return;
      discard_queued_locked(&left);
      done = drained_now_locked();
      changed_.notify_all();
    }
    if (!left.empty()) sink_->unhandled(left);
    if (done) sink_->drained();
  }

  // The service ends, on the thread that ends it. From now on no turn starts (runners stop
  // after the turn they are in) and nothing is queued; handler mode discards the events still
  // queued (counted), pull mode keeps them for next(), which says `ended` once they are gone.
  // Waits for the turns running and for any thread inside the executor on the queue's
  // behalf, destroys the executor, then runs here, in order: the notices still queued,
  // `last` and `end`. `end` may destroy the sink. Once; later calls do nothing.
  void finish(std::function<void()> last, std::function<void()> end) {
    auto self = shared_from_this();
    Executor executor;
    std::deque<Entry> left;
    {
      std::unique_lock lock(mu_);
      if (ended_) return;
      ended_ = true;
      refusing_ = true;
      shut_ = true;
      if (!pull_) discard_queued_locked(nullptr);
      changed_.notify_all();
      // A thread inside one of our turns (an executor that runs tasks inline, a turn that
      // ends the service) does not wait for itself.
      const std::size_t own = turn_of_this_thread() == this ? 1 : 0;
      changed_.wait(lock, [&] { return in_turn_ <= own && posting_ == 0; });
      left = std::move(alone_);
      alone_.clear();
      executor = std::exchange(executor_, nullptr);
    }
    executor = nullptr;  // the user's callable goes before the end is published
    CallbackScope scope(owner_);
    for (Entry& entry : left) {
      if (auto* notice = std::get_if<Notice>(&entry.item)) (*notice)();
    }
    if (last) last();
    if (end) end();
  }

  // ---- Pull mode ----

  enum class Pull { event, timeout, ended };
  // The next event, or a coalesced EventsDropped when events were lost before it. A thread
  // that took an event holds a turn until it calls next() again (what a drain waits for).
  Pull next(std::chrono::milliseconds timeout, std::optional<InboundEvent>& out) {
    std::unique_lock lock(mu_);
    const auto me = std::this_thread::get_id();
    holders_.erase(std::remove(holders_.begin(), holders_.end(), me), holders_.end());
    const auto ready = [&] { return dropped_unreported_ > 0 || !pulled_.empty() || shut_; };
    if (!ready()) {
      // Coming back for more ends this thread's turn, which may be what a drain waits for.
      if (drained_now_locked()) {
        lock.unlock();
        sink_->drained();
        lock.lock();
      }
      wait_up_to(changed_, lock, timeout, ready);
    }
    if (dropped_unreported_ > 0) {
      out = EventsDropped{std::exchange(dropped_unreported_, 0)};
      return Pull::event;
    }
    if (!pulled_.empty()) {
      Entry entry = std::move(pulled_.front());
      pulled_.pop_front();
      --queued_events_;
      bytes_ -= entry.weight;
      ++delivered_;
      out = std::move(std::get<InboundEvent>(entry.item));
      holders_.push_back(me);
      return Pull::event;
    }
    return shut_ ? Pull::ended : Pull::timeout;
  }

  // ---- Counts ----
  struct Counts {
    std::uint64_t received = 0, delivered = 0, dropped = 0, discarded = 0;
    std::size_t queued = 0;
  };
  Counts counts() const {
    std::lock_guard lock(mu_);
    return {received_, delivered_, dropped_total_, discarded_, queued_events_};
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return queued_events_;
  }

 private:
  struct DropReport {
    std::uint64_t count;
  };
  using Notice = std::function<void()>;
  using Item = std::variant<InboundEvent, Notice, DropReport>;
  struct Entry {
    std::uint64_t seq;
    Item item;
    std::size_t weight;  // of an event; 0 for the rest
  };
  struct PeerQueue {
    std::string_view key;  // its own key in peers_
    std::deque<Entry> queued;
    bool busy = false;     // one of its turns is running
  };
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using Head = std::pair<std::uint64_t, PeerQueue*>;
  static constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();
  static constexpr std::chrono::nanoseconds kQuickTurn{50'000};

  // Places a queued event: with its peer when turns may overlap; otherwise (and for events
  // with no peer) among the entries that run alone, so that with one turn in flight no peer
  // is ever looked up.
  void enqueue_event_locked(Entry entry) {
    const auto peer = limits_.max_in_flight > 1 ? peer_of(std::get<InboundEvent>(entry.item)) : std::string_view{};
    if (peer.empty()) {
      alone_.push_back(std::move(entry));
      return;
    }
    auto it = peers_.find(peer);
    if (it == peers_.end()) {
      it = peers_.emplace(std::string(peer), PeerQueue{}).first;
      it->second.key = it->first;  // map nodes do not move
    }
    PeerQueue& q = it->second;
    if (q.queued.empty()) {
      heads_.insert({entry.seq, &q});
      if (!q.busy) ready_.insert({entry.seq, &q});
    }
    q.queued.push_back(std::move(entry));
  }

  // The oldest queued event goes (never a notice): it is the head of a peer or the first
  // event among the entries that run alone.
  bool drop_oldest_locked() {
    if (pull_) {
      if (pulled_.empty()) return false;
      bytes_ -= pulled_.front().weight;
      pulled_.pop_front();
      count_drop_locked();
      return true;
    }
    auto alone_event = std::find_if(alone_.begin(), alone_.end(),
                                    [](const Entry& e) { return std::holds_alternative<InboundEvent>(e.item); });
    const std::uint64_t alone_seq = alone_event == alone_.end() ? kNone : alone_event->seq;
    const std::uint64_t peer_seq = heads_.empty() ? kNone : heads_.begin()->first;
    if (alone_seq == kNone && peer_seq == kNone) return false;
    std::size_t w = 0;
    if (alone_seq < peer_seq) {
      w = alone_event->weight;
      alone_.erase(alone_event);
    } else {
      PeerQueue* q = heads_.begin()->second;
      w = q->queued.front().weight;
      pop_head_locked(*q);
      forget_if_idle_locked(*q);
    }
    bytes_ -= w;
    count_drop_locked();
    return true;
  }
  void count_drop_locked() {
    --queued_events_;
    ++dropped_total_;
    ++dropped_unreported_;
  }

  // Removes a peer's head entry and keeps heads_/ready_ (and peers_) in step.
  Entry pop_head_locked(PeerQueue& q) {
    heads_.erase({q.queued.front().seq, &q});
    if (!q.busy) ready_.erase({q.queued.front().seq, &q});
    Entry entry = std::move(q.queued.front());
    q.queued.pop_front();
    if (!q.queued.empty()) {
      heads_.insert({q.queued.front().seq, &q});
      if (!q.busy) ready_.insert({q.queued.front().seq, &q});
    }
    return entry;
  }

  // A peer with nothing queued and nothing running is forgotten, so that a bot that has
  // heard from a million peers keeps no state for them.
  void forget_if_idle_locked(PeerQueue& q) {
    if (q.busy || !q.queued.empty()) return;
    peers_.erase(peers_.find(q.key));
  }

  // Every queued event is discarded (counted); notices stay. `out` collects them when the
  // caller will answer them.
  void discard_queued_locked(std::vector<InboundEvent>* out) {
    auto take = [&](Entry& e) {
      ++discarded_;
      if (out) out->push_back(std::move(std::get<InboundEvent>(e.item)));
    };
    std::deque<Entry> notices;
    for (Entry& e : alone_) {
      if (std::holds_alternative<InboundEvent>(e.item)) take(e);
      else notices.push_back(std::move(e));
    }
    alone_ = std::move(notices);
    for (auto& [_, q] : peers_) {
      for (Entry& e : q.queued) take(e);
      q.queued.clear();
    }
    for (auto it = peers_.begin(); it != peers_.end();) it = it->second.busy ? std::next(it) : peers_.erase(it);
    heads_.clear();
    ready_.clear();
    for (Entry& e : pulled_) take(e);
    pulled_.clear();
    queued_events_ = 0;
    bytes_ = 0;
  }

  // ---- Choosing the next turn ----

  struct Taken {
    Item item;
    PeerQueue* peer = nullptr;  // busy while the turn runs; null: it runs alone
  };

  // Whether the front of `alone_` is the oldest entry still waiting (every keyed entry older
  // than it has started).
  bool alone_is_next_locked() const {
    if (alone_.empty()) return false;
    return heads_.empty() || alone_.front().seq < heads_.begin()->first;
  }
  std::uint64_t alone_seq_locked() const { return alone_.empty() ? kNone : alone_.front().seq; }

  // The turn that may start now, taken out of the queue; nullopt when none may.
  std::optional<Taken> take_locked() {
    if (ended_ || alone_running_) return std::nullopt;
    // A loss report stands before everything still queued (the dropped events were older).
    if (dropped_unreported_ > 0 && !pull_) {
      if (in_turn_ > 0) return std::nullopt;
      alone_running_ = true;
      return Taken{DropReport{std::exchange(dropped_unreported_, 0)}};
    }
    if (alone_is_next_locked()) {
      if (in_turn_ > 0) return std::nullopt;
      alone_running_ = true;
      Taken t{std::move(alone_.front().item)};
      const std::size_t w = alone_.front().weight;
      const bool event = std::holds_alternative<InboundEvent>(t.item);
      alone_.pop_front();
      if (event) {
        --queued_events_;
        bytes_ -= w;
        ++delivered_;
      }
      return t;
    }
    if (ready_.empty() || in_turn_ >= limits_.max_in_flight) return std::nullopt;
    if (ready_.begin()->first > alone_seq_locked()) return std::nullopt;
    PeerQueue* q = ready_.begin()->second;
    ready_.erase(ready_.begin());
    q->busy = true;  // before the pop, so that its next head does not become ready
    Entry entry = pop_head_locked(*q);
    --queued_events_;
    bytes_ -= entry.weight;
    ++delivered_;
    return Taken{std::move(entry.item), q};
  }

  // How many turns could start now (at most what may still run at once).
  std::size_t startable_locked() const {
    if (ended_ || alone_running_) return 0;
    if ((dropped_unreported_ > 0 && !pull_) || alone_is_next_locked()) return in_turn_ == 0 ? 1 : 0;
    const std::uint64_t fence = alone_seq_locked();
    const std::size_t room = limits_.max_in_flight > in_turn_ ? limits_.max_in_flight - in_turn_ : 0;
    std::size_t n = 0;
    for (auto it = ready_.begin(); it != ready_.end() && n < room && it->first < fence; ++it) ++n;
    return n;
  }

  // Runners to start so that every startable turn has one, within max_in_flight (one
  // runner at most without an executor: the pushing thread).
  std::size_t runners_to_add_locked() const {
    const std::size_t idle = runners_ - in_turn_;
    const std::size_t want = startable_locked();
    if (want <= idle) return 0;
    const std::size_t cap = executor_ ? limits_.max_in_flight : 1;
    const std::size_t room = cap > runners_ ? cap - runners_ : 0;
    return std::min(want - idle, room);
  }
  bool wants_runner_locked() const { return runners_to_add_locked() > 0; }

  // Drained: nothing queued, nothing running, no pulled event still held.
  bool drained_now_locked() {
    if (!draining_ || drained_reported_ || ended_) return false;
    if (queued_events_ > 0 || in_turn_ > 0 || !holders_.empty()) return false;
    drained_reported_ = true;
    return true;
  }

  // ---- Running turns ----

  // One runner: takes and runs turns until none may start. Several may run at once (one per
  // turn in flight).
  void run_turns() {
    auto self = shared_from_this();
    std::unique_lock lock(mu_);
    for (;;) {
      std::optional<Taken> taken = take_locked();
      if (!taken) break;
      ++in_turn_;
      const std::size_t more = executor_ ? runners_to_add_locked() : 0;
      runners_ += more;
      if (more > 0) posting_ += 1;
      lock.unlock();
      if (more > 0) post_runners(more);
      run_one(*taken);
      lock.lock();
      --in_turn_;
      if (taken->peer) {
        PeerQueue& q = *taken->peer;
        q.busy = false;
        if (!q.queued.empty()) ready_.insert({q.queued.front().seq, &q});
        else forget_if_idle_locked(q);
      } else {
        alone_running_ = false;
      }
      if (ended_) changed_.notify_all();  // finish() waits for the turns running
      if (drained_now_locked()) {
        lock.unlock();
        sink_->drained();
        lock.lock();
      }
    }
    --runners_;
  }

  // The queue whose turn this thread is running, if any.
  static const TurnQueue*& turn_of_this_thread() noexcept {
    static thread_local const TurnQueue* queue = nullptr;
    return queue;
  }

  void run_one(Taken& taken) {
    CallbackScope scope(owner_);
    const TurnQueue* outer = std::exchange(turn_of_this_thread(), this);
    struct Restore {
      const TurnQueue* outer;
      ~Restore() { turn_of_this_thread() = outer; }
    } restore{outer};
    if (auto* event = std::get_if<InboundEvent>(&taken.item)) {
      const auto start = std::chrono::steady_clock::now();
      sink_->deliver(*event);
      // A running average, the newest turn weighing a quarter (run_before_reading); turns
      // racing on several threads only blur it.
      const std::int64_t took =
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
      const std::int64_t average = recent_turn_ns_.load(std::memory_order_relaxed);
      recent_turn_ns_.store(average + (took - average) / 4, std::memory_order_relaxed);
    } else if (auto* notice = std::get_if<Notice>(&taken.item)) {
      (*notice)();
    } else if (auto* report = std::get_if<DropReport>(&taken.item)) {
      sink_->report_dropped(report->count);
    }
  }

  // A task the executor runs once; if it is destroyed without having run (an executor that
  // drops work), the runner runs right there rather than leave the service stalled.
  struct Ticket {
    std::shared_ptr<TurnQueue> queue;
    std::atomic<bool> ran{false};
    explicit Ticket(std::shared_ptr<TurnQueue> q) : queue(std::move(q)) {}
    ~Ticket() {
      if (!ran.load()) queue->run_dropped_task();
    }
  };

  // Posts `count` runners (already counted in runners_, and one posting_ taken by the caller).
  void post_runners(std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      auto ticket = std::make_shared<Ticket>(shared_from_this());
      try {
        executor_([ticket] {
          if (ticket->ran.exchange(true)) return;
          ticket->queue->run_turns();
        });
      } catch (...) {
        // The executor refused the task: run it here rather than lose it.
        if (!ticket->ran.exchange(true)) run_turns();
      }
    }
    std::lock_guard lock(mu_);
    if (--posting_ == 0 && ended_) changed_.notify_all();
  }

  // A runner the executor destroyed without running. After the end that is an executor
  // clearing its queue (the runner had nothing left to do); before it, the service would
  // stall, so the runner runs here, and the first time says so.
  void run_dropped_task() {
    {
      std::lock_guard lock(mu_);
      if (ended_) {
        --runners_;
        return;
      }
    }
    if (!dropped_task_logged_.exchange(true)) {
      log(LogLevel::error, "the executor of service \"" + name_ +
                               "\" destroyed a task without running it; running it on the "
                               "destroying thread instead (an executor must run every task it "
                               "accepts, or throw)",
          {.service = name_});
    }
    run_turns();
  }

  const Limits limits_;
  Executor executor_;
  const bool has_executor_;
  TurnSink* const sink_;
  const void* const owner_;
  const std::string name_;
  std::atomic<bool> dropped_task_logged_{false};
  std::atomic<std::int64_t> recent_turn_ns_{1'000'000};  // as if slow, until shown quick

  mutable std::mutex mu_;
  std::condition_variable changed_;
  bool pull_ = false;
  std::uint64_t next_seq_ = 0;
  std::deque<Entry> alone_;                                     // entries that run alone
  std::unordered_map<std::string, PeerQueue, StringHash, std::equal_to<>> peers_;
  std::set<Head> heads_;                                        // every peer with queued entries
  std::set<Head> ready_;                                        // those not running a turn
  std::deque<Entry> pulled_;                                    // pull mode's events
  std::vector<std::thread::id> holders_;                        // pull mode: turns taken
  std::size_t queued_events_ = 0;
  std::size_t bytes_ = 0;
  std::size_t in_turn_ = 0;   // turns running
  bool alone_running_ = false;  // one of them runs alone: no other may start
  std::size_t runners_ = 0;   // runners scheduled or running
  std::size_t posting_ = 0;   // threads inside executor_ for us
  bool refusing_ = false;     // drain or cancel: push() refuses
  bool draining_ = false;
  bool drained_reported_ = false;
  bool shut_ = false;         // the stream ended (pull mode: next() ends once empty)
  bool ended_ = false;        // finish() began: nothing more is queued or started
  std::uint64_t received_ = 0, delivered_ = 0, dropped_total_ = 0, dropped_unreported_ = 0, discarded_ = 0;
};

}  // namespace ensemble::detail
