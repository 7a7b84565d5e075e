// ensemble-bench: what the library costs over raw gRPC, measured in one run.
//
// Every workload runs three ways against the same in-process daemon double, over the same
// socket, in the same process layout:
//   library  ensemble::Client and its services, used as the README shows;
//   raw      the same generated stubs driven by a minimal hand-written reactor
//            (raw_baseline.hpp): the best anyone could do without the library;
//   ceiling  a null client that does less than any real one could, so the double is all
//            that limits it. When raw is close to the ceiling, the double is the bottleneck
//            and the library/raw ratio says less than it seems.
// Machines drift, so the figures that matter are ratios library/raw taken run by run (the
// two run back to back, their order alternating) and summarised as medians.
//
//   ensemble-bench [--quick] [--runs N] [--only 1,2,...] [--json PATH] [--side SIDE]
//
// Everything is bounded: fixed counts, a timeout on every wait (a timeout ends the program
// with an error rather than a number), loopback and Unix sockets only.
#include "measure.hpp"
#include "raw_baseline.hpp"
#include "sink_server.hpp"

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include <nlohmann/json.hpp>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <latch>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

using namespace std::chrono_literals;
using bench::Clock;
using bench::Timeout;
namespace api = ensemble::api;
namespace raw = bench::raw;

// ---- Configuration ---------------------------------------------------------------------

struct Config {
  bool quick = false;
  int runs = 5;
  std::set<int> only;  // empty: every workload
  std::string side;    // "library", "raw" or "ceiling": run only that side (profiling)
  std::string json_path;

  std::uint64_t inbound_events = 200'000;
  unsigned outbound_threads = 4;
  std::uint64_t outbound_per_thread = 50'000;
  std::uint64_t echo_trips = 20'000;
  std::uint64_t echo_warmup = 500;
  // (payload size, messages): about a quarter of a gigabyte per size above 64 B.
  std::vector<std::pair<std::size_t, std::uint64_t>> byte_sizes = {
      {64, 200'000}, {4 << 10, 40'000}, {64 << 10, 4'000}, {1 << 20, 256}};
  std::uint64_t scale_services = 1'000;
  std::uint64_t unary_calls = 5'000;
  std::uint64_t burst_events = 5'000;  // workload 7: one burst per run, at a 1 ms handler
  std::uint64_t burst_rate = 20'000;   // chats per second within the burst
  std::size_t burst_text = 1024;       // bytes per chat: a long line, so that transport buffers
                                       // (which hold thousands of 32-byte chats) do not hide the test
  std::uint64_t slow_peers = 100;      // workload 8: peers, each sending this many chats
  std::uint64_t slow_per_peer = 20;
  std::vector<std::size_t> slow_workers = {4, 8};
  std::chrono::milliseconds timeout = 120s;  // for any one wait

  void make_quick() {
    quick = true;
    runs = 1;
    inbound_events = 5'000;
    outbound_per_thread = 1'000;
    echo_trips = 300;
    echo_warmup = 50;
    byte_sizes = {{64, 2'000}, {4 << 10, 500}, {64 << 10, 64}, {1 << 20, 8}};
    scale_services = 20;
    unary_calls = 200;
    slow_per_peer = 2;
    timeout = 30s;
  }

  bool wants(int workload) const { return only.empty() || only.count(workload) > 0; }
};

// 32 bytes: a short chat line.
constexpr std::string_view kChatText = "benchmark chat text, 32 bytes ok";

// A sender never has more than this many payload bytes queued ahead of the double, so a
// bulk run measures throughput, not how fast memory fills.
constexpr std::size_t kBytesWindow = 16u << 20;

// ---- The environment: one double for everything, one more that checks signatures ------

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/ens-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string operator/(const char* name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

ensemble::Seed admin_seed() {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(0xb0 + i);
  return ensemble::Seed::from_bytes(bytes);
}

enum class Transport { unix_socket, tcp };

const char* transport_name(Transport t) { return t == Transport::unix_socket ? "unix" : "tcp"; }

struct Env {
  TempDir dir;
  // Before the doubles: their observer points here until they are gone.
  bench::ArrivalTracker arrivals;
  std::unique_ptr<ensemble::testing::DaemonDouble> daemon;
  std::unique_ptr<ensemble::testing::DaemonDouble> verifying;  // admin key set: for signed calls
  std::unique_ptr<bench::SinkServer> sink;  // workload 2's server: counts, routes nothing
  std::string unix_path;
  std::string sink_path;
  std::string verifying_path;
  std::string tcp_address;
  std::string peer;  // a synthetic peer: accepts everything, records nothing
  int names = 0;

  explicit Env(const Config& cfg) {
    unix_path = dir / "api.sock";
    ensemble::testing::DaemonDoubleOptions o;
    o.unix_socket = unix_path;
    o.tcp_address = "127.0.0.1:0";
    o.record_traffic = false;  // millions of actions; the counters are enough
    daemon = std::make_unique<ensemble::testing::DaemonDouble>(o);
    tcp_address = daemon->tcp_target();
    daemon->set_action_observer([tracker = &arrivals](std::string_view service, const api::ServiceClientMessage&) {
      tracker->on_action(service);
    });
    if (cfg.wants(2)) {
      sink_path = dir / "sink.sock";
      sink = std::make_unique<bench::SinkServer>(sink_path, arrivals);
    }
    if (cfg.wants(6)) {
      verifying_path = dir / "verifying.sock";
      ensemble::testing::DaemonDoubleOptions v;
      v.unix_socket = verifying_path;
      v.record_traffic = false;
      v.admin_key = ensemble::Signer(admin_seed()).public_key();
      verifying = std::make_unique<ensemble::testing::DaemonDouble>(v);
    }
    std::array<std::uint8_t, 32> key{};
    key.fill(0x5e);
    peer = ensemble::address_from_public_key(key);
  }

  ~Env() {
    if (daemon) daemon->set_action_observer({});
    sink.reset();
  }

  // A fresh service name per run (the double keeps counters per name).
  std::string name(const char* what) { return std::string(what) + "-" + std::to_string(++names); }

  ensemble::ClientOptions client_options(Transport t) const {
    ensemble::ClientOptions o;
    if (t == Transport::unix_socket) {
      o.socket_path = unix_path;
    } else {
      o.addr = tcp_address;
    }
    return o;
  }

  std::shared_ptr<grpc::Channel> raw_channel(Transport t) const {
    return t == Transport::unix_socket ? raw::make_channel("unix:" + unix_path, true)
                                       : raw::make_channel(tcp_address, false);
  }

  // The same two for the sink server (workload 2).
  ensemble::ClientOptions sink_client_options(Transport t) const {
    ensemble::ClientOptions o;
    if (t == Transport::unix_socket) {
      o.socket_path = sink_path;
    } else {
      o.addr = sink->tcp_address();
    }
    return o;
  }
  std::shared_ptr<grpc::Channel> raw_sink_channel(Transport t) const {
    return t == Transport::unix_socket ? raw::make_channel("unix:" + sink_path, true)
                                       : raw::make_channel(sink->tcp_address(), false);
  }
};

// Starts a raw reactor and, whatever happens, stops it and waits for OnDone before it is
// freed (a reactor must outlive OnDone).
template <class Reactor>
class Started {
 public:
  template <class... Args>
  explicit Started(Args&&... args) : reactor_(std::make_unique<Reactor>(std::forward<Args>(args)...)) {
    reactor_->start();
  }
  Started(const Started&) = delete;
  Started& operator=(const Started&) = delete;
  ~Started() {
    reactor_->stop();
    // Should never time out; if it does, leaking beats freeing what gRPC still uses.
    if (!reactor_->wait_done(10s)) static_cast<void>(reactor_.release());
  }
  Reactor* operator->() const { return reactor_.get(); }

  void registered(std::chrono::milliseconds timeout) const {
    if (!reactor_->wait_registered(timeout)) throw Timeout("raw service did not register");
  }

 private:
  std::unique_ptr<Reactor> reactor_;
};

// ---- Results ----------------------------------------------------------------------------

// A run's figure and the CPU time the whole process (client, double, gRPC) spent per
// operation during it. Wall-clock rates swing with the machine's load; CPU per operation
// swings much less, so its library/raw ratio is the steadier witness of what the library
// adds.
struct Measured {
  double value = 0;
  double cpu_us = 0;
};

// Starts a run's clocks; finish() turns `ops` operations ending at `end` into a Measured.
class Stopwatch {
 public:
  Stopwatch() : wall_(Clock::now()), cpu_(bench::process_cpu_seconds()) {}
  Clock::time_point started() const { return wall_; }
  Measured finish(Clock::time_point end, double ops, double units_per_op = 1) const {
    const double cpu = bench::process_cpu_seconds() - cpu_;
    return {ops * units_per_op / bench::seconds_between(wall_, end), cpu / ops * 1e6};
  }

 private:
  Clock::time_point wall_;
  double cpu_;
};

// One line of the table: a figure for the library, the raw baseline and (where it means
// something) the double's ceiling, every run kept.
struct Row {
  std::string key;    // stable name in the JSON
  std::string label;  // what the table shows
  std::string unit;
  int decimals = 0;
  std::string target_op;  // ">=", "<=" or "" (no target)
  double target = 0;
  std::vector<double> library, raw, ceiling, ratios;
  // CPU microseconds per operation, where measured, and their library/raw ratios.
  std::vector<double> library_cpu, raw_cpu, ceiling_cpu, cpu_ratios;

  void add(double lib, double base, std::optional<double> ceil = std::nullopt) {
    library.push_back(lib);
    raw.push_back(base);
    ratios.push_back(base > 0 ? lib / base : 0);
    if (ceil) ceiling.push_back(*ceil);
  }
  void add(Measured lib, Measured base, std::optional<Measured> ceil = std::nullopt) {
    add(lib.value, base.value, ceil ? std::optional(ceil->value) : std::nullopt);
    library_cpu.push_back(lib.cpu_us);
    raw_cpu.push_back(base.cpu_us);
    cpu_ratios.push_back(base.cpu_us > 0 ? lib.cpu_us / base.cpu_us : 0);
    if (ceil) ceiling_cpu.push_back(ceil->cpu_us);
  }
  double ratio() const { return bench::median(ratios); }
  std::optional<bool> met() const {
    if (target_op.empty() || ratios.empty()) return std::nullopt;
    return target_op == ">=" ? ratio() >= target : ratio() <= target;
  }
};

struct Signing {
  std::vector<double> unsigned_calls, signed_local, signed_verified;
};

struct Report {
  std::deque<Row> rows;  // a deque: row() hands out references that later rows must not move
  Signing signing;
  std::array<double, 3> load_start{}, load_end{};
  double seconds = 0;

  Row& row(std::string key, std::string label, std::string unit, int decimals, std::string op = {},
           double target = 0) {
    for (auto& r : rows) {
      if (r.key == key) return r;
    }
    Row& r = rows.emplace_back();
    r.key = std::move(key);
    r.label = std::move(label);
    r.unit = std::move(unit);
    r.decimals = decimals;
    r.target_op = std::move(op);
    r.target = target;
    return r;
  }
};

// Runs one library/raw pair, the order alternating with the run number so neither side
// always gets the warmer (or the more loaded) slot.
// --side runs one side only, for profiling it alone; the others report zeros.
template <class F>
auto only_if(const Config& cfg, const char* side, F f) -> decltype(f()) {
  if (!cfg.side.empty() && cfg.side != side) return {};
  return f();
}

template <class LibFn, class RawFn>
auto pair_run(const Config& cfg, int run, LibFn lib_fn, RawFn raw_fn) {
  auto lib = [&] { return only_if(cfg, "library", lib_fn); };
  auto base = [&] { return only_if(cfg, "raw", raw_fn); };
  if (run % 2 == 0) {
    const auto l = lib();
    return std::pair(l, base());
  }
  const auto b = base();
  return std::pair(lib(), b);
}

void progress(const std::string& what, int run, int runs, const std::string& figures) {
  std::fprintf(stderr, "  %-44s run %d/%d  %s\n", what.c_str(), run + 1, runs, figures.c_str());
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string figures(const Measured& l, const Measured& b, const Measured& c, int decimals) {
  return "library " + fixed(l.value, decimals) + "  raw " + fixed(b.value, decimals) + "  ceiling " +
         fixed(c.value, decimals) + "   cpu us/op " + fixed(l.cpu_us, 1) + " / " + fixed(b.cpu_us, 1) + " / " +
         fixed(c.cpu_us, 1);
}

// ---- Workload 1: inbound events --------------------------------------------------------

Measured push_and_time(Env& env, const Config& cfg, const std::string& name,
                       const std::function<Clock::time_point()>& wait_last) {
  const Stopwatch run;
  const auto written = env.daemon->push_chat_burst(name, env.peer, cfg.inbound_events, kChatText, cfg.timeout);
  if (written != cfg.inbound_events) {
    throw Timeout("inbound: the double wrote " + std::to_string(written) + " of " +
                  std::to_string(cfg.inbound_events) + " events");
  }
  return run.finish(wait_last(), static_cast<double>(cfg.inbound_events));
}

Measured inbound_library(Env& env, const Config& cfg, Transport t) {
  ensemble::Client client(env.client_options(t));
  const std::string name = env.name("in-lib");
  auto svc = client.service(name);
  std::uint64_t seen = 0;  // a service's handlers run one at a time
  bench::Signal last;
  const std::uint64_t n = cfg.inbound_events;
  svc->on_chat([&](const ensemble::ChatMessage&) {
    if (++seen == n) last.set();
  });
  svc->start();
  return push_and_time(env, cfg, name, [&] { return last.wait(cfg.timeout, "inbound (library)"); });
}

Measured inbound_raw(Env& env, const Config& cfg, Transport t) {
  auto channel = env.raw_channel(t);
  auto stub = api::EnsembleService::NewStub(channel);
  const std::string name = env.name("in-raw");
  std::uint64_t seen = 0;
  bench::Signal last;
  const std::uint64_t n = cfg.inbound_events;
  // Decodes the chat as any real handler must (into one reused message), then counts.
  auto on_event = [&, chat = api::ServiceChatMessageEvent()](auto&, const api::ServiceEvent& ev) mutable {
    if (ev.type() == "chat_message" && chat.ParseFromString(ev.payload()) && ++seen == n) last.set();
  };
  Started<raw::Service<decltype(on_event)>> svc(*stub, name, api::TRANSPORT_CHAT, std::move(on_event));
  svc.registered(cfg.timeout);
  return push_and_time(env, cfg, name, [&] { return last.wait(cfg.timeout, "inbound (raw)"); });
}

Measured inbound_ceiling(Env& env, const Config& cfg, Transport t) {
  auto channel = env.raw_channel(t);
  auto stub = api::EnsembleService::NewStub(channel);
  const std::string name = env.name("in-null");
  Started<raw::NullClient> svc(*stub, name, api::TRANSPORT_CHAT);
  svc.registered(cfg.timeout);
  std::future<std::optional<Clock::time_point>> last =
      std::async(std::launch::async, [&] { return svc->wait_events(cfg.inbound_events, cfg.timeout); });
  return push_and_time(env, cfg, name, [&] {
    auto when = last.get();
    if (!when) throw Timeout("inbound (ceiling): timed out");
    return *when;
  });
}

// ---- Workload 2: outbound actions from several threads ---------------------------------

// Runs `threads` senders that start together; returns actions/s until the sink server
// (sink_server.hpp) has read every one. Not the daemon double: it routes every action, one at
// a time per stream, and would be the limit of the measurement.
template <class Send>
Measured outbound_drive(Env& env, const Config& cfg, const std::string& name, Send send) {
  const std::uint64_t total = cfg.outbound_threads * cfg.outbound_per_thread;
  env.arrivals.watch(name);
  std::latch go(1);
  std::mutex error_mu;
  std::string error;
  std::optional<Stopwatch> run;
  {
    std::vector<std::jthread> senders;
    for (unsigned k = 0; k < cfg.outbound_threads; ++k) {
      senders.emplace_back([&] {
        go.wait();
        try {
          for (std::uint64_t i = 0; i < cfg.outbound_per_thread; ++i) send();
        } catch (const std::exception& e) {
          std::lock_guard lock(error_mu);
          error = e.what();
        }
      });
    }
    run.emplace();
    go.count_down();
  }  // every action is queued once the senders are joined
  if (!error.empty()) throw std::runtime_error("outbound sender: " + error);
  return run->finish(env.arrivals.wait_count(total, cfg.timeout, "outbound"), static_cast<double>(total));
}

Measured outbound_library(Env& env, const Config& cfg, Transport t) {
  ensemble::Client client(env.sink_client_options(t));
  const std::string name = env.name("out-lib");
  auto svc = client.service(name);
  svc->start();
  return outbound_drive(env, cfg, name, [&] { svc->send_message(env.peer, std::string(kChatText)); });
}

auto no_events = [](auto&, const api::ServiceEvent&) {};

Measured outbound_raw(Env& env, const Config& cfg, Transport t) {
  auto channel = env.raw_sink_channel(t);
  auto stub = api::EnsembleService::NewStub(channel);
  const std::string name = env.name("out-raw");
  Started<raw::Service<decltype(no_events)>> svc(*stub, name, api::TRANSPORT_CHAT, no_events);
  svc.registered(cfg.timeout);
  return outbound_drive(env, cfg, name, [&] {
    api::ServiceClientMessage m;
    auto* body = m.mutable_send_message();
    body->set_to_addr(env.peer);
    body->set_text(std::string(kChatText));
    svc->send(std::move(m));
  });
}

api::ServiceClientMessage send_message_action(const std::string& to) {
  api::ServiceClientMessage m;
  m.mutable_send_message()->set_to_addr(to);
  m.mutable_send_message()->set_text(std::string(kChatText));
  return m;
}

Measured outbound_ceiling(Env& env, const Config& cfg, Transport t) {
  auto channel = env.raw_sink_channel(t);
  auto stub = api::EnsembleService::NewStub(channel);
  const std::string name = env.name("out-null");
  Started<raw::NullClient> svc(*stub, name, api::TRANSPORT_CHAT);
  svc.registered(cfg.timeout);
  const std::uint64_t total = cfg.outbound_threads * cfg.outbound_per_thread;
  env.arrivals.watch(name);
  const Stopwatch run;
  svc->blast(send_message_action(env.peer), total);
  return run.finish(env.arrivals.wait_count(total, cfg.timeout, "outbound (ceiling)"), static_cast<double>(total));
}

// ---- Workload 3: echo round trips ------------------------------------------------------

struct Latency {
  double p50 = 0, p90 = 0, p99 = 0;
};

// A synthetic peer sends a chat; the round trip ends when the double reads the reply.
// Strictly sequential. The three echo services (library, raw, ceiling) run at once and take
// their trips in turn, the order rotating each round: every side meets the machine at the
// same moments, so the load that swings a run's absolute figures (other builds on a two-core
// machine) moves all three alike and their ratio stays put.
std::array<Latency, 3> echo_round(Env& env, const Config& cfg) {
  ensemble::Client client(env.client_options(Transport::unix_socket));
  const std::array<std::string, 3> names = {env.name("echo-lib"), env.name("echo-raw"), env.name("echo-null")};
  auto svc = client.service(names[0]);
  svc->on_chat([](ensemble::ChatService& self, const ensemble::ChatMessage& m) {
    self.send_message(m.from_addr, "echo: " + m.text);
  });
  svc->start();

  auto channel = env.raw_channel(Transport::unix_socket);
  auto stub = api::EnsembleService::NewStub(channel);
  auto on_event = [chat = api::ServiceChatMessageEvent()](auto& self, const api::ServiceEvent& ev) mutable {
    if (ev.type() != "chat_message" || !chat.ParseFromString(ev.payload())) return;
    api::ServiceClientMessage reply;
    auto* body = reply.mutable_send_message();
    body->set_to_addr(chat.from_addr());
    body->set_text("echo: " + chat.text());
    self.send(std::move(reply));
  };
  Started<raw::Service<decltype(on_event)>> raw_svc(*stub, names[1], api::TRANSPORT_CHAT, std::move(on_event));
  raw_svc.registered(cfg.timeout);
  Started<raw::NullClient> null_svc(*stub, names[2], api::TRANSPORT_CHAT);
  null_svc.registered(cfg.timeout);
  null_svc->reply_with(send_message_action(env.peer));

  const std::array<const char*, 3> sides = {"library", "raw", "ceiling"};
  std::array<std::vector<double>, 3> micros;
  const std::uint64_t total = cfg.echo_warmup + cfg.echo_trips;
  for (std::uint64_t i = 0; i < total; ++i) {
    for (std::size_t k = 0; k < 3; ++k) {
      const std::size_t side = (i + k) % 3;
      if (!cfg.side.empty() && cfg.side != sides[side]) continue;
      env.arrivals.watch(names[side]);
      const auto t0 = Clock::now();
      if (!env.daemon->inject_chat(names[side], env.peer, kChatText)) throw std::runtime_error("echo: inject refused");
      const auto t1 = env.arrivals.wait_count(1, cfg.timeout, "echo");
      if (i >= cfg.echo_warmup) micros[side].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
  }
  std::array<Latency, 3> out;
  for (std::size_t side = 0; side < 3; ++side) {
    auto& m = micros[side];
    if (m.empty()) continue;
    std::sort(m.begin(), m.end());
    out[side] = {bench::percentile(m, 50), bench::percentile(m, 90), bench::percentile(m, 99)};
  }
  svc->close();
  svc->wait();
  return out;
}

// ---- Workload 4: send_bytes throughput -------------------------------------------------

template <class Send>
Measured bytes_drive(Env& env, const Config& cfg, const std::string& name, std::size_t size,
                   std::uint64_t count, Send send) {
  const std::string payload(size, 'x');
  const std::uint64_t window = std::max<std::uint64_t>(1, kBytesWindow / size);
  env.arrivals.watch(name);
  const Stopwatch run;
  const auto give_up = run.started() + cfg.timeout;
  for (std::uint64_t i = 0; i < count; ++i) {
    while (i - env.arrivals.count() >= window) {
      if (Clock::now() > give_up) throw Timeout("bytes: the double stopped taking payloads");
      std::this_thread::sleep_for(20us);
    }
    send(payload);
  }
  return run.finish(env.arrivals.wait_count(count, cfg.timeout, "bytes"), static_cast<double>(count),
                    static_cast<double>(size) / 1e6);
}

Measured bytes_library(Env& env, const Config& cfg, std::size_t size, std::uint64_t count) {
  ensemble::Client client(env.client_options(Transport::unix_socket));
  const std::string name = env.name("bytes-lib");
  auto svc = client.rpc_service(name);
  svc->start();
  return bytes_drive(env, cfg, name, size, count,
                     [&](const std::string& payload) { svc->send_bytes(env.peer, payload); });
}

Measured bytes_raw(Env& env, const Config& cfg, std::size_t size, std::uint64_t count) {
  auto channel = env.raw_channel(Transport::unix_socket);
  auto stub = api::EnsembleService::NewStub(channel);
  const std::string name = env.name("bytes-raw");
  Started<raw::Service<decltype(no_events)>> svc(*stub, name, api::TRANSPORT_RPC, no_events);
  svc.registered(cfg.timeout);
  return bytes_drive(env, cfg, name, size, count, [&](const std::string& payload) {
    api::ServiceClientMessage m;
    auto* body = m.mutable_send_bytes();
    body->set_to_addr(env.peer);
    body->set_payload(payload);
    svc->send(std::move(m));
  });
}

Measured bytes_ceiling(Env& env, const Config& cfg, std::size_t size, std::uint64_t count) {
  auto channel = env.raw_channel(Transport::unix_socket);
  auto stub = api::EnsembleService::NewStub(channel);
  const std::string name = env.name("bytes-null");
  Started<raw::NullClient> svc(*stub, name, api::TRANSPORT_RPC);
  svc.registered(cfg.timeout);
  api::ServiceClientMessage m;
  m.mutable_send_bytes()->set_to_addr(env.peer);
  m.mutable_send_bytes()->set_payload(std::string(size, 'x'));
  env.arrivals.watch(name);
  const Stopwatch run;
  svc->blast(std::move(m), count);
  return run.finish(env.arrivals.wait_count(count, cfg.timeout, "bytes (ceiling)"), static_cast<double>(count),
                    static_cast<double>(size) / 1e6);
}

// ---- Workload 5: 1,000 services on one channel, in a child process ---------------------
//
// The double keeps per-service state too, so resident memory is measured in a separate
// client process (this program again, with --scale-child) where only the client's share
// counts. Both sides use the same layout: double here, client there.
//
// Every run registers the same names, as a restarted bot would: the double then already
// holds their keypairs (a warm-up pass makes them), so the time measured is registration,
// not the double's Ed25519 key generation, which would otherwise be most of it.

struct ScaleFigures {
  double ms = 0;
  double cpu_us_per_service = 0;    // the client process's CPU time while registering
  double kib_per_service = 0;       // resident memory
  double heap_kib_per_service = 0;  // malloc'd bytes in use
};

constexpr std::string_view kScalePrefix = "scale-";

// Child side. Prints one JSON line: registration time and resident memory before/after.
int scale_child(const std::string& mode, const std::string& socket_path, std::uint64_t count,
                const std::string& prefix) {
  const auto timeout = 120s;
  nlohmann::json out;
  if (mode == "lib") {
    ensemble::Client client({.socket_path = socket_path});
    client.get_identity();  // the channel is connected before anything is measured
    std::vector<std::shared_ptr<ensemble::ChatService>> services;
    std::vector<std::future<void>> registered;
    services.reserve(count);
    registered.reserve(count);
    const auto rss0 = bench::resident_bytes();
    const auto heap0 = bench::heap_in_use_bytes();
    const auto cpu0 = bench::process_cpu_seconds();
    const auto t0 = Clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
      services.push_back(client.service(prefix + std::to_string(i)));
      registered.push_back(services.back()->start_async());
    }
    for (auto& f : registered) {
      if (f.wait_for(timeout) != std::future_status::ready) throw Timeout("scale (library): registration");
      f.get();
    }
    const auto t1 = Clock::now();
    const auto cpu1 = bench::process_cpu_seconds();
    std::this_thread::sleep_for(100ms);  // idle, as the workload says
    out = {{"ms", bench::seconds_between(t0, t1) * 1e3},
           {"cpu_ms", (cpu1 - cpu0) * 1e3},
           {"rss_before", rss0},
           {"rss_after", bench::resident_bytes()},
           {"heap_before", heap0},
           {"heap_after", bench::heap_in_use_bytes()}};
    std::cout << out.dump() << std::endl;
    services.clear();  // cancels every stream and waits for it
    return 0;
  }
  auto channel = raw::make_channel("unix:" + socket_path, true);
  auto stub = api::EnsembleService::NewStub(channel);
  {
    grpc::ClientContext context;
    api::GetIdentityResponse response;
    if (!stub->GetIdentity(&context, api::GetIdentityRequest{}, &response).ok()) {
      throw std::runtime_error("scale (raw): GetIdentity failed");
    }
  }
  using Reactor = raw::Service<decltype(no_events)>;
  std::vector<std::unique_ptr<Started<Reactor>>> services;
  services.reserve(count);
  const auto rss0 = bench::resident_bytes();
  const auto heap0 = bench::heap_in_use_bytes();
  const auto cpu0 = bench::process_cpu_seconds();
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    services.push_back(std::make_unique<Started<Reactor>>(*stub, prefix + std::to_string(i),
                                                          api::TRANSPORT_CHAT, no_events));
  }
  for (auto& s : services) s->registered(timeout);
  const auto t1 = Clock::now();
  const auto cpu1 = bench::process_cpu_seconds();
  std::this_thread::sleep_for(100ms);
  out = {{"ms", bench::seconds_between(t0, t1) * 1e3},
         {"cpu_ms", (cpu1 - cpu0) * 1e3},
         {"rss_before", rss0},
         {"rss_after", bench::resident_bytes()},
         {"heap_before", heap0},
         {"heap_after", bench::heap_in_use_bytes()}};
  std::cout << out.dump() << std::endl;
  services.clear();
  return 0;
}

std::string self_path() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot find this program's path in /proc/self/exe");
  return p.string();
}

// Parent side: runs the child, reads its line, bounded by the timeout; returns once the
// double has let go of every name, so the next run can register them again.
ScaleFigures scale_run(Env& env, const Config& cfg, const char* mode) {
  const std::string prefix(kScalePrefix);
  const std::string exe = self_path();
  const std::string count = std::to_string(cfg.scale_services);
  std::vector<std::string> args = {exe, "--scale-child", mode, env.unix_path, count, prefix};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
  }
  std::string text;
  const auto deadline = Clock::now() + cfg.timeout;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      timed_out = ready == 0;
      break;
    }
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);  // our own child, by its id
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (timed_out) throw Timeout(std::string("scale (") + mode + "): the client process timed out");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(std::string("scale (") + mode + "): the client process failed");
  }
  for (std::uint64_t i = 0; i < cfg.scale_services; ++i) {
    if (!env.daemon->wait_unregistered(prefix + std::to_string(i), cfg.timeout)) {
      throw Timeout("scale: the double still holds " + prefix + std::to_string(i));
    }
  }
  const auto j = nlohmann::json::parse(text);
  auto per_service_kib = [&](const char* before, const char* after) {
    return (j.at(after).get<double>() - j.at(before).get<double>()) / 1024.0 /
           static_cast<double>(cfg.scale_services);
  };
  const double n = static_cast<double>(cfg.scale_services);
  return {j.at("ms").get<double>(), j.at("cpu_ms").get<double>() * 1e3 / n,
          per_service_kib("rss_before", "rss_after"), per_service_kib("heap_before", "heap_after")};
}

// ---- Workload 6: unary calls, unsigned and signed --------------------------------------

template <class Call>
Measured calls_per_second(const Config& cfg, Call call) {
  for (int i = 0; i < 20; ++i) call();  // connect, warm up
  const Stopwatch run;
  for (std::uint64_t i = 0; i < cfg.unary_calls; ++i) call();
  return run.finish(Clock::now(), static_cast<double>(cfg.unary_calls));
}

Measured unary_library(const Config& cfg, const std::string& socket_path, bool sign) {
  ensemble::ClientOptions o;
  o.socket_path = socket_path;
  if (sign) o.auth_seed = admin_seed();
  ensemble::Client client(std::move(o));
  return calls_per_second(cfg, [&] { client.get_identity(); });
}

Measured unary_raw(const Config& cfg, Env& env) {
  auto channel = env.raw_channel(Transport::unix_socket);
  auto stub = api::EnsembleService::NewStub(channel);
  return calls_per_second(cfg, [&] {
    grpc::ClientContext context;
    api::GetIdentityResponse response;
    if (!stub->GetIdentity(&context, api::GetIdentityRequest{}, &response).ok()) {
      throw std::runtime_error("unary (raw): GetIdentity failed");
    }
  });
}

// ---- Running everything -----------------------------------------------------------------

// ---- Workload 7: bursts at a slow handler ----------------------------------------------
//
// A peer floods a receiver whose handler costs 1 ms (a database call, say). The burst goes
// through the double's real 256-deep drop-oldest queue (inject_chat, not the flow-controlled
// push_chat_burst), as chats from peers do. Once every event is accounted for (handled,
// dropped by the library and counted, or dropped by the daemon), the run reports events
// kept, lost as the client counted them, and lost in fact (burst - kept).

struct BurstOutcome {
  double kept = 0;
  double counted = 0;  // what the client says it lost (the raw baseline cannot say)
  double lost = 0;     // burst - kept
};

constexpr auto kBurstHandlerCost = 1ms;

// Paced at cfg.burst_rate: an in-process injector unpaced outruns what any stream carries
// (a few microseconds a chat), and then the daemon's queue drops for every client alike,
// which measures the double, not the receiver. 20,000 chats/s is still 20 times what the
// 1 ms handler takes.
void inject_burst(Env& env, const Config& cfg, const std::string& name) {
  const auto gap = std::chrono::nanoseconds(1'000'000'000 / cfg.burst_rate);
  const std::string text(cfg.burst_text, 'b');
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < cfg.burst_events; ++i) {
    std::this_thread::sleep_until(t0 + gap * static_cast<std::int64_t>(i));
    if (!env.daemon->inject_chat(name, env.peer, text)) throw Timeout("burst: the double refused a chat");
  }
}

template <class Settled>
void wait_settled(const Config& cfg, const char* what, Settled settled) {
  const auto deadline = Clock::now() + cfg.timeout;
  while (!settled()) {
    if (Clock::now() > deadline) throw Timeout(std::string("burst (") + what + "): events unaccounted for");
    std::this_thread::sleep_for(5ms);
  }
}

BurstOutcome burst_library(Env& env, const Config& cfg) {
  ensemble::Client client(env.client_options(Transport::unix_socket));
  const std::string name = env.name("burst-lib");
  auto svc = client.service(name);  // default options: the default read-ahead capacity
  std::atomic<std::uint64_t> kept{0};
  std::atomic<std::uint64_t> reported{0};
  svc->on_chat([&](const ensemble::ChatMessage&) {
    std::this_thread::sleep_for(kBurstHandlerCost);
    kept.fetch_add(1, std::memory_order_relaxed);
  });
  svc->on_events_dropped([&](std::uint64_t n) { reported.fetch_add(n, std::memory_order_relaxed); });
  svc->start();
  inject_burst(env, cfg, name);
  const std::uint64_t n = cfg.burst_events;
  wait_settled(cfg, "library", [&] {
    return kept.load() + svc->stats().events_dropped + env.daemon->dropped_events(name) == n &&
           reported.load() == svc->stats().events_dropped;
  });
  return {static_cast<double>(kept.load()), static_cast<double>(reported.load()),
          static_cast<double>(n - kept.load())};
}

BurstOutcome burst_raw(Env& env, const Config& cfg) {
  auto channel = env.raw_channel(Transport::unix_socket);
  auto stub = api::EnsembleService::NewStub(channel);
  const std::string name = env.name("burst-raw");
  std::atomic<std::uint64_t> kept{0};
  auto on_event = [&, chat = api::ServiceChatMessageEvent()](auto&, const api::ServiceEvent& ev) mutable {
    if (ev.type() == "chat_message" && chat.ParseFromString(ev.payload())) {
      std::this_thread::sleep_for(kBurstHandlerCost);
      kept.fetch_add(1, std::memory_order_relaxed);
    }
  };
  Started<raw::Service<decltype(on_event)>> svc(*stub, name, api::TRANSPORT_CHAT, std::move(on_event));
  svc.registered(cfg.timeout);
  inject_burst(env, cfg, name);
  const std::uint64_t n = cfg.burst_events;
  wait_settled(cfg, "raw", [&] { return kept.load() + env.daemon->dropped_events(name) == n; });
  return {static_cast<double>(kept.load()), 0, static_cast<double>(n - kept.load())};
}

// ---- Workload 8: slow turns, serial against turns in parallel across peers -------------
//
// 100 peers chat with a bot whose handler waits 1 ms (a sleep, as a call to another service
// would). Serial: the default service, one turn at a time. Parallel: a ThreadPool of N
// threads and max_turns_in_flight = N. The chats arrive through the double's flow-controlled
// burst hook, so none is lost and the rate is the bot's alone. Events per second, with the
// serial run of the same round as the baseline: ideally N times it.

constexpr auto kSlowTurnCost = 1ms;

Measured slow_turns(Env& env, const Config& cfg, std::size_t workers) {
  std::optional<ensemble::ThreadPool> pool;
  ensemble::ServiceOptions options;
  if (workers > 1) {
    pool.emplace(workers);
    options.executor = pool->executor();
    options.max_turns_in_flight = workers;
  }
  ensemble::Client client(env.client_options(Transport::unix_socket));
  const std::string name = env.name("slow");
  auto svc = client.service(name, options);
  const std::uint64_t n = cfg.slow_peers * cfg.slow_per_peer;
  std::atomic<std::uint64_t> handled{0};
  bench::Signal last;
  svc->on_chat([&](const ensemble::ChatMessage&) {
    std::this_thread::sleep_for(kSlowTurnCost);
    if (handled.fetch_add(1) + 1 == n) last.set();
  });
  svc->start();
  std::vector<std::string> peers;
  for (std::uint64_t p = 0; p < cfg.slow_peers; ++p) {
    std::array<std::uint8_t, 32> key{};
    key.fill(static_cast<std::uint8_t>(p + 1));
    key[0] = 0xb0;
    peers.push_back(ensemble::address_from_public_key(key));
  }
  const Stopwatch watch;
  // Round-robin over the peers, a chat at a time, as concurrent conversations arrive.
  for (std::uint64_t i = 0; i < cfg.slow_per_peer; ++i) {
    for (const auto& peer : peers) {
      if (env.daemon->push_chat_burst(name, peer, 1, kChatText, cfg.timeout) != 1) {
        throw Timeout("slow turns: the double could not write a chat");
      }
    }
  }
  last.wait(cfg.timeout, "slow turns");
  const Measured m = watch.finish(Clock::now(), static_cast<double>(n));
  svc->close();
  svc->wait();
  return m;
}

void run_all(Env& env, const Config& cfg, Report& report) {
  const int runs = cfg.runs;
  const std::array<Transport, 2> transports = {Transport::unix_socket, Transport::tcp};

  if (cfg.wants(1)) {
    for (Transport t : transports) {
      Row& row = report.row(std::string("1/") + transport_name(t),
                            std::string("1 inbound chat events (") + transport_name(t) + ")",
                            "events/s", 0, ">=", 0.90);
      for (int r = 0; r < runs; ++r) {
        auto [l, b] = pair_run(cfg, r, [&] { return inbound_library(env, cfg, t); },
                               [&] { return inbound_raw(env, cfg, t); });
        const Measured c = only_if(cfg, "ceiling", [&] { return inbound_ceiling(env, cfg, t); });
        row.add(l, b, c);
        progress(row.label, r, runs, figures(l, b, c, 0));
      }
    }
  }

  if (cfg.wants(2)) {
    for (Transport t : transports) {
      Row& row = report.row(std::string("2/") + transport_name(t),
                            std::string("2 outbound send_message, ") + std::to_string(cfg.outbound_threads) +
                                " threads (" + transport_name(t) + ")",
                            "actions/s", 0, ">=", 0.90);
      for (int r = 0; r < runs; ++r) {
        auto [l, b] = pair_run(cfg, r, [&] { return outbound_library(env, cfg, t); },
                               [&] { return outbound_raw(env, cfg, t); });
        const Measured c = only_if(cfg, "ceiling", [&] { return outbound_ceiling(env, cfg, t); });
        row.add(l, b, c);
        progress(row.label, r, runs, figures(l, b, c, 0));
      }
    }
  }

  if (cfg.wants(3)) {
    Row& p50 = report.row("3/p50", "3 echo round trip p50 (unix)", "us", 1, "<=", 1.05);
    Row& p90 = report.row("3/p90", "3 echo round trip p90 (unix)", "us", 1);
    Row& p99 = report.row("3/p99", "3 echo round trip p99 (unix)", "us", 1, "<=", 1.25);
    for (int r = 0; r < runs; ++r) {
      const auto [l, b, c] = echo_round(env, cfg);
      p50.add(l.p50, b.p50, c.p50);
      p90.add(l.p90, b.p90, c.p90);
      p99.add(l.p99, b.p99, c.p99);
      progress("3 echo round trip (unix)", r, runs,
               "p50/p99 us: library " + fixed(l.p50, 1) + "/" + fixed(l.p99, 1) + "  raw " + fixed(b.p50, 1) +
                   "/" + fixed(b.p99, 1) + "  ceiling " + fixed(c.p50, 1) + "/" + fixed(c.p99, 1));
    }
  }

  if (cfg.wants(4)) {
    for (auto [size, count] : cfg.byte_sizes) {
      const std::string size_name = size >= (1u << 20) ? std::to_string(size >> 20) + " MiB"
                                    : size >= 1024     ? std::to_string(size >> 10) + " KiB"
                                                       : std::to_string(size) + " B";
      Row& row = report.row("4/" + std::to_string(size), "4 send_bytes " + size_name + " (unix)", "MB/s", 1,
                            ">=", 0.90);
      for (int r = 0; r < runs; ++r) {
        auto [l, b] = pair_run(cfg, r, [&] { return bytes_library(env, cfg, size, count); },
                               [&] { return bytes_raw(env, cfg, size, count); });
        const Measured c = only_if(cfg, "ceiling", [&] { return bytes_ceiling(env, cfg, size, count); });
        row.add(l, b, c);
        progress(row.label, r, runs, figures(l, b, c, 1));
      }
    }
  }

  if (cfg.wants(5)) {
    const std::string n = std::to_string(cfg.scale_services);
    Row& time = report.row("5/time", "5 register " + n + " services (unix)", "ms", 1, "<=", 1.20);
    Row& memory = report.row("5/rss", "5 resident memory per idle service", "KiB", 1, "<=", 1.20);
    Row& heap = report.row("5/heap", "5 of which heap (malloc), per service", "KiB", 1);
    scale_run(env, cfg, "raw");  // warm-up: the double makes the names' keypairs
    for (int r = 0; r < runs; ++r) {
      auto [l, b] = pair_run(cfg, r, [&] { return scale_run(env, cfg, "lib"); },
                             [&] { return scale_run(env, cfg, "raw"); });
      time.add(Measured{l.ms, l.cpu_us_per_service}, Measured{b.ms, b.cpu_us_per_service});
      memory.add(l.kib_per_service, b.kib_per_service);
      heap.add(l.heap_kib_per_service, b.heap_kib_per_service);
      progress("5 scale (unix)", r, runs,
               "ms: library " + fixed(l.ms, 1) + "  raw " + fixed(b.ms, 1) + "   KiB/service: library " +
                   fixed(l.kib_per_service, 1) + "  raw " + fixed(b.kib_per_service, 1));
    }
  }

  if (cfg.wants(6)) {
    Row& row = report.row("6/unsigned", "6 unary GetIdentity, unsigned (unix)", "calls/s", 0);
    for (int r = 0; r < runs; ++r) {
      auto [l, b] = pair_run(cfg, r, [&] { return unary_library(cfg, env.unix_path, false); },
                             [&] { return unary_raw(cfg, env); });
      const double local = only_if(cfg, "library", [&] { return unary_library(cfg, env.unix_path, true); }).value;
      const double verified =
          only_if(cfg, "library", [&] { return unary_library(cfg, env.verifying_path, true); }).value;
      row.add(l, b);
      report.signing.unsigned_calls.push_back(l.value);
      report.signing.signed_local.push_back(local);
      report.signing.signed_verified.push_back(verified);
      progress("6 unary calls (unix)", r, runs,
               "unsigned: library " + fixed(l.value, 0) + " raw " + fixed(b.value, 0) + "  signed: " +
                   fixed(local, 0) + ", double verifying " + fixed(verified, 0));
    }
  }

  if (cfg.wants(7)) {
    const std::string burst = std::to_string(cfg.burst_events);
    Row& kept = report.row("7/kept", "7 burst " + burst + " x " + std::to_string(cfg.burst_text) + " B at 1 ms handler: kept",
                           "events", 0);
    Row& counted = report.row("7/counted", "7   lost, as the client counted", "events", 0);
    Row& lost = report.row("7/lost", "7   lost in fact", "events", 0);
    for (int r = 0; r < runs; ++r) {
      auto [l, b] = pair_run(cfg, r, [&] { return burst_library(env, cfg); }, [&] { return burst_raw(env, cfg); });
      kept.add(l.kept, b.kept);
      counted.add(l.counted, b.counted);
      lost.add(l.lost, b.lost);
      progress("7 burst at a 1 ms handler (unix)", r, runs,
               "kept/counted/lost: library " + fixed(l.kept, 0) + "/" + fixed(l.counted, 0) + "/" +
                   fixed(l.lost, 0) + "  raw " + fixed(b.kept, 0) + "/" + fixed(b.counted, 0) + "/" +
                   fixed(b.lost, 0));
    }
  }

  if (cfg.wants(8)) {
    // The "raw" column of these rows is the serial service of the same round: the ratio is
    // the speed-up, against a target of 0.8 x N.
    const std::string what = std::to_string(cfg.slow_peers) + " peers, 1 ms turns";
    std::vector<Row*> rows;
    for (std::size_t n : cfg.slow_workers) {
      rows.push_back(&report.row("8/" + std::to_string(n), "8 " + what + ", " + std::to_string(n) + " at once/serial",
                                 "events/s", 0, ">=", 0.8 * static_cast<double>(n)));
    }
    for (int r = 0; r < runs; ++r) {
      const Measured serial = slow_turns(env, cfg, 1);
      std::string figures_text = "serial " + fixed(serial.value, 0);
      for (std::size_t i = 0; i < cfg.slow_workers.size(); ++i) {
        const Measured parallel = slow_turns(env, cfg, cfg.slow_workers[i]);
        rows[i]->add(parallel, serial);
        figures_text += ", " + std::to_string(cfg.slow_workers[i]) + " at once " + fixed(parallel.value, 0);
      }
      progress("8 slow turns (unix)", r, runs, figures_text + " events/s");
    }
  }
}

// ---- Output -------------------------------------------------------------------------------

// 1234567.8 -> "1,234,568" (decimals 0) or "1,234,567.8" (decimals 1).
std::string grouped(double v, int decimals) {
  const std::string s = fixed(v, decimals);
  const std::size_t digits_start = (!s.empty() && s[0] == '-') ? 1 : 0;
  const std::size_t int_end = std::min(s.find('.'), s.size());
  std::string out = s.substr(0, digits_start);
  for (std::size_t i = digits_start; i < int_end; ++i) {
    if (i > digits_start && (int_end - i) % 3 == 0) out += ',';
    out += s[i];
  }
  out += s.substr(int_end);
  return out;
}

void print_table(const Config& cfg, const Report& report) {
  std::printf("\nensemble-bench: the library against raw gRPC, same run, same daemon double\n");
  std::printf("%d run%s%s; figures are medians; ratio = median over runs of library/raw from the same run,\n"
              "ratio range = the lowest and highest of those per-run ratios\n",
              cfg.runs, cfg.runs == 1 ? "" : "s", cfg.quick ? " (--quick: small counts, not for conclusions)" : "");
  std::printf("load average (1 min) %.2f at start, %.2f at end, on %u cores; took %.0f s\n\n",
              report.load_start[0], report.load_end[0], std::thread::hardware_concurrency(), report.seconds);
  std::printf("%-44s %-9s %11s %11s %6s %11s %12s %11s %6s\n", "workload", "unit", "library", "raw", "ratio",
              "ratio range", "target", "ceiling", "cpu");
  for (const Row& r : report.rows) {
    std::string target = "-";
    if (auto met = r.met()) target = r.target_op + fixed(r.target, 2) + (*met ? " met" : " MISS");
    const std::string ceiling = r.ceiling.empty() ? "-" : grouped(bench::median(r.ceiling), r.decimals);
    const std::string cpu = r.cpu_ratios.empty() ? "-" : fixed(bench::median(r.cpu_ratios), 2);
    // The lowest and highest of the per-run ratios, so that a reader sees how far one run
    // strays from the median.
    std::string range = "-";
    if (!r.ratios.empty()) {
      const auto [low, high] = std::minmax_element(r.ratios.begin(), r.ratios.end());
      range = fixed(*low, 2) + "-" + fixed(*high, 2);
    }
    std::printf("%-44s %-9s %11s %11s %6s %11s %12s %11s %6s\n", r.label.c_str(), r.unit.c_str(),
                grouped(bench::median(r.library), r.decimals).c_str(), grouped(bench::median(r.raw), r.decimals).c_str(),
                fixed(r.ratio(), 2).c_str(), range.c_str(), target.c_str(), ceiling.c_str(), cpu.c_str());
  }
  const Signing& s = report.signing;
  if (!s.unsigned_calls.empty()) {
    const double u = bench::median(s.unsigned_calls);
    const double l = bench::median(s.signed_local);
    const double v = bench::median(s.signed_verified);
    auto extra_us = [&](double signed_rate) { return (1.0 / signed_rate - 1.0 / u) * 1e6; };
    std::printf("\n6 signing cost, library, sequential unary GetIdentity over the Unix socket\n");
    std::printf("  %-40s %12s calls/s\n", "unsigned", grouped(u, 0).c_str());
    std::printf("  %-40s %12s calls/s  %.2f of unsigned, %+.1f us per call\n", "signed (client signs)",
                grouped(l, 0).c_str(), l / u, extra_us(l));
    std::printf("  %-40s %12s calls/s  %.2f of unsigned, %+.1f us per call\n", "signed, the double verifies",
                grouped(v, 0).c_str(), v / u, extra_us(v));
  }
  std::printf("\nceiling: a null client (no decoding, no queue, one prebuilt message) on the same double;\n"
              "raw near the ceiling means the double, not the client, sets the pace.\n"
              "cpu: library/raw CPU time per operation (whole process: client, double and gRPC; for 5,\n"
              "the client process alone), the ratio least moved by other load on the machine.\n");
}

nlohmann::json to_json(const Config& cfg, const Report& report) {
  nlohmann::json rows = nlohmann::json::array();
  for (const Row& r : report.rows) {
    nlohmann::json j = {{"key", r.key},
                        {"label", r.label},
                        {"unit", r.unit},
                        {"library", {{"median", bench::median(r.library)}, {"runs", r.library}}},
                        {"raw", {{"median", bench::median(r.raw)}, {"runs", r.raw}}},
                        {"ratio", {{"median", r.ratio()}, {"runs", r.ratios}}}};
    if (!r.ceiling.empty()) j["ceiling"] = {{"median", bench::median(r.ceiling)}, {"runs", r.ceiling}};
    if (!r.cpu_ratios.empty()) {
      j["cpu_us_per_op"] = {{"library", {{"median", bench::median(r.library_cpu)}, {"runs", r.library_cpu}}},
                            {"raw", {{"median", bench::median(r.raw_cpu)}, {"runs", r.raw_cpu}}},
                            {"ratio", {{"median", bench::median(r.cpu_ratios)}, {"runs", r.cpu_ratios}}}};
      if (!r.ceiling_cpu.empty()) {
        j["cpu_us_per_op"]["ceiling"] = {{"median", bench::median(r.ceiling_cpu)}, {"runs", r.ceiling_cpu}};
      }
    }
    if (auto met = r.met()) j["target"] = {{"op", r.target_op}, {"ratio", r.target}, {"met", *met}};
    rows.push_back(std::move(j));
  }
  nlohmann::json out = {
      {"program", "ensemble-bench"},
      {"library_version", std::string(ensemble::version())},
      {"quick", cfg.quick},
      {"runs", cfg.runs},
      {"cores", std::thread::hardware_concurrency()},
      {"load_average_start", report.load_start},
      {"load_average_end", report.load_end},
      {"seconds", report.seconds},
      {"counts",
       {{"inbound_events", cfg.inbound_events},
        {"outbound_threads", cfg.outbound_threads},
        {"outbound_per_thread", cfg.outbound_per_thread},
        {"echo_trips", cfg.echo_trips},
        {"echo_warmup", cfg.echo_warmup},
        {"byte_sizes", cfg.byte_sizes},
        {"scale_services", cfg.scale_services},
        {"unary_calls", cfg.unary_calls}}},
      {"rows", rows}};
  const Signing& s = report.signing;
  if (!s.unsigned_calls.empty()) {
    const double u = bench::median(s.unsigned_calls);
    out["signing"] = {
        {"unit", "calls/s"},
        {"unsigned", {{"median", u}, {"runs", s.unsigned_calls}}},
        {"signed", {{"median", bench::median(s.signed_local)}, {"runs", s.signed_local},
                    {"ratio_to_unsigned", bench::median(s.signed_local) / u}}},
        {"signed_verified", {{"median", bench::median(s.signed_verified)}, {"runs", s.signed_verified},
                             {"ratio_to_unsigned", bench::median(s.signed_verified) / u}}}};
  }
  return out;
}

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: ensemble-bench [--quick] [--runs N] [--only 1,2,...] [--json PATH] [--side SIDE]\n"
               "  --quick       small counts, one run: proves the program works, measures nothing\n"
               "  --runs N      runs per workload (default 5; medians are reported)\n"
               "  --only LIST   workloads to run, e.g. 1,3 (default: all of 1-8)\n"
               "  --json PATH   also write every figure, run and ratio as JSON to PATH\n"
               "  --side SIDE   run only the library, raw or ceiling side (to profile it alone;\n"
               "                the other columns and the ratios are then meaningless)\n");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 5 && args[0] == "--scale-child") {
      return scale_child(args[1], args[2], std::stoull(args[3]), args[4]);
    }
    Config cfg;
    std::optional<int> runs;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      auto value = [&]() -> const std::string& {
        if (i + 1 >= args.size()) throw std::invalid_argument(a + " needs a value");
        return args[++i];
      };
      if (a == "--quick") {
        cfg.make_quick();
      } else if (a == "--runs") {
        runs = std::stoi(value());
        if (*runs < 1 || *runs > 100) throw std::invalid_argument("--runs must be 1..100");
      } else if (a == "--json") {
        cfg.json_path = value();
      } else if (a == "--only") {
        std::stringstream list(value());
        for (std::string item; std::getline(list, item, ',');) {
          const int w = std::stoi(item);
          if (w < 1 || w > 8) throw std::invalid_argument("--only takes workloads 1 to 8");
          cfg.only.insert(w);
        }
      } else if (a == "--side") {
        cfg.side = value();
        if (cfg.side != "library" && cfg.side != "raw" && cfg.side != "ceiling") {
          throw std::invalid_argument("--side takes library, raw or ceiling");
        }
      } else if (a == "--help" || a == "-h") {
        usage(stdout);
        return 0;
      } else {
        usage(stderr);
        return 2;
      }
    }
    if (runs) cfg.runs = *runs;

    Report report;
    report.load_start = bench::load_average();
    const auto t0 = Clock::now();
    {
      Env env(cfg);
      std::fprintf(stderr, "ensemble-bench: double on %s and %s%s\n", env.unix_path.c_str(),
                   env.tcp_address.c_str(), cfg.quick ? " (quick)" : "");
      run_all(env, cfg, report);
    }
    report.seconds = bench::seconds_between(t0, Clock::now());
    report.load_end = bench::load_average();
    print_table(cfg, report);
    if (!cfg.json_path.empty()) {
      std::ofstream out(cfg.json_path);
      out << to_json(cfg, report).dump(2) << "\n";
      if (!out) throw std::runtime_error("cannot write " + cfg.json_path);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ensemble-bench: %s\n", e.what());
    return 1;
  }
}
