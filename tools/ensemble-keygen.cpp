// ensemble-keygen: makes the admin seed a client signs with, and tells you the public key to
// configure the daemon with.
//
//   ensemble-keygen --out FILE [--force]   write a new seed file (64 hex + newline, mode 0600)
//   ensemble-keygen --show FILE            print the public key and address of a seed file
//
// The seed file is created complete or not at all: the seed goes to a private temporary
// file in the same directory, which is then linked to FILE (fails if FILE exists) or, with
// --force, renamed over it. No reader ever sees a partial or group-readable seed.
#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/version.hpp>

#include <sodium.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr std::string_view kUsage =
    "usage: ensemble-keygen --out FILE [--force]\n"
    "       ensemble-keygen --show FILE\n"
    "\n"
    "Makes and inspects Ensemble admin seeds (32-byte Ed25519 seeds).\n"
    "\n"
    "  --out FILE    write a new random seed to FILE as 64 hex characters and a newline,\n"
    "                mode 0600; refuses to overwrite an existing FILE\n"
    "  --force       with --out: replace FILE if it exists\n"
    "  --show FILE   read an existing seed file (32 raw bytes or 64 hex characters)\n"
    "  --help        print this help\n"
    "  --version     print the ensemble-cpp version\n"
    "\n"
    "Both print the public key (hex) and the address on stdout:\n"
    "  public key: <64 hex characters>   give this to the daemon as its admin key\n"
    "  address:    <Ensemble address of that key>\n";

// Failure the user can fix; main prints it and exits non-zero.
struct Failure {
  std::string message;
};

std::string errno_text(int err) { return std::strerror(err); }

void print_identity(const ensemble::Seed& seed) {
  const ensemble::Signer signer(seed);
  std::printf("public key: %s\naddress:    %s\n", signer.public_key_hex().c_str(),
              ensemble::address_from_public_key(signer.public_key()).c_str());
}

// Writes all of `data` or throws.
void write_all(int fd, const char* data, std::size_t size, const std::string& what) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Failure{"cannot write " + what + ": " + errno_text(errno)};
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// Removes the temporary file unless release() was called.
struct TempFile {
  std::string path;
  int fd = -1;
  bool keep = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!path.empty() && !keep) ::unlink(path.c_str());
  }
};

void write_new_seed(const std::filesystem::path& out, bool force) {
  const std::filesystem::path dir = out.has_parent_path() ? out.parent_path() : ".";
  const std::string shown = "\"" + out.string() + "\"";

  if (!force) {
    struct stat st {};
    if (::lstat(out.c_str(), &st) == 0) {
      throw Failure{shown + " already exists; refusing to overwrite it (pass --force to "
                    "replace it, which makes the old key useless)"};
    }
  }

  TempFile temp;
  temp.path = (dir / ("." + out.filename().string() + ".tmp-XXXXXX")).string();
  // mkstemp opens with O_EXCL and mode 0600.
  temp.fd = ::mkstemp(temp.path.data());
  if (temp.fd < 0) {
    const int err = errno;
    temp.path.clear();
    throw Failure{"cannot create a file in \"" + dir.string() + "\": " + errno_text(err)};
  }
  if (::fchmod(temp.fd, 0600) != 0) {
    throw Failure{"cannot set mode 0600 on " + temp.path + ": " + errno_text(errno)};
  }

  const ensemble::Seed seed = ensemble::Seed::generate();
  std::array<char, 2 * ensemble::Seed::size + 1> text{};
  static constexpr char digits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < ensemble::Seed::size; ++i) {
    text[2 * i] = digits[seed.bytes()[i] >> 4];
    text[2 * i + 1] = digits[seed.bytes()[i] & 0x0f];
  }
  text.back() = '\n';
  try {
    write_all(temp.fd, text.data(), text.size(), temp.path);
  } catch (...) {
    sodium_memzero(text.data(), text.size());
    throw;
  }
  sodium_memzero(text.data(), text.size());
  if (::fsync(temp.fd) != 0) throw Failure{"cannot flush " + temp.path + ": " + errno_text(errno)};

  if (force) {
    if (::rename(temp.path.c_str(), out.c_str()) != 0) {
      throw Failure{"cannot replace " + shown + ": " + errno_text(errno)};
    }
    temp.keep = true;  // it is now `out`
  } else {
    // link() creates `out` only if it does not exist, atomically.
    if (::link(temp.path.c_str(), out.c_str()) != 0) {
      const int err = errno;
      if (err == EEXIST) {
        throw Failure{shown + " already exists; refusing to overwrite it (pass --force to "
                      "replace it, which makes the old key useless)"};
      }
      throw Failure{"cannot create " + shown + ": " + errno_text(err)};
    }
  }

  // Make the new directory entry durable too; failure here is not worth failing over.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }

  std::fprintf(stderr, "ensemble-keygen: wrote a new seed to %s (mode 0600)\n", shown.c_str());
  print_identity(seed);
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "ensemble-keygen: %s\nRun 'ensemble-keygen --help' for usage.\n",
               message.c_str());
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> out;
  std::optional<std::string> show;
  bool force = false;

  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto take_value = [&](std::string_view flag) -> std::optional<std::string> {
      if (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag &&
          arg[flag.size()] == '=') {
        return std::string(arg.substr(flag.size() + 1));
      }
      if (arg == flag) {
        if (i + 1 >= argc) return std::nullopt;
        return std::string(argv[++i]);
      }
      return std::nullopt;
    };

    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage.data(), stdout);
      return kExitOk;
    }
    if (arg == "--version") {
      std::printf("ensemble-keygen (ensemble-cpp) %s\n", ENSEMBLE_CLIENT_VERSION_STRING);
      return kExitOk;
    }
    if (arg == "--force") {
      force = true;
      continue;
    }
    if (arg == "--out" || arg.starts_with("--out=")) {
      if (out) return usage_error("--out given twice");
      out = take_value("--out");
      if (!out || out->empty()) return usage_error("--out needs a file name");
      continue;
    }
    if (arg == "--show" || arg.starts_with("--show=")) {
      if (show) return usage_error("--show given twice");
      show = take_value("--show");
      if (!show || show->empty()) return usage_error("--show needs a file name");
      continue;
    }
    return usage_error("unknown argument '" + std::string(arg) + "'");
  }

  if (out && show) return usage_error("give either --out or --show, not both");
  if (force && !out) return usage_error("--force only applies to --out");
  if (!out && !show) return usage_error("nothing to do: give --out FILE or --show FILE");

  try {
    if (out) {
      write_new_seed(*out, force);
    } else {
      print_identity(ensemble::Seed::from_file(*show));
    }
    return kExitOk;
  } catch (const Failure& f) {
    std::fprintf(stderr, "ensemble-keygen: %s\n", f.message.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ensemble-keygen: %s\n", e.what());
  }
  return kExitFailure;
}
