// Fuzz target: Seed::from_file (auth.hpp) on arbitrary file contents. The bytes go into one
// private temp file per process, rewritten for each input. Checks: a file of exactly 32
// bytes is those bytes; otherwise a seed comes only from 64 hex digits inside whitespace in
// a file of at most 4096 bytes (and equals Seed::from_hex of them); everything else is an
// AuthError, and no error message ever repeats a run of hex digits from the file (a
// near-miss seed is still a secret).
#include <ensemble/auth.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

// Memory-backed when possible. On a disk file system (ext4 under /tmp here) rewriting the
// file for each input starts writeback of its pages (ext4 flushes a file truncated and then
// closed), and the next ftruncate and read wait for it: over 1 ms each, which held the
// fuzzer to a few hundred executions a second. from_file reads a tmpfs file the same way.
std::filesystem::path temp_dir() {
  std::error_code ec;
  if (std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK | X_OK) == 0) {
    return "/dev/shm";
  }
  return std::filesystem::temp_directory_path();
}

// The temp file, created on first use and removed at exit.
class SeedFile {
 public:
  SeedFile() {
    std::string pattern = (temp_dir() / "ensemble-fuzz-seed-XXXXXX").string();
    fd_ = ::mkstemp(pattern.data());  // mode 0600: the permission check stays quiet
    if (fd_ < 0) {
      std::perror("fuzz_seed_file: mkstemp");
      std::abort();
    }
    path_ = pattern;
  }
  ~SeedFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }

  const std::string& write(const std::uint8_t* data, std::size_t size) {
    require(::ftruncate(fd_, 0) == 0);
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      require(n > 0);
      done += static_cast<std::size_t>(n);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// True when `message` contains any run of at least 16 hex digits taken from `content`. The
// messages name a path (six random characters) and counts, never 16 hex digits in a row.
// Walks the hex runs of the short message, not those of the content (up to 4096 digits,
// each window a substring search): the same answer, since a shared run of 16 is a hex run
// in both, without the quadratic cost that took a third of the fuzzer's time.
bool repeats_hex_run(std::string_view message, std::string_view content) {
  constexpr std::size_t run = 16;
  std::size_t start = 0;
  while (start < message.size()) {
    std::size_t end = start;
    while (end < message.size() && ensemble::detail::hex_digit_value(message[end]) >= 0) ++end;
    for (std::size_t i = start; i + run <= end; ++i) {
      if (content.find(message.substr(i, run)) != std::string_view::npos) return true;
    }
    start = end + 1;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using ensemble::Seed;
  static SeedFile file;
  const std::string& path = file.write(data, size);
  const std::string_view content(reinterpret_cast<const char*>(data), size);
  const std::string_view text = trim(content);
  const bool hex_seed = size != Seed::size && size <= ensemble::detail::SeedFileReader::kMaxBytes &&
                        text.size() == 2 * Seed::size && ensemble::detail::is_hex(text);

  try {
    const Seed seed = Seed::from_file(path, ensemble::SeedFileCheck::error);
    require(size == Seed::size || hex_seed);
    if (size == Seed::size) {
      require(std::equal(seed.bytes().begin(), seed.bytes().end(), data));
    } else {
      const Seed expected = Seed::from_hex(text);
      require(std::equal(seed.bytes().begin(), seed.bytes().end(), expected.bytes().begin()));
    }
  } catch (const ensemble::AuthError& e) {
    require(size != Seed::size && !hex_seed);
    require(!repeats_hex_run(e.what(), content));
  }
  return 0;
}
