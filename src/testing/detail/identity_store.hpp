// The double's keystore: one Ed25519 keypair for the node and one per service name, so an
// address is stable for a name for the life of the double, and across restarts when a data
// directory is given (section 5 item 4 and 8: unregistering keeps the keypair).
//
// Addresses are derived from the real public keys exactly as the daemon does (section 7);
// onions are real Tor v3 labels of the same key (base32 of key, SHA3 checksum, version 3).
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/detail/hex.hpp>
#include <ensemble/errors.hpp>

#include "util.hpp"

#include <openssl/evp.h>
#include <sodium.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ensemble::testing::detail {

// One hosted identity. The seed is kept so the keystore can persist it; nothing in the
// double ever signs with it (there is no peer crypto in a loopback double).
struct Identity {
  std::array<std::uint8_t, 32> seed{};
  std::array<std::uint8_t, 32> public_key{};
  std::string address;
  std::string onion;
};

// The Tor v3 onion name of an Ed25519 public key: base32(pubkey || checksum[0..2] || 0x03)
// where checksum = SHA3-256(".onion checksum" || pubkey || 0x03).
inline std::string onion_from_public_key(std::span<const std::uint8_t, 32> public_key) {
  constexpr std::string_view prefix = ".onion checksum";
  std::array<std::uint8_t, 15 + 32 + 1> input{};
  std::copy(prefix.begin(), prefix.end(), input.begin());
  std::copy(public_key.begin(), public_key.end(), input.begin() + 15);
  input.back() = 0x03;
  std::array<std::uint8_t, 32> digest{};
  unsigned int length = 0;
  if (EVP_Digest(input.data(), input.size(), digest.data(), &length, EVP_sha3_256(), nullptr) !=
      1) {
    throw Error("SHA3-256 is not available from this OpenSSL; it is needed for onion names");
  }
  std::array<std::uint8_t, 35> raw{};
  std::copy(public_key.begin(), public_key.end(), raw.begin());
  raw[32] = digest[0];
  raw[33] = digest[1];
  raw[34] = 0x03;
  return base32_lower(raw) + ".onion";
}

inline Identity identity_from_seed(std::span<const std::uint8_t, 32> seed) {
  ensemble::detail::ensure_sodium();
  Identity id;
  std::copy(seed.begin(), seed.end(), id.seed.begin());
  std::array<std::uint8_t, 64> secret{};
  crypto_sign_seed_keypair(id.public_key.data(), secret.data(), id.seed.data());
  sodium_memzero(secret.data(), secret.size());
  id.address = address_from_public_key(id.public_key);
  id.onion = onion_from_public_key(id.public_key);
  return id;
}

class KeyStore {
 public:
  // `dir` empty: keys live in memory only. Otherwise each key is `<dir>/keys/<name>.seed`
  // (64 hex characters, mode 0600), loaded when present and written when first made.
  explicit KeyStore(std::filesystem::path dir) : dir_(std::move(dir)) {
    if (!dir_.empty()) {
      std::filesystem::create_directories(dir_ / "keys");
      ::chmod((dir_ / "keys").c_str(), 0700);
    }
  }

  // The keypair for `name`, made on first use. A new name gets a fresh random keypair: the daemon never reads a manifest's keypair_seed
  // (daemon-protocol.md section 10), so neither does the double.
  Identity get_or_create(const std::string& name) {
    std::lock_guard lock(mu_);
    if (auto it = keys_.find(name); it != keys_.end()) return it->second;
    if (auto loaded = load(name)) return keys_.emplace(name, *loaded).first->second;
    std::array<std::uint8_t, 32> seed{};
    const Seed fresh = Seed::generate();
    std::copy(fresh.bytes().begin(), fresh.bytes().end(), seed.begin());
    Identity id = identity_from_seed(seed);
    sodium_memzero(seed.data(), seed.size());
    save(name, id);
    return keys_.emplace(name, std::move(id)).first->second;
  }

  std::optional<Identity> find(const std::string& name) const {
    std::lock_guard lock(mu_);
    if (auto it = keys_.find(name); it != keys_.end()) return it->second;
    return std::nullopt;
  }

 private:
  std::filesystem::path file_for(const std::string& name) const {
    return dir_ / "keys" / (name + ".seed");
  }

  std::optional<Identity> load(const std::string& name) const {
    if (dir_.empty()) return std::nullopt;
    std::ifstream in(file_for(name));
    if (!in) return std::nullopt;
    std::string text;
    in >> text;
    std::array<std::uint8_t, 32> seed{};
    if (!ensemble::detail::hex_decode_into(text, seed)) {
      throw Error("key file " + file_for(name).string() + " is not 64 hex characters");
    }
    Identity id = identity_from_seed(seed);
    sodium_memzero(seed.data(), seed.size());
    return id;
  }

  void save(const std::string& name, const Identity& id) const {
    if (dir_.empty()) return;
    const auto path = file_for(name);
    const auto tmp = path.string() + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw Error("cannot write key file " + tmp);
    const std::string text = ensemble::detail::hex_encode(id.seed) + "\n";
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!ok) throw Error("cannot write key file " + tmp);
    std::filesystem::rename(tmp, path);
  }

  std::filesystem::path dir_;
  mutable std::mutex mu_;
  std::map<std::string, Identity> keys_;
};

}  // namespace ensemble::testing::detail
