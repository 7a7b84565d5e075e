// Fuzz target: address validation (address.hpp) on arbitrary strings, and the round trip of
// address_from_public_key on the first 32 bytes of every input that has them. Checks:
// is_valid_address never throws and agrees with require_valid_address; a valid address is
// canonical Base58 (decode then encode gives it back) with version 0x21; every derived
// address is valid, 34 characters, and decodes to the key's hash160.
#include <ensemble/address.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

void check_validation(std::string_view text) {
  using namespace ensemble;
  const bool valid = is_valid_address(text);
  try {
    require_valid_address(text, "fuzz");
    require(valid);
  } catch (const AddressError& e) {
    require(!valid);
    // The message quotes the value as Go's %q would: never raw control bytes.
    for (const char c : std::string_view(e.what())) {
      require(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
    }
  }
  if (!valid) return;
  const auto bytes = detail::base58_decode(text);
  require(bytes && bytes->size() >= detail::kAddressMinBytes && (*bytes)[0] == detail::kAddressVersion);
  require(detail::base58_encode(*bytes) == text);
}

void check_round_trip(std::span<const std::uint8_t, 32> public_key) {
  using namespace ensemble;
  const std::string address = address_from_public_key(public_key);
  require(address.size() == 34);
  require(is_valid_address(address));
  const auto bytes = detail::base58_decode(address);
  require(bytes && bytes->size() == detail::kAddressMinBytes);
  const auto hash160 = detail::ripemd160(detail::sha256(public_key));
  require(std::equal(hash160.begin(), hash160.end(), bytes->begin() + 1));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_validation(std::string_view(reinterpret_cast<const char*>(data), size));
  if (size >= 32) check_round_trip(std::span<const std::uint8_t, 32>(data, 32));
  return 0;
}
