/// @file
/// Admin-key authentication (daemon-protocol.md section 4): the 32-byte Ed25519 seed, the
/// signer made from it, and the gRPC per-call credentials that sign every call.
///
/// Secrets: a Seed and a Signer wipe their key bytes with sodium_memzero when destroyed, and
/// no message, exception or debug string this header produces ever contains them. Error
/// messages name files and lengths only.
///
/// Threading: Seed and Signer are immutable after construction; a const Signer may sign from
/// any number of threads at once.
#pragma once

#include <ensemble/detail/hex.hpp>
#include <ensemble/errors.hpp>
#include <ensemble/log.hpp>

#include <grpcpp/security/credentials.h>
#include <grpcpp/support/status.h>
#include <grpcpp/support/string_ref.h>
#include <sodium.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ensemble {

namespace detail {

// libsodium must be initialised before first use; sodium_init is itself idempotent, but a
// function-local static makes the "exactly once, any thread" promise explicit and cheap.
inline void ensure_sodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) throw Error("libsodium could not be initialised (sodium_init failed)");
}

}  // namespace detail

/// Metadata keys the daemon reads (lowercase, as gRPC requires).
/// The signer's public key, 64 hex digits.
inline constexpr std::string_view kPubkeyHeader = "x-auth-pubkey";
/// The signing time, Unix seconds.
inline constexpr std::string_view kTimestampHeader = "x-auth-timestamp";
/// The Ed25519 signature of the timestamp, hex.
inline constexpr std::string_view kSignatureHeader = "x-auth-signature";
/// Supervised services present the daemon-minted token here on RegisterService instead of
/// signing (section 4, "Supervised-service token").
inline constexpr std::string_view kServiceTokenHeader = "x-service-token";

/// What Seed::from_file does when the seed file is accessible by group or others.
enum class SeedFileCheck {
  warn,    ///< one line on stderr, like ssh does, then load the seed (the default)
  error,   ///< throw AuthError
  ignore,  ///< say nothing (e.g. a container whose mounted secrets are always 0644)
};

/// An Ed25519 seed: the 32 secret bytes from which the admin keypair is derived.
///
/// Copyable and movable; every instance wipes its bytes when destroyed. A moved-from Seed
/// holds 32 zero bytes, which is still a seed, so do not use one after moving it.
class Seed {
 public:
  /// The length of a seed in bytes.
  static constexpr std::size_t size = 32;

  /// Copies the 32 bytes; each copy wipes its own.
  Seed(const Seed& other) noexcept : bytes_(other.bytes_) {}
  /// Takes the bytes and wipes `other` (it then holds 32 zero bytes).
  Seed(Seed&& other) noexcept : bytes_(other.bytes_) { other.wipe(); }
  /// Copies the 32 bytes.
  Seed& operator=(const Seed& other) noexcept {
    bytes_ = other.bytes_;
    return *this;
  }
  /// Takes the bytes and wipes `other`.
  Seed& operator=(Seed&& other) noexcept {
    if (this != &other) {
      bytes_ = other.bytes_;
      other.wipe();
    }
    return *this;
  }
  ~Seed() { wipe(); }

  /// Exactly 32 bytes; any other length is an AuthError naming the length.
  static Seed from_bytes(std::span<const std::uint8_t> bytes) {
    if (bytes.size() != size) {
      throw AuthError("seed must be exactly 32 bytes, got " + std::to_string(bytes.size()));
    }
    Seed seed;
    std::memcpy(seed.bytes_.data(), bytes.data(), size);
    return seed;
  }

  /// Exactly 64 hex digits (either case, no whitespace). The text itself never appears in
  /// the error, only its length.
  static Seed from_hex(std::string_view hex) {
    if (hex.size() != 2 * size) {
      throw AuthError("seed hex must be exactly 64 hex characters, got " +
                      std::to_string(hex.size()) + " characters");
    }
    Seed seed;
    if (!detail::hex_decode_into(hex, seed.bytes_)) {
      throw AuthError("seed hex must be exactly 64 hex characters, got 64 characters that "
                      "are not all hex digits");
    }
    return seed;
  }

  /// A seed file holds either exactly 32 raw bytes, or 64 hex digits with surrounding
  /// whitespace (e.g. a trailing newline) ignored. A file of exactly 32 bytes is always read
  /// as raw, even if those bytes look like text, as every Ensemble client reads it. Anything
  /// else throws an AuthError that names the file and what was found there. `check` decides
  /// what happens when the file is accessible by group or others (see SeedFileCheck).
  static Seed from_file(const std::filesystem::path& path,
                        SeedFileCheck check = SeedFileCheck::warn);

  /// 32 bytes from libsodium's CSPRNG.
  static Seed generate() {
    detail::ensure_sodium();
    Seed seed;
    randombytes_buf(seed.bytes_.data(), size);
    return seed;
  }

  /// The 32 secret bytes, valid while this Seed lives. Never log them.
  std::span<const std::uint8_t, 32> bytes() const noexcept { return bytes_; }

 private:
  Seed() noexcept : bytes_{} {}
  void wipe() noexcept { sodium_memzero(bytes_.data(), bytes_.size()); }

  std::array<std::uint8_t, size> bytes_;
};

namespace detail {

// Owns a file descriptor and a fixed read buffer, both cleaned up on every exit path: the
// buffer may hold seed bytes, so it is wiped rather than merely freed.
struct SeedFileReader {
  // Large enough for 64 hex digits with generous surrounding whitespace; a bigger file is
  // not a seed file, whatever it holds.
  static constexpr std::size_t kMaxBytes = 4096;

  int fd = -1;
  // One byte over the limit, so a file of exactly kMaxBytes reads whole and only one that
  // grew past the limit after fstat fills the buffer.
  std::array<char, kMaxBytes + 1> buffer{};
  std::size_t length = 0;

  ~SeedFileReader() {
    sodium_memzero(buffer.data(), buffer.size());
    if (fd >= 0) ::close(fd);
  }
};

// Quoted, with control and invisible characters escaped: the path goes into exception texts
// and log lines, which must stay one visible line whatever bytes it holds.
inline std::string quoted_path(const std::filesystem::path& path) { return go_quote(path.string()); }

inline std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

inline bool is_seed_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

}  // namespace detail

inline Seed Seed::from_file(const std::filesystem::path& path, SeedFileCheck check) {
  const std::string name = "seed file " + detail::quoted_path(path);
  const std::string expected = "; expected 32 raw bytes or 64 hex characters";

  detail::SeedFileReader file;
  // O_NONBLOCK keeps a FIFO or device from hanging the open; fstat below rejects them.
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (file.fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw AuthError(name + " does not exist");
    throw AuthError(name + " cannot be opened: " + std::strerror(err));
  }

  // Checks run on the opened descriptor, so what is checked is what is read.
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) {
    throw AuthError(name + " cannot be examined: " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw AuthError(name + " is a directory, not a seed file");
  if (!S_ISREG(st.st_mode)) throw AuthError(name + " is not a regular file");

  if ((st.st_mode & 077) != 0 && check != SeedFileCheck::ignore) {
    const std::string problem = name + " has permissions " + detail::octal_mode(st.st_mode) +
                                " and is accessible by group or others; it holds an admin "
                                "key. Fix with: chmod 600 " + detail::quoted_path(path);
    if (check == SeedFileCheck::error) throw AuthError(problem);
    detail::log(LogLevel::warning, problem);
  }

  const auto file_size = static_cast<std::uintmax_t>(st.st_size);
  if (file_size > detail::SeedFileReader::kMaxBytes) {
    throw AuthError(name + " holds " + std::to_string(file_size) + " bytes" + expected);
  }
  while (file.length < file.buffer.size()) {
    const ssize_t n =
        ::read(file.fd, file.buffer.data() + file.length, file.buffer.size() - file.length);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw AuthError(name + " cannot be read: " + std::strerror(errno));
    }
    if (n == 0) break;
    file.length += static_cast<std::size_t>(n);
  }
  if (file.length > detail::SeedFileReader::kMaxBytes) {
    // The file grew past the limit between fstat and read.
    throw AuthError(name + " holds more than " +
                    std::to_string(detail::SeedFileReader::kMaxBytes) + " bytes" + expected);
  }

  if (file.length == 0) throw AuthError(name + " is empty (0 bytes)" + expected);

  Seed seed;
  if (file.length == size) {
    std::memcpy(seed.bytes_.data(), file.buffer.data(), size);
    return seed;
  }

  std::string_view text(file.buffer.data(), file.length);
  while (!text.empty() && detail::is_seed_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && detail::is_seed_space(text.back())) text.remove_suffix(1);

  if (text.empty()) {
    throw AuthError(name + " holds only whitespace (" + std::to_string(file.length) +
                    " bytes)" + expected);
  }
  if (!detail::is_hex(text)) {
    throw AuthError(name + " holds " + std::to_string(file.length) +
                    " bytes that are neither 32 raw bytes nor hex text (" +
                    std::to_string(text.size()) +
                    " characters after trimming whitespace, not all hex digits)" + expected);
  }
  if (text.size() != 2 * size) {
    throw AuthError(name + " holds " + std::to_string(text.size()) + " hex characters" +
                    (text.size() == file.length
                         ? std::string()
                         : " (" + std::to_string(file.length) + " bytes with whitespace)") +
                    expected);
  }
  detail::hex_decode_into(text, seed.bytes_);
  return seed;
}

/// The three metadata values of one signed call.
struct AuthHeaders {
  std::string pubkey_hex;     ///< x-auth-pubkey
  std::string timestamp;      ///< x-auth-timestamp: Unix seconds, decimal
  std::string signature_hex;  ///< x-auth-signature: Ed25519 over the timestamp's ASCII
};

/// The admin keypair derived from a Seed. Neither copyable nor movable, so exactly one copy
/// of the secret key exists per Signer; share one through std::shared_ptr<const Signer>.
class Signer {
 public:
  /// Derives the keypair from `seed`, which may then be destroyed; AuthError if that fails.
  explicit Signer(const Seed& seed) {
    detail::ensure_sodium();
    if (crypto_sign_seed_keypair(public_key_.data(), secret_key_.data(),
                                 seed.bytes().data()) != 0) {
      throw AuthError("deriving the Ed25519 keypair from the seed failed");
    }
  }
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;
  ~Signer() { sodium_memzero(secret_key_.data(), secret_key_.size()); }

  /// The 32-byte Ed25519 public key (the admin key the daemon checks).
  const std::array<std::uint8_t, 32>& public_key() const noexcept { return public_key_; }
  /// The public key as 64 lowercase hex digits, as sent in x-auth-pubkey.
  std::string public_key_hex() const { return detail::hex_encode(public_key_); }

  /// The 64-byte Ed25519 signature of `message`. Any thread.
  std::array<std::uint8_t, 64> sign(std::string_view message) const {
    std::array<std::uint8_t, 64> signature{};
    crypto_sign_detached(signature.data(), nullptr,
                         reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                         secret_key_.data());
    return signature;
  }

  /// The headers for a call made at `unix_seconds`. Deterministic: useful for test vectors
  /// and for checking what a daemon does with a skewed clock.
  AuthHeaders headers_at(std::int64_t unix_seconds) const {
    AuthHeaders headers{public_key_hex(), std::to_string(unix_seconds), {}};
    headers.signature_hex = detail::hex_encode(sign(headers.timestamp));
    return headers;
  }

  /// The headers for a call made now (the system clock's Unix seconds).
  AuthHeaders headers_now() const {
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    return headers_at(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  }

 private:
  std::array<std::uint8_t, 32> public_key_{};
  std::array<std::uint8_t, 64> secret_key_{};
};

/// True when `signature` is a valid Ed25519 signature of `message` under `public_key`.
inline bool verify_signature(std::span<const std::uint8_t, 32> public_key,
                             std::string_view message,
                             std::span<const std::uint8_t, 64> signature) noexcept {
  try {
    detail::ensure_sodium();
  } catch (...) {
    return false;
  }
  return crypto_sign_verify_detached(signature.data(),
                                     reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), public_key.data()) == 0;
}

/// gRPC per-call credentials: adds x-auth-pubkey / x-auth-timestamp / x-auth-signature with a
/// fresh timestamp to every call, including each stream open. Signing is fast and never
/// blocks, so it runs inline on gRPC's thread (IsBlocking() is false).
class SigningPlugin final : public grpc::MetadataCredentialsPlugin {
 public:
  /// Signs with `signer`, shared with whoever else holds it; a null pointer is an AuthError.
  explicit SigningPlugin(std::shared_ptr<const Signer> signer) : signer_(std::move(signer)) {
    if (!signer_) throw AuthError("SigningPlugin needs a Signer, got a null pointer");
  }

  /// False: signing never blocks, so gRPC runs it inline.
  bool IsBlocking() const override { return false; }
  /// The credential type gRPC reports: "ensemble-admin-signature".
  const char* GetType() const override { return "ensemble-admin-signature"; }

  /// Adds the three signed headers of a fresh timestamp to `metadata`; gRPC calls it for every
  /// call and stream open, on its own thread.
  grpc::Status GetMetadata(grpc::string_ref /*service_url*/, grpc::string_ref /*method_name*/,
                           const grpc::AuthContext& /*channel_auth_context*/,
                           std::multimap<grpc::string, grpc::string>* metadata) override {
    try {
      AuthHeaders headers = signer_->headers_now();
      metadata->emplace(std::string(kPubkeyHeader), std::move(headers.pubkey_hex));
      metadata->emplace(std::string(kTimestampHeader), std::move(headers.timestamp));
      metadata->emplace(std::string(kSignatureHeader), std::move(headers.signature_hex));
      return grpc::Status::OK;
    } catch (const std::exception& e) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          std::string("signing the call failed: ") + e.what());
    }
  }

  /// Only public facts: the plugin kind and the public key.
  grpc::string DebugString() override {
    return "ensemble SigningPlugin(pubkey=" + signer_->public_key_hex() + ")";
  }

 private:
  std::shared_ptr<const Signer> signer_;
};

/// Call credentials that sign every call with `signer`. Over a plaintext channel compose them
/// with grpc::experimental::LocalCredentials (UDS for a Unix socket, LOCAL_TCP for loopback
/// TCP); over TLS, with the SSL credentials. gRPC only attaches them to a channel whose
/// security level is at least privacy-and-integrity, which local credentials of either kind
/// and TLS both provide; on any other channel the call fails rather than going out unsigned.
inline std::shared_ptr<grpc::CallCredentials> signing_call_credentials(
    std::shared_ptr<const Signer> signer) {
  return grpc::MetadataCredentialsFromPlugin(std::make_unique<SigningPlugin>(std::move(signer)));
}

/// The same with an explicit floor for the channel's security level, for a custom channel
/// credential that gRPC rates lower.
inline std::shared_ptr<grpc::CallCredentials> signing_call_credentials(
    std::shared_ptr<const Signer> signer, grpc_security_level min_security_level) {
  return grpc::experimental::MetadataCredentialsFromPlugin(
      std::make_unique<SigningPlugin>(std::move(signer)), min_security_level);
}

}  // namespace ensemble
