// Runs build/ensemble-loopbackd as a child process for tests that need a daemon they can
// kill or restart: the binary comes from $ENSEMBLE_LOOPBACKD (meson test sets it), the
// ready line is parsed into key=value pairs, and the destructor SIGKILLs what is left.
#pragma once

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace test_support {

inline bool have_loopbackd() { return std::getenv("ENSEMBLE_LOOPBACKD") != nullptr; }

// The arguments of a daemon in `dir` that a test kills and starts again: the same socket
// (dir/api.sock), and a data directory so that every start has the same node and service
// keys, so the same addresses.
inline std::vector<std::string> restartable_daemon_args(const std::filesystem::path& dir) {
  return {"--api-socket", (dir / "api.sock").string(), "--data-dir", (dir / "data").string(),
          "--loopback-dir", (dir / "rdv").string()};
}

class LoopbackdProcess {
 public:
  explicit LoopbackdProcess(const std::vector<std::string>& args) {
    const char* exe = std::getenv("ENSEMBLE_LOOPBACKD");
    REQUIRE(exe != nullptr);
    int out[2];
    REQUIRE(::pipe(out) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<char*> argv{const_cast<char*>(exe)};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(exe, argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    FILE* f = ::fdopen(out[0], "r");
    char line[4096];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      std::istringstream words{std::string(line)};
      std::string word;
      words >> word;
      if (word == "token") {
        std::string name, token;
        words >> name >> token;
        tokens_[name] = token;
      } else if (word == "ready") {
        while (words >> word) {
          const auto eq = word.find('=');
          ready_[word.substr(0, eq)] = word.substr(eq + 1);
        }
        break;
      }
    }
    std::fclose(f);
    REQUIRE(!ready_.empty());
  }

  LoopbackdProcess(const LoopbackdProcess&) = delete;
  LoopbackdProcess& operator=(const LoopbackdProcess&) = delete;

  ~LoopbackdProcess() {
    if (pid_ > 0) stop(SIGKILL);
  }

  // Sends `sig` and reaps the process: its exit status, or minus the signal that ended it.
  int stop(int sig = SIGTERM) {
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  // A field of the ready line ("node", "api-socket", "api-addr", ...); "" when absent.
  std::string ready(const std::string& key) const {
    auto it = ready_.find(key);
    return it == ready_.end() ? std::string() : it->second;
  }
  std::string token(const std::string& name) const {
    auto it = tokens_.find(name);
    return it == tokens_.end() ? std::string() : it->second;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::map<std::string, std::string> ready_;
  std::map<std::string, std::string> tokens_;
};

}  // namespace test_support
