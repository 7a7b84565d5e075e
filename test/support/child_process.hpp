// A program of this build run as a child process, for tests of whole processes (signals,
// exit codes, what they print): stdout and stderr go to one pipe that a thread reads into
// lines as they come, so a test can wait for a line, signal the child and wait for its exit.
// The destructor SIGKILLs and reaps a child that is still running.
#pragma once

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace test_support {

class ChildProcess {
 public:
  // Runs `exe` with `args`, the test's environment plus `env` (a value replaces the test's).
  ChildProcess(const std::string& exe, const std::vector<std::string>& args,
               const std::map<std::string, std::string>& env = {}) {
    // Everything exec needs is built before fork: the child of a threaded process may only
    // call async-signal-safe functions.
    std::vector<std::string> argv_s{exe};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry(*e);
      if (env.count(entry.substr(0, entry.find('='))) == 0) env_s.push_back(entry);
    }
    for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
    std::vector<char*> argv, envp;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);

    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(out[1], 2);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(out[1]);
    reader_ = std::thread([this, fd = out[0]] { read_lines(fd); });
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  ~ChildProcess() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    reader_.join();
  }

  // The first line (from the start) that matches `pattern`, as the match and its groups;
  // nullopt when none came within `timeout` or the child closed its output first.
  std::optional<std::vector<std::string>> wait_line(const std::string& pattern, std::chrono::milliseconds timeout) {
    const std::regex re(pattern);
    std::unique_lock lock(mu_);
    std::optional<std::vector<std::string>> found;
    changed_.wait_for(lock, timeout, [&] {
      for (const auto& line : lines_) {
        std::smatch m;
        if (std::regex_search(line, m, re)) {
          found.emplace(m.begin(), m.end());
          return true;
        }
      }
      return eof_;
    });
    return found;
  }

  std::vector<std::string> lines() {
    std::lock_guard lock(mu_);
    return lines_;
  }

  // Every line, one per line, for a failure message.
  std::string output() {
    std::string all;
    for (const auto& line : lines()) all += line + "\n";
    return all;
  }

  void signal(int sig) { ::kill(pid_, sig); }

  // The exit status, or minus the signal that ended it; nullopt while still running after
  // `timeout`. Also waits for the last of its output.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!status_) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, std::chrono::seconds(5), [&] { return eof_; });
    return status_;
  }

  pid_t pid() const { return pid_; }

 private:
  void read_lines(int fd) {
    FILE* f = ::fdopen(fd, "r");
    char buffer[8192];
    std::string line;
    while (std::fgets(buffer, sizeof buffer, f) != nullptr) {
      line += buffer;
      if (line.empty() || line.back() != '\n') continue;
      line.pop_back();
      {
        std::lock_guard lock(mu_);
        lines_.push_back(std::move(line));
      }
      line.clear();
      changed_.notify_all();
    }
    std::fclose(f);
    std::lock_guard lock(mu_);
    if (!line.empty()) lines_.push_back(line);
    eof_ = true;
    changed_.notify_all();
  }

  pid_t pid_ = -1;
  std::optional<int> status_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
  bool eof_ = false;
};

}  // namespace test_support
