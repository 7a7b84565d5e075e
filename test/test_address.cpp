// Addresses: derivation from a public key (the daemon's vector), Base58Check validation with
// every way it can fail, the AddressError text, and the onion endpoint shape.
#include <catch2/catch.hpp>

#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/detail/base58.hpp>
#include <ensemble/detail/hex.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace test_address {  // this file's names; test_ensemble is a unity build (meson.build)

using ensemble::is_onion_address;
using ensemble::is_valid_address;

namespace {

constexpr const char* kVectorAddress = "EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy";

std::array<std::uint8_t, 32> vector_public_key() {
  const auto bytes = ensemble::detail::hex_decode(
      "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
  std::array<std::uint8_t, 32> key{};
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return key;
}

// Base58Check of `payload` with a correct checksum, whatever the payload.
std::string with_checksum(std::vector<std::uint8_t> payload) {
  const auto sum = ensemble::detail::address_checksum(payload);
  payload.insert(payload.end(), sum.begin(), sum.end());
  return ensemble::detail::base58_encode(payload);
}

std::vector<std::uint8_t> decoded_vector() {
  return *ensemble::detail::base58_decode(kVectorAddress);
}

}  // namespace

TEST_CASE("the daemon's vector: public key 03a107bf...31b8") {
  CHECK(ensemble::address_from_public_key(vector_public_key()) == kVectorAddress);
  CHECK(is_valid_address(kVectorAddress));
}

TEST_CASE("the address of the seed 00..1f, through the Signer") {
  std::array<std::uint8_t, 32> seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i);
  const ensemble::Signer signer(ensemble::Seed::from_bytes(seed));
  CHECK(ensemble::address_from_public_key(signer.public_key()) == kVectorAddress);
}

TEST_CASE("derived addresses start with E, are valid and differ per key") {
  std::string previous;
  for (int i = 0; i < 50; ++i) {
    const ensemble::Signer signer(ensemble::Seed::generate());
    const std::string address = ensemble::address_from_public_key(signer.public_key());
    CHECK(address.front() == 'E');
    CHECK(is_valid_address(address));
    CHECK(address != previous);
    previous = address;
  }
}

TEST_CASE("validation fails on checksum, version, length and alphabet") {
  SECTION("every single-character change breaks the checksum") {
    const std::string good = kVectorAddress;
    for (std::size_t i = 0; i < good.size(); ++i) {
      std::string changed = good;
      changed[i] = changed[i] == 'z' ? 'y' : 'z';
      INFO(changed);
      CHECK_FALSE(is_valid_address(changed));
    }
  }
  SECTION("a flipped checksum byte") {
    auto bytes = decoded_vector();
    bytes.back() ^= 0x01;
    CHECK_FALSE(is_valid_address(ensemble::detail::base58_encode(bytes)));
  }
  SECTION("a correct checksum with the wrong version byte") {
    auto payload = decoded_vector();
    payload.resize(21);
    CHECK(is_valid_address(with_checksum(payload)));
    payload[0] = 0x00;  // Bitcoin's version: a valid Base58Check string, not an Ensemble address
    CHECK_FALSE(is_valid_address(with_checksum(payload)));
    payload[0] = 0x22;
    CHECK_FALSE(is_valid_address(with_checksum(payload)));
  }
  SECTION("fewer than 25 bytes, even with a correct checksum") {
    auto payload = decoded_vector();
    payload.resize(20);  // version + 19 bytes + checksum = 24
    CHECK_FALSE(is_valid_address(with_checksum(payload)));
  }
  SECTION("longer payloads with a correct checksum pass, as the daemon's check allows") {
    auto payload = decoded_vector();
    payload.resize(21);
    payload.push_back(0xab);
    CHECK(is_valid_address(with_checksum(payload)));
  }
  SECTION("truncated and extended strings") {
    const std::string good = kVectorAddress;
    CHECK_FALSE(is_valid_address(good.substr(0, good.size() - 1)));
    CHECK_FALSE(is_valid_address(good + "1"));
    CHECK_FALSE(is_valid_address("1" + good));
  }
  SECTION("characters outside the Base58 alphabet, and junk") {
    for (const std::string& bad : std::vector<std::string>{"", "E", "0", "O", "I", "l", "not-an-address",
                                  "not-a-real-address!!!", " EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy",
                                  "EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy ", "EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gc0",
                                  std::string("Edr\0S8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy", 35),
                                  "1111111111111111111111111", std::string(10000, 'E')}) {
      INFO(bad.size());
      CHECK_FALSE(is_valid_address(bad));
    }
  }
}

TEST_CASE("require_valid_address names the field and quotes the value like the daemon") {
  CHECK_NOTHROW(ensemble::require_valid_address(kVectorAddress, "to_addr"));
  try {
    ensemble::require_valid_address("not-an-address", "manifest.allowlist[0]");
    FAIL("expected an AddressError");
  } catch (const ensemble::AddressError& e) {
    CHECK(std::string(e.what()) ==
          "manifest.allowlist[0] \"not-an-address\" is not a valid ensemble address");
  }
  try {
    ensemble::require_valid_address("a\"b\\c\n\x01", "to_addr");
    FAIL("expected an AddressError");
  } catch (const ensemble::AddressError& e) {
    CHECK(std::string(e.what()) == "to_addr \"a\\\"b\\\\c\\n\\x01\" is not a valid ensemble address");
  }
  CHECK_THROWS_AS(ensemble::require_valid_address("", "to_addr"), ensemble::Error);
}

TEST_CASE("require_valid_address quotes at most 64 bytes of a long value") {
  const std::string huge(1 << 20, 'x');
  try {
    ensemble::require_valid_address(huge, "to_addr");
    FAIL("expected an AddressError");
  } catch (const ensemble::AddressError& e) {
    CHECK(std::string(e.what()) == "to_addr \"" + std::string(64, 'x') +
                                       "\"... (1048576 bytes) is not a valid ensemble address");
  }
}

TEST_CASE("Base58 round-trips, keeping leading zero bytes as '1'") {
  const std::vector<std::vector<std::uint8_t>> inputs = {
      {}, {0}, {0, 0, 1}, {0xff}, {0x00, 0xff, 0x00}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}};
  for (const auto& input : inputs) {
    const std::string text = ensemble::detail::base58_encode(input);
    const auto back = ensemble::detail::base58_decode(text);
    REQUIRE(back);
    CHECK(*back == input);
  }
  CHECK(ensemble::detail::base58_encode(std::vector<std::uint8_t>{0, 0, 1}) == "112");
  // "Hello World!" is a common published Base58 example.
  const std::string hello = "Hello World!";
  CHECK(ensemble::detail::base58_encode(std::vector<std::uint8_t>(hello.begin(), hello.end())) ==
        "2NEpo7TZRRrLZSi2U");
  CHECK_FALSE(ensemble::detail::base58_decode("0OIl"));
}

TEST_CASE("onion endpoints: 56 base32 characters and .onion") {
  const std::string label(56, 'a');
  CHECK(is_onion_address(label + ".onion"));
  CHECK(is_onion_address("pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion"));
  CHECK(is_onion_address(std::string(28, 'A') + std::string(28, '7') + ".onion"));
  CHECK_FALSE(is_onion_address(label));
  CHECK_FALSE(is_onion_address(std::string(55, 'a') + ".onion"));
  CHECK_FALSE(is_onion_address(std::string(57, 'a') + ".onion"));
  CHECK_FALSE(is_onion_address(std::string(16, 'a') + ".onion"));  // v2 is gone
  CHECK_FALSE(is_onion_address(std::string(55, 'a') + "1.onion"));  // 0, 1, 8, 9 not base32
  CHECK_FALSE(is_onion_address(std::string(55, 'a') + "8.onion"));
  CHECK_FALSE(is_onion_address(label + ".onion:80"));
  CHECK_FALSE(is_onion_address(label + ".com"));
  CHECK_FALSE(is_onion_address(label + "xonion"));
  CHECK_FALSE(is_onion_address(""));
  CHECK_FALSE(is_onion_address(kVectorAddress));
}

}  // namespace test_address
