// Admin-key auth: seed loading and its errors, the Ed25519 vector, wiping, the daemon's
// server-side check, and the signing plugin over a real gRPC server on a Unix socket and on
// loopback TCP.
#include <catch2/catch.hpp>

#include <ensemble/auth.hpp>
#include <ensemble/detail/hex.hpp>
#include <ensemble/testing/auth_check.hpp>

#include "support/identity_server.hpp"
#include "support/tempdir.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>

std::string second_tu_address_of_generated_seed();  // test/auth_second_tu.cpp

namespace test_auth {  // this file's names; test_ensemble is a unity build (meson.build)

using namespace std::chrono_literals;
using ensemble::AuthError;
using ensemble::Seed;
using ensemble::SeedFileCheck;
using ensemble::Signer;
using test_support::TempDir;
using test_support::write_file;

namespace {

constexpr const char* kVectorPubkey =
    "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
constexpr const char* kVectorSignature =
    "5858a421f63ea937e93a24cb9579bd86ef65a2c4291b3936d7763de4e1b266cf"
    "2c78ac4f3ccc3ea40712d9d23c7b29e24307b7e399be8596bb784122b9fa600b";
constexpr std::int64_t kVectorTime = 1700000000;

std::array<std::uint8_t, 32> counting_bytes() {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i);
  return bytes;
}

Seed vector_seed() { return Seed::from_bytes(counting_bytes()); }

std::string vector_seed_hex() { return ensemble::detail::hex_encode(counting_bytes()); }

std::string raw(const std::array<std::uint8_t, 32>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

// The AuthError message `f` throws; fails the test if it throws nothing or something else.
template <class F>
std::string auth_error_of(F&& f) {
  try {
    f();
  } catch (const AuthError& e) {
    return e.what();
  }
  FAIL("expected an AuthError");
  return {};
}

std::chrono::system_clock::time_point at(std::int64_t unix_seconds) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds));
}

// Metadata as a server would see it; string_refs point into `storage`.
struct Metadata {
  std::vector<std::pair<std::string, std::string>> storage;
  std::multimap<grpc::string_ref, grpc::string_ref> map() const {
    std::multimap<grpc::string_ref, grpc::string_ref> m;
    for (const auto& [k, v] : storage) m.emplace(grpc::string_ref(k), grpc::string_ref(v));
    return m;
  }
};

Metadata signed_metadata(const ensemble::AuthHeaders& h) {
  return Metadata{{{"user-agent", "test"},
                   {std::string(ensemble::kPubkeyHeader), h.pubkey_hex},
                   {std::string(ensemble::kTimestampHeader), h.timestamp},
                   {std::string(ensemble::kSignatureHeader), h.signature_hex}}};
}

void set_value(Metadata& md, std::string_view key, std::string value) {
  for (auto& [k, v] : md.storage) {
    if (k == key) v = std::move(value);
  }
}

void remove_key(Metadata& md, std::string_view key) {
  std::erase_if(md.storage, [&](const auto& kv) { return kv.first == key; });
}

std::string flip_hex_digit(std::string hex, std::size_t index) {
  hex[index] = hex[index] == '0' ? '1' : '0';
  return hex;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Seeds

TEST_CASE("Seed::from_bytes takes exactly 32 bytes and names any other length") {
  const auto bytes = counting_bytes();
  CHECK(std::ranges::equal(Seed::from_bytes(bytes).bytes(), bytes));

  for (std::size_t n : {0u, 1u, 31u, 33u, 64u}) {
    std::vector<std::uint8_t> wrong(n, 7);
    const auto message = auth_error_of([&] { Seed::from_bytes(wrong); });
    CHECK_THAT(message, Catch::Contains("got " + std::to_string(n)));
  }
}

TEST_CASE("Seed::from_hex takes 64 hex digits in either case, never echoes the text") {
  CHECK(std::ranges::equal(Seed::from_hex(vector_seed_hex()).bytes(), counting_bytes()));
  std::string upper = vector_seed_hex();
  std::ranges::transform(upper, upper.begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
  CHECK(std::ranges::equal(Seed::from_hex(upper).bytes(), counting_bytes()));

  const std::string hex = vector_seed_hex();
  CHECK_THAT(auth_error_of([&] { Seed::from_hex(hex.substr(0, 63)); }), Catch::Contains("got 63"));
  CHECK_THAT(auth_error_of([&] { Seed::from_hex(hex + "0"); }), Catch::Contains("got 65"));
  const std::string bad = hex.substr(0, 62) + "zz";
  const auto message = auth_error_of([&] { Seed::from_hex(bad); });
  CHECK_THAT(message, Catch::Contains("not all hex"));
  CHECK_THAT(message, !Catch::Contains(hex.substr(0, 16)));
}

TEST_CASE("Seed::from_file accepts 32 raw bytes and 64 hex characters") {
  TempDir dir;
  const auto expected = counting_bytes();

  SECTION("32 raw bytes") {
    write_file(dir / "raw", raw(expected));
    CHECK(std::ranges::equal(Seed::from_file(dir / "raw").bytes(), expected));
  }
  SECTION("32 raw bytes that happen to contain whitespace bytes are still raw") {
    auto bytes = expected;
    bytes[0] = '\n';
    bytes[31] = ' ';
    write_file(dir / "raw", raw(bytes));
    CHECK(std::ranges::equal(Seed::from_file(dir / "raw").bytes(), bytes));
  }
  SECTION("64 hex characters, no newline") {
    write_file(dir / "hex", vector_seed_hex());
    CHECK(std::ranges::equal(Seed::from_file(dir / "hex").bytes(), expected));
  }
  SECTION("64 hex characters with a trailing newline") {
    write_file(dir / "hex", vector_seed_hex() + "\n");
    CHECK(std::ranges::equal(Seed::from_file(dir / "hex").bytes(), expected));
  }
  SECTION("64 hex characters with CRLF and surrounding whitespace") {
    write_file(dir / "hex", " \t\r\n" + vector_seed_hex() + "\r\n\n  ");
    CHECK(std::ranges::equal(Seed::from_file(dir / "hex").bytes(), expected));
  }
  SECTION("uppercase hex") {
    std::string upper = vector_seed_hex();
    std::ranges::transform(upper, upper.begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
    write_file(dir / "hex", upper + "\n");
    CHECK(std::ranges::equal(Seed::from_file(dir / "hex").bytes(), expected));
  }
  SECTION("hex padded with whitespace to exactly the 4096-byte limit") {
    // Found by fuzz_seed_file: a file of exactly the limit was taken for one that grew.
    write_file(dir / "hex", vector_seed_hex() + std::string(4096 - 64, ' '));
    CHECK(std::ranges::equal(Seed::from_file(dir / "hex").bytes(), expected));
  }
  SECTION("through a symlink") {
    write_file(dir / "hex", vector_seed_hex() + "\n");
    std::filesystem::create_symlink(dir / "hex", dir / "link");
    CHECK(std::ranges::equal(Seed::from_file(dir / "link").bytes(), expected));
  }
}

TEST_CASE("Seed::from_file errors name the file and what was found") {
  TempDir dir;
  const std::string hex = vector_seed_hex();
  const auto expected = counting_bytes();

  struct Case {
    const char* name;
    std::string content;
    const char* found;  // the length/kind the message must name
  };
  const std::vector<Case> cases = {
      {"empty", "", "0 bytes"},
      {"raw31", std::string(31, '\x01'), "31 bytes"},
      {"raw33", raw(expected) + "\x01", "33 bytes"},
      {"raw32nl", raw(expected) + "\n", "33 bytes"},
      {"hex63", hex.substr(0, 63), "63 hex characters"},
      {"hex63nl", hex.substr(0, 63) + "\n", "63 hex characters"},
      {"hex65", hex + "a", "65 hex characters"},
      {"hex65nl", hex + "a\n", "65 hex characters"},
      {"hex128", hex + hex, "128 hex characters"},
      {"nonhex", hex.substr(0, 60) + "wxyz\n", "65 bytes"},
      {"innerspace", hex.substr(0, 32) + " " + hex.substr(32) + "\n", "66 bytes"},
      {"whitespace", "   \n\n", "only whitespace (5 bytes)"},
      {"huge", std::string(5000, 'a'), "5000 bytes"},
      {"hex4097", hex + std::string(4097 - 64, ' '), "4097 bytes"},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      const auto path = dir / c.name;
      write_file(path, c.content);
      const auto message = auth_error_of([&] { Seed::from_file(path); });
      CHECK_THAT(message, Catch::Contains("\"" + path.string() + "\""));
      CHECK_THAT(message, Catch::Contains(c.found));
      // The content is never echoed (it may be most of a real seed).
      CHECK_THAT(message, !Catch::Contains(hex.substr(0, 16)));
    }
  }

  SECTION("missing file") {
    const auto path = dir / "absent";
    const auto message = auth_error_of([&] { Seed::from_file(path); });
    CHECK_THAT(message, Catch::Contains("\"" + path.string() + "\""));
    CHECK_THAT(message, Catch::Contains("does not exist"));
  }
  SECTION("a directory") {
    std::filesystem::create_directory(dir / "sub");
    const auto message = auth_error_of([&] { Seed::from_file(dir / "sub"); });
    CHECK_THAT(message, Catch::Contains("\"" + (dir / "sub").string() + "\""));
    CHECK_THAT(message, Catch::Contains("is a directory"));
  }
  SECTION("unreadable file") {
    if (::geteuid() == 0) return;  // root reads anything; nothing to test
    write_file(dir / "locked", hex, 0000);
    const auto message = auth_error_of([&] { Seed::from_file(dir / "locked"); });
    CHECK_THAT(message, Catch::Contains("cannot be opened"));
    CHECK_THAT(message, Catch::Contains("Permission denied"));
  }
  SECTION("a FIFO does not hang") {
    REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
    const auto message = auth_error_of([&] { Seed::from_file(dir / "fifo"); });
    CHECK_THAT(message, Catch::Contains("not a regular file"));
  }
}

TEST_CASE("a seed file readable by group or others warns like ssh, or fails on request") {
  TempDir dir;
  const auto path = dir / "seed";

  SECTION("0644 warns once on stderr by default, naming file, mode and the fix") {
    write_file(path, vector_seed_hex() + "\n", 0644);
    test_support::StderrCapture capture;
    const Seed seed = Seed::from_file(path);
    const std::string text = capture.text();
    CHECK(std::ranges::equal(seed.bytes(), counting_bytes()));
    CHECK_THAT(text, Catch::Contains(path.string()));
    CHECK_THAT(text, Catch::Contains("0644"));
    CHECK_THAT(text, Catch::Contains("chmod 600"));
    CHECK(std::count(text.begin(), text.end(), '\n') == 1);
    CHECK_THAT(text, !Catch::Contains(vector_seed_hex().substr(0, 16)));
  }
  SECTION("0640 and 0604 warn too") {
    for (mode_t mode : {0640u, 0604u, 0660u}) {
      write_file(path, vector_seed_hex(), mode);
      test_support::StderrCapture capture;
      Seed::from_file(path);
      CHECK_THAT(capture.text(), Catch::Contains("chmod 600"));
    }
  }
  SECTION("0600 and 0400 are silent") {
    for (mode_t mode : {0600u, 0400u}) {
      write_file(path, vector_seed_hex(), mode);
      test_support::StderrCapture capture;
      Seed::from_file(path);
      CHECK(capture.text().empty());
    }
  }
  SECTION("SeedFileCheck::error throws, naming file, mode and the fix") {
    write_file(path, vector_seed_hex(), 0644);
    const auto message = auth_error_of([&] { Seed::from_file(path, SeedFileCheck::error); });
    CHECK_THAT(message, Catch::Contains(path.string()));
    CHECK_THAT(message, Catch::Contains("0644"));
    CHECK_THAT(message, Catch::Contains("chmod 600"));
  }
  SECTION("SeedFileCheck::error accepts 0600") {
    write_file(path, vector_seed_hex(), 0600);
    CHECK_NOTHROW(Seed::from_file(path, SeedFileCheck::error));
  }
  SECTION("SeedFileCheck::ignore is silent") {
    write_file(path, vector_seed_hex(), 0644);
    test_support::StderrCapture capture;
    Seed::from_file(path, SeedFileCheck::ignore);
    CHECK(capture.text().empty());
  }
}

TEST_CASE("Seed::generate gives distinct seeds") {
  const Seed a = Seed::generate();
  const Seed b = Seed::generate();
  CHECK_FALSE(std::ranges::equal(a.bytes(), b.bytes()));
  CHECK_FALSE(std::ranges::all_of(a.bytes(), [](std::uint8_t x) { return x == 0; }));
}

TEST_CASE("seeds copy, move and wipe themselves") {
  const auto expected = counting_bytes();
  Seed original = vector_seed();

  Seed copy = original;
  CHECK(std::ranges::equal(copy.bytes(), expected));
  CHECK(std::ranges::equal(original.bytes(), expected));

  Seed moved = std::move(copy);
  CHECK(std::ranges::equal(moved.bytes(), expected));
  CHECK(std::ranges::all_of(copy.bytes(), [](std::uint8_t x) { return x == 0; }));  // NOLINT

  Seed assigned = Seed::generate();
  assigned = moved;
  CHECK(std::ranges::equal(assigned.bytes(), expected));

  // Destruction wipes the storage: observable by destroying in place.
  alignas(Seed) unsigned char storage[sizeof(Seed)];
  auto* in_place = new (storage) Seed(original);
  REQUIRE(std::ranges::equal(in_place->bytes(), expected));
  in_place->~Seed();
  CHECK(std::all_of(std::begin(storage), std::end(storage), [](unsigned char c) { return c == 0; }));
}

TEST_CASE("a Signer wipes its secret key when destroyed") {
  const auto seed_bytes = counting_bytes();
  alignas(Signer) unsigned char storage[sizeof(Signer)];
  auto contains_seed = [&] {
    return std::search(std::begin(storage), std::end(storage), seed_bytes.begin(),
                       seed_bytes.end()) != std::end(storage);
  };
  auto* signer = new (storage) Signer(vector_seed());
  REQUIRE(contains_seed());  // libsodium's secret key starts with the seed
  signer->~Signer();
  CHECK_FALSE(contains_seed());
}

// ---------------------------------------------------------------------------------------
// Signing

TEST_CASE("the known Ed25519 vector: seed 00..1f, timestamp 1700000000") {
  const Signer signer(vector_seed());
  CHECK(signer.public_key_hex() == kVectorPubkey);
  CHECK(ensemble::detail::hex_encode(signer.public_key()) == kVectorPubkey);

  const ensemble::AuthHeaders headers = signer.headers_at(kVectorTime);
  CHECK(headers.pubkey_hex == kVectorPubkey);
  CHECK(headers.timestamp == "1700000000");
  CHECK(headers.signature_hex == kVectorSignature);
  CHECK(ensemble::detail::hex_encode(signer.sign("1700000000")) == kVectorSignature);

  // The same seed from a hex file gives the same keys.
  TempDir dir;
  write_file(dir / "seed", vector_seed_hex() + "\n");
  CHECK(Signer(Seed::from_file(dir / "seed")).headers_at(kVectorTime).signature_hex ==
        kVectorSignature);
}

TEST_CASE("signatures verify, and fail when anything changes") {
  const Signer signer(vector_seed());
  const auto signature = signer.sign("1700000000");
  CHECK(ensemble::verify_signature(signer.public_key(), "1700000000", signature));
  CHECK_FALSE(ensemble::verify_signature(signer.public_key(), "1700000001", signature));
  auto tampered = signature;
  tampered[10] ^= 0x01;
  CHECK_FALSE(ensemble::verify_signature(signer.public_key(), "1700000000", tampered));
  const Signer other(Seed::generate());
  CHECK_FALSE(ensemble::verify_signature(other.public_key(), "1700000000", signature));
}

TEST_CASE("headers_now carries the current time") {
  const Signer signer(vector_seed());
  const auto before = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  const auto headers = signer.headers_now();
  const auto after = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  const auto ts = std::stoll(headers.timestamp);
  CHECK(ts >= before);
  CHECK(ts <= after);
  CHECK(headers.signature_hex == ensemble::detail::hex_encode(signer.sign(headers.timestamp)));
}

TEST_CASE("the plugin's debug string shows only public facts") {
  auto signer = std::make_shared<const Signer>(vector_seed());
  ensemble::SigningPlugin plugin(signer);
  const std::string debug = plugin.DebugString();
  CHECK_THAT(debug, Catch::Contains(kVectorPubkey));
  CHECK_THAT(debug, !Catch::Contains(vector_seed_hex().substr(0, 16)));
  CHECK_FALSE(plugin.IsBlocking());
  CHECK_THROWS_AS(ensemble::SigningPlugin(nullptr), AuthError);
}

// ---------------------------------------------------------------------------------------
// The daemon's check, as a function

TEST_CASE("check_admin_auth: codes, texts and the daemon's order of checks") {
  using grpc::StatusCode;
  const Signer admin(vector_seed());
  const Signer stranger(Seed::generate());
  const auto now = at(kVectorTime);
  auto check = [&](const Metadata& md, std::chrono::system_clock::time_point when) {
    return ensemble::testing::check_admin_auth(md.map(), admin.public_key(), when);
  };
  auto expect = [&](const Metadata& md, StatusCode code, const std::string& text,
                    std::chrono::system_clock::time_point when) {
    const grpc::Status status = check(md, when);
    CHECK(status.error_code() == code);
    CHECK(status.error_message() == text);
  };
  const auto good = signed_metadata(admin.headers_at(kVectorTime));

  SECTION("a good call passes") { CHECK(check(good, now).ok()); }

  SECTION("no metadata at all") {
    expect(Metadata{}, StatusCode::UNAUTHENTICATED, "missing metadata", now);
  }
  SECTION("each header missing or empty") {
    for (auto key : {ensemble::kPubkeyHeader, ensemble::kTimestampHeader,
                     ensemble::kSignatureHeader}) {
      auto missing = good;
      remove_key(missing, key);
      expect(missing, StatusCode::UNAUTHENTICATED, "missing auth headers", now);
      auto empty = good;
      set_value(empty, key, "");
      expect(empty, StatusCode::UNAUTHENTICATED, "missing auth headers", now);
    }
  }
  SECTION("a bad public key: not hex, odd, short, long") {
    for (std::string bad : {std::string(64, 'g'), std::string(kVectorPubkey).substr(1),
                            std::string(kVectorPubkey).substr(2),
                            std::string(kVectorPubkey) + "00"}) {
      auto md = good;
      set_value(md, ensemble::kPubkeyHeader, bad);
      expect(md, StatusCode::UNAUTHENTICATED, "invalid public key", now);
    }
  }
  SECTION("uppercase public key hex decodes like Go's hex does") {
    auto md = good;
    std::string upper = kVectorPubkey;
    std::ranges::transform(upper, upper.begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
    set_value(md, ensemble::kPubkeyHeader, upper);
    CHECK(check(md, now).ok());
  }
  SECTION("a stranger's key is PERMISSION_DENIED, checked before the timestamp") {
    expect(signed_metadata(stranger.headers_at(kVectorTime)), StatusCode::PERMISSION_DENIED,
           "unauthorized public key", now);
    expect(signed_metadata(stranger.headers_at(kVectorTime - 3600)),
           StatusCode::PERMISSION_DENIED, "unauthorized public key", now);
    auto md = signed_metadata(stranger.headers_at(kVectorTime));
    set_value(md, ensemble::kTimestampHeader, "not a number");
    expect(md, StatusCode::PERMISSION_DENIED, "unauthorized public key", now);
  }
  SECTION("a timestamp that is not a base-10 int64") {
    for (std::string bad : {"abc", "1700000000.5", " 1700000000", "1700000000 ", "0x10", "+",
                            "-", "1_700_000_000", "9223372036854775808",
                            "-9223372036854775809", "99999999999999999999999"}) {
      auto md = good;
      set_value(md, ensemble::kTimestampHeader, bad);
      INFO(bad);
      expect(md, StatusCode::UNAUTHENTICATED, "invalid timestamp", now);
    }
  }
  SECTION("extreme but parseable timestamps are too old, without overflow") {
    for (std::string ts : {"9223372036854775807", "-9223372036854775808", "0", "-1"}) {
      auto md = good;
      set_value(md, ensemble::kTimestampHeader, ts);
      expect(md, StatusCode::UNAUTHENTICATED, "timestamp too old", now);
    }
  }
  SECTION("a signed '+' timestamp parses like Go's ParseInt (then the signature decides)") {
    const auto h = admin.headers_at(kVectorTime);
    auto md = good;
    set_value(md, ensemble::kTimestampHeader, "+1700000000");
    set_value(md, ensemble::kSignatureHeader,
              ensemble::detail::hex_encode(admin.sign("+1700000000")));
    CHECK(check(md, now).ok());
  }
  SECTION("freshness: exactly 300 s either way passes, anything more fails") {
    CHECK(check(good, now + 300s).ok());
    CHECK(check(good, now - 300s).ok());
    expect(good, StatusCode::UNAUTHENTICATED, "timestamp too old", now + 301s);
    expect(good, StatusCode::UNAUTHENTICATED, "timestamp too old", now - 301s);
    // The daemon compares at nanosecond precision.
    expect(good, StatusCode::UNAUTHENTICATED, "timestamp too old", now + 300s + 1ms);
    expect(good, StatusCode::UNAUTHENTICATED, "timestamp too old", now - 300s - 1ms);
    expect(good, StatusCode::UNAUTHENTICATED, "timestamp too old", now + 10min);
    expect(good, StatusCode::UNAUTHENTICATED, "timestamp too old", now - 10min);
  }
  SECTION("a stale timestamp is reported before a bad signature") {
    auto md = signed_metadata(admin.headers_at(kVectorTime - 600));
    set_value(md, ensemble::kSignatureHeader, "zz");
    expect(md, StatusCode::UNAUTHENTICATED, "timestamp too old", now);
  }
  SECTION("signature that is not hex") {
    for (std::string bad : {std::string(128, 'z'), std::string(kVectorSignature).substr(1)}) {
      auto md = good;
      set_value(md, ensemble::kSignatureHeader, bad);
      expect(md, StatusCode::UNAUTHENTICATED, "invalid signature encoding", now);
    }
  }
  SECTION("hex signature of the wrong length is an invalid signature") {
    for (std::string bad : {std::string(kVectorSignature).substr(2),
                            std::string(kVectorSignature) + "00", std::string("00")}) {
      auto md = good;
      set_value(md, ensemble::kSignatureHeader, bad);
      expect(md, StatusCode::UNAUTHENTICATED, "invalid signature", now);
    }
  }
  SECTION("tampered signature, or a signature over another timestamp") {
    auto md = good;
    set_value(md, ensemble::kSignatureHeader, flip_hex_digit(kVectorSignature, 5));
    expect(md, StatusCode::UNAUTHENTICATED, "invalid signature", now);

    auto replay = good;
    set_value(replay, ensemble::kTimestampHeader, std::to_string(kVectorTime + 1));
    expect(replay, StatusCode::UNAUTHENTICATED, "invalid signature", now);
  }
  SECTION("the first value of a repeated header is the one checked") {
    auto md = good;
    md.storage.emplace_back(std::string(ensemble::kSignatureHeader), std::string(128, '0'));
    CHECK(check(md, now).ok());
    auto bad_first = good;
    set_value(bad_first, ensemble::kSignatureHeader, std::string(128, '0'));
    bad_first.storage.emplace_back(std::string(ensemble::kSignatureHeader), kVectorSignature);
    expect(bad_first, StatusCode::UNAUTHENTICATED, "invalid signature", now);
  }
}

// ---------------------------------------------------------------------------------------
// Over real gRPC

namespace {

using test_support::IdentityServer;
using test_support::Transport;

using test_support::get_identity;

// Opens Subscribe and reads to the end: the events received and the final status.
std::pair<int, grpc::Status> subscribe(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = ensemble::api::EnsembleService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  ensemble::api::SubscribeRequest request;
  auto reader = stub->Subscribe(&context, request);
  ensemble::api::DaemonEvent event;
  int events = 0;
  while (reader->Read(&event)) ++events;
  return {events, reader->Finish()};
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

TEST_CASE("the signing plugin over a real server") {
  const auto transport = GENERATE(Transport::unix_socket, Transport::loopback_tcp);
  INFO("transport: " << test_support::transport_name(transport));
  using grpc::StatusCode;

  TempDir dir;
  auto admin = std::make_shared<const Signer>(vector_seed());
  IdentityServer server(transport, admin->public_key(), dir.path());
  const auto signed_channel = server.channel(ensemble::signing_call_credentials(admin));

  SECTION("a signed call passes and gets the identity") {
    ensemble::api::GetIdentityResponse response;
    const grpc::Status status = get_identity(signed_channel, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    CHECK(response.address() == "EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy");
    CHECK(ensemble::detail::hex_encode(std::span(
              reinterpret_cast<const std::uint8_t*>(response.public_key().data()),
              response.public_key().size())) == kVectorPubkey);
  }
  SECTION("stream opens are signed too") {
    const auto [events, status] = subscribe(signed_channel);
    INFO(status.error_message());
    CHECK(status.ok());
    CHECK(events == 1);
  }
  SECTION("every call gets a fresh timestamp") {
    REQUIRE(get_identity(signed_channel).ok());
    std::this_thread::sleep_for(1100ms);
    REQUIRE(get_identity(signed_channel).ok());
    const auto seen = server.seen_timestamps();
    REQUIRE(seen.size() == 2);
    CHECK(std::stoll(seen[1]) > std::stoll(seen[0]));
  }
  SECTION("many concurrent calls on one channel all pass") {
    std::vector<std::thread> threads;
    std::atomic<int> passed{0};
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 10; ++i) {
          if (get_identity(signed_channel).ok()) ++passed;
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(passed == 80);
  }
  SECTION("an unsigned call: UNAUTHENTICATED missing auth headers") {
    const grpc::Status status = get_identity(server.channel());
    CHECK(status.error_code() == StatusCode::UNAUTHENTICATED);
    CHECK(status.error_message() == "missing auth headers");
    const auto [events, stream_status] = subscribe(server.channel());
    CHECK(events == 0);
    CHECK(stream_status.error_code() == StatusCode::UNAUTHENTICATED);
    CHECK(stream_status.error_message() == "missing auth headers");
  }
  SECTION("a wrong key: PERMISSION_DENIED unauthorized public key") {
    auto stranger = std::make_shared<const Signer>(Seed::generate());
    const auto channel = server.channel(ensemble::signing_call_credentials(stranger));
    const grpc::Status status = get_identity(channel);
    CHECK(status.error_code() == StatusCode::PERMISSION_DENIED);
    CHECK(status.error_message() == "unauthorized public key");
    const auto [events, stream_status] = subscribe(channel);
    CHECK(stream_status.error_code() == StatusCode::PERMISSION_DENIED);
  }
  SECTION("stale or future by 10 minutes: UNAUTHENTICATED timestamp too old") {
    for (std::int64_t skew : {-600, 600}) {
      const auto headers = admin->headers_at(unix_now() + skew);
      const grpc::Status status = get_identity(server.channel(), &headers);
      CHECK(status.error_code() == StatusCode::UNAUTHENTICATED);
      CHECK(status.error_message() == "timestamp too old");
    }
  }
  SECTION("a tampered signature: UNAUTHENTICATED invalid signature") {
    auto headers = admin->headers_at(unix_now());
    headers.signature_hex = flip_hex_digit(headers.signature_hex, 0);
    const grpc::Status status = get_identity(server.channel(), &headers);
    CHECK(status.error_code() == StatusCode::UNAUTHENTICATED);
    CHECK(status.error_message() == "invalid signature");
  }
  SECTION("a signature replayed with another timestamp: invalid signature") {
    auto headers = admin->headers_at(unix_now());
    headers.timestamp = std::to_string(unix_now() - 5);
    const grpc::Status status = get_identity(server.channel(), &headers);
    CHECK(status.error_message() == "invalid signature");
  }
  SECTION("a timestamp exactly 300 s off passes; 301 s does not") {
    const std::int64_t server_time = unix_now();
    server.set_clock(at(server_time));
    for (std::int64_t skew : {-300, 300}) {
      const auto headers = admin->headers_at(server_time + skew);
      const grpc::Status status = get_identity(server.channel(), &headers);
      INFO("skew " << skew << ": " << status.error_message());
      CHECK(status.ok());
    }
    for (std::int64_t skew : {-301, 301}) {
      const auto headers = admin->headers_at(server_time + skew);
      CHECK(get_identity(server.channel(), &headers).error_message() == "timestamp too old");
    }
  }
}

TEST_CASE("signing credentials refuse a null signer") {
  CHECK_THROWS_AS(ensemble::signing_call_credentials(nullptr), AuthError);
}

TEST_CASE("the headers link from two translation units") {
  CHECK(ensemble::is_valid_address(second_tu_address_of_generated_seed()));
}

}  // namespace test_auth
