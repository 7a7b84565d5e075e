// matchmaker_stub: pairs callers two at a time and introduces them to each other.
//
//   build/examples/matchmaker_stub --socket /run/ensemble/sock --seed admin.seed
//   build/examples/matchmaker_stub --demo
//
// A caller (an rpc-transport service) sends any payload to join. The first one waits (it is
// told "waiting"); the next one is paired with it, and the matchmaker asks the daemon to
// introduce each to the other with one session id and an expiry. Each side receives a
// PeerIntroduction whose from_service_addr the daemon attests (it is the matchmaker's
// address, whatever the matchmaker claims); checking session_id and expires_at against
// replays is the callers' job.
//
// Inbound abuse is capped by the manifest: max_payload_bytes and a per-sender rate limit.
// The daemon refuses what exceeds them before it reaches on_rpc and tells the matchmaker
// through on_error, as a ServiceError whose kind says which (branch on kind, never on the
// message text). The README's "Introductions" and "Payload caps and rate limits" snippets
// are cut from this file.
#include "common/cli.hpp"
#include "common/demo.hpp"
#include "common/output.hpp"
#include "common/run.hpp"

#include <ensemble/ensemble.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using examples::say;
using examples::short_addr;
using namespace std::chrono_literals;

struct Settings {
  std::string name = "matchmaker";
  std::uint32_t max_payload_bytes = 1024;
  std::uint32_t rate_per_minute = 60;
  std::uint32_t burst = 5;
  std::chrono::seconds session_ttl{300};
};

// The pairing state. Handlers of one service run one at a time, but the counters are also
// read by the demo's main thread, hence the lock.
class Matchmaker {
 public:
  Matchmaker(ensemble::RpcService& service, std::chrono::seconds ttl) : service_(service), ttl_(ttl) {}

  void on_join(const ensemble::RpcMessage& m) {
    std::optional<std::string> partner;
    {
      std::lock_guard lock(mu_);
      if (waiting_ == m.from_addr) return;  // already queued; a repeat join changes nothing
      if (!waiting_) {
        waiting_ = m.from_addr;
      } else {
        partner = std::exchange(waiting_, std::nullopt);
        ++sessions_;
      }
    }
    if (!partner) {
      say("matchmaker: ", short_addr(m.from_addr), " waits for a partner");
      service_.send_bytes(m.from_addr, "waiting");
      return;
    }
    // One session, introduced to both sides; each learns the other's address.
    const std::string session = new_session_id();
    const ensemble::Timestamp expires =
        std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now() + ttl_);
    service_.introduce_peers(*partner, m.from_addr, session, expires, "host");
    service_.introduce_peers(m.from_addr, *partner, session, expires, "guest");
    say("matchmaker: paired ", short_addr(*partner), " (host) with ", short_addr(m.from_addr),
        " (guest), session ", session);
  }

  // Refusals the daemon made on our behalf. The kind decides; the text is for people.
  void on_error(const ensemble::ServiceError& e) {
    switch (e.kind) {
      case ensemble::ServiceError::Kind::payload_too_large:
        say("matchmaker: refused an envelope from ", short_addr(e.from_addr), ": over the ",
            e.limit_bytes, "-byte cap");
        break;
      case ensemble::ServiceError::Kind::rate_limited:
        say("matchmaker: throttled ", short_addr(e.from_addr), "; it may retry in ",
            e.retry_after.count(), " ms");
        break;
      case ensemble::ServiceError::Kind::plain:
        say("matchmaker: daemon says: ", e.message);
        break;
    }
    std::lock_guard lock(mu_);
    ++refusals_[static_cast<int>(e.kind)];
  }

  int sessions() const {
    std::lock_guard lock(mu_);
    return sessions_;
  }
  int refusals(ensemble::ServiceError::Kind kind) const {
    std::lock_guard lock(mu_);
    return refusals_[static_cast<int>(kind)];
  }
  bool someone_waiting() const {
    std::lock_guard lock(mu_);
    return waiting_.has_value();
  }

 private:
  static std::string new_session_id() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    static constexpr char hex[] = "0123456789abcdef";
    std::string id;
    for (std::uint64_t bits = rng(), i = 0; i < 16; ++i, bits >>= 4) id += hex[bits & 15];
    return id;
  }

  ensemble::RpcService& service_;
  const std::chrono::seconds ttl_;
  mutable std::mutex mu_;
  std::optional<std::string> waiting_;
  int sessions_ = 0;
  int refusals_[3] = {0, 0, 0};
};

// The logic is declared first so that it is destroyed last: releasing the service waits for
// its stream to end, and until then a handler may still call into the logic.
struct Matchmade {
  std::unique_ptr<Matchmaker> logic;
  std::shared_ptr<ensemble::RpcService> service;
};

Matchmade make_matchmaker(ensemble::Client& client, const Settings& s) {
  ensemble::ServiceOptions options;
  options.description = "pairs callers and introduces them";
  options.max_payload_bytes = s.max_payload_bytes;     // bigger inbound envelopes are refused
  options.rate_limit_per_minute = s.rate_per_minute;  // per sender, refilled evenly
  options.rate_limit_burst = s.burst;                 // how many may arrive at once
  Matchmade m;
  m.service = client.rpc_service(s.name, options);
  m.logic = std::make_unique<Matchmaker>(*m.service, s.session_ttl);
  Matchmaker* logic = m.logic.get();
  m.service->on_rpc([logic](const ensemble::RpcMessage& msg) { logic->on_join(msg); });
  m.service->on_error([logic](const ensemble::ServiceError& e) { logic->on_error(e); });
  return m;
}

// A demo caller: an rpc service that joins and reports the introduction it gets.
// The service is declared last so that it is destroyed first (its handlers use the rest).
struct Caller {
  std::string name;
  examples::Tally waiting;
  examples::Tally introduced;
  std::shared_ptr<ensemble::RpcService> service;
};

std::unique_ptr<Caller> make_caller(ensemble::Client& client, std::string name,
                                    const std::string& matchmaker_addr) {
  auto c = std::make_unique<Caller>();
  c->name = std::move(name);
  c->service = client.rpc_service(c->name);
  Caller* self = c.get();
  c->service->on_rpc([self](const ensemble::RpcMessage& m) {
    if (m.payload == "waiting") self->waiting.add();
  });
  c->service->on_peer_introduction([self, matchmaker_addr](const ensemble::PeerIntroduction& p) {
    const auto ttl = std::chrono::duration_cast<std::chrono::seconds>(p.expires_at - std::chrono::system_clock::now());
    // from_service_addr is the daemon's word for who introduced us: trust it, not the payload.
    const bool genuine = p.from_service_addr == matchmaker_addr;
    say(self->name, ": introduced to ", short_addr(p.peer_addr), " as ", p.role_hint, ", session ",
        p.session_id, ", expires in ", ttl.count(), " s, ",
        genuine ? "from the matchmaker" : "from an unknown service");
    if (genuine) self->introduced.add();
  });
  c->service->on_error([self](const ensemble::ServiceError& e) {
    say(self->name, ": daemon says: ", e.message);
  });
  c->service->start();
  return c;
}

int run_demo(const Settings& settings) {
  examples::DemoDaemon daemon;
  ensemble::Client client(daemon.client_options());
  Matchmade mm = make_matchmaker(client, settings);
  mm.service->start();
  const std::string mm_addr = mm.service->address();
  say("matchmaker: registered as ", mm_addr, " (cap ", settings.max_payload_bytes, " bytes, ",
      settings.rate_per_minute, "/min, burst ", settings.burst, ")");

  bool ok = true;
  auto expect = [&ok](bool condition, const std::string& what) {
    if (!condition) {
      say("demo: FAILED: ", what);
      ok = false;
    }
  };

  // Four callers, joining one at a time, make two sessions: alice+bob, carol+dave.
  ensemble::Client callers_client(daemon.client_options());
  std::vector<std::unique_ptr<Caller>> callers;
  for (const char* name : {"alice", "bob", "carol", "dave"}) {
    callers.push_back(make_caller(callers_client, name, mm_addr));
  }
  for (std::size_t i = 0; i < callers.size(); i += 2) {
    Caller& first = *callers[i];
    Caller& second = *callers[i + 1];
    say(first.name, ": joining");
    first.service->send_bytes(mm_addr, "join");
    expect(first.waiting.wait_for(1, examples::kDemoPatience), first.name + " was not told to wait");
    say(second.name, ": joining");
    second.service->send_bytes(mm_addr, "join");
    expect(first.introduced.wait_for(1, examples::kDemoPatience) &&
               second.introduced.wait_for(1, examples::kDemoPatience),
           first.name + " and " + second.name + " were not both introduced");
  }

  // mallory sends one envelope over the cap, then floods joins past the burst.
  auto mallory = make_caller(callers_client, "mallory", mm_addr);
  say("mallory: sending ", 2 * settings.max_payload_bytes, " bytes");
  mallory->service->send_bytes(mm_addr, std::string(2 * settings.max_payload_bytes, 'x'));
  const int flood = static_cast<int>(settings.burst) + 3;
  say("mallory: sending ", flood, " joins at once");
  for (int i = 0; i < flood; ++i) mallory->service->send_bytes(mm_addr, "join");
  expect(mallory->waiting.wait_for(1, examples::kDemoPatience), "mallory's first join was lost");
  const auto deadline = std::chrono::steady_clock::now() + examples::kDemoPatience;
  while ((mm.logic->refusals(ensemble::ServiceError::Kind::payload_too_large) == 0 ||
          mm.logic->refusals(ensemble::ServiceError::Kind::rate_limited) == 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  expect(mm.logic->refusals(ensemble::ServiceError::Kind::payload_too_large) == 1,
         "expected exactly one payload_too_large");
  expect(mm.logic->refusals(ensemble::ServiceError::Kind::rate_limited) >= 1,
         "expected at least one rate_limited");
  expect(mm.logic->sessions() == 2, "expected 2 sessions");

  mallory->service->close();
  for (auto& c : callers) c->service->close();
  mm.service->close();
  mallory->service->wait();
  for (auto& c : callers) c->service->wait();
  mm.service->wait();

  say("matchmaker: ", mm.logic->sessions(), " sessions made, ",
      mm.logic->refusals(ensemble::ServiceError::Kind::payload_too_large), " oversized and ",
      mm.logic->refusals(ensemble::ServiceError::Kind::rate_limited), " throttled envelopes refused, ",
      mm.logic->someone_waiting() ? "1 caller" : "nobody", " still waiting");
  if (ok) say("demo: ok");
  return ok ? examples::kExitOk : examples::kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("matchmaker_stub",
                    "Pairs rpc callers two at a time and introduces them to each other.");
  examples::add_connection_flags(cli);
  cli.option("name", "NAME", "service name to register (default matchmaker)")
      .option("max-payload", "BYTES", "refuse inbound envelopes larger than this (default 1024)")
      .option("rate", "PER_MINUTE", "per-sender inbound rate limit; 0 = none (default 60)")
      .option("burst", "N", "how many envelopes a sender may send at once (default 5)")
      .option("session-ttl", "SECONDS", "how long an introduction stays valid (default 300)")
      .flag("demo", "start an in-process daemon double and five callers, show the pairing, exit")
      .epilog("A caller joins by sending any payload (up to --max-payload bytes) to the\n"
              "matchmaker's address; a lone caller is answered \"waiting\".\n\n"
              "Examples:\n  matchmaker_stub --demo\n"
              "  matchmaker_stub --socket /run/ensemble/sock --seed admin.seed --rate 30");
  cli.parse(argc, argv);

  Settings s;
  s.name = cli.get("name", s.name);
  s.max_payload_bytes = static_cast<std::uint32_t>(cli.number("max-payload", s.max_payload_bytes, 1, 1 << 30));
  s.rate_per_minute = static_cast<std::uint32_t>(cli.number("rate", s.rate_per_minute, 0, 1'000'000));
  s.burst = static_cast<std::uint32_t>(cli.number("burst", s.burst, 0, 1'000'000));
  s.session_ttl = std::chrono::seconds(cli.number("session-ttl", s.session_ttl.count(), 1, 86'400));
  if (cli.has("demo") && (s.rate_per_minute == 0 || s.burst == 0)) {
    cli.fail("--demo shows the rate limit, so --rate and --burst must be at least 1");
  }

  return examples::guard(cli, [&] {
    if (cli.has("demo")) {
      examples::forbid_connection_flags(cli, "--demo runs its own daemon");
      return run_demo(s);
    }
    examples::signal_stop();  // before the Client: see run.hpp
    ensemble::Client client = examples::make_client(cli);
    Matchmade mm = make_matchmaker(client, s);
    return examples::serve(*mm.service, "matchmaker");
  });
}
