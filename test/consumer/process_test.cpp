// A bot's process-level test: the daemon double as a process of its own, ensemble-loopbackd,
// which the build found and passes as argv[1] (Meson: find_program('ensemble-loopbackd');
// CMake: $<TARGET_FILE:ensemble::loopbackd>). It listens on a Unix socket in a fresh
// directory; the bot registers "pong" against it, a second service chats with the bot, and
// the test passes when the reply comes back and the daemon stops cleanly on SIGTERM.
#include <ensemble/ensemble.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

// ensemble-loopbackd --api-socket SOCKET, running until stop(). Its stdout is a pipe: the
// daemon prints one "ready ..." line once it accepts calls.
class Loopbackd {
 public:
  Loopbackd(const std::string& exe, const std::string& socket, const std::string& loopback_dir) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    const char* argv[] = {exe.c_str(), "--api-socket", socket.c_str(), "--loopback-dir",
                          loopback_dir.c_str(), nullptr};
    const int spawned = posix_spawn(&pid_, exe.c_str(), &actions, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    if (spawned != 0) {
      ::close(out[0]);
      throw std::runtime_error("cannot start " + exe);
    }
    FILE* lines = ::fdopen(out[0], "r");
    char line[4096];
    while (std::fgets(line, sizeof line, lines) != nullptr) {
      if (std::string(line).starts_with("ready ")) {
        ready_ = true;
        break;
      }
    }
    std::fclose(lines);
    if (!ready_) throw std::runtime_error(exe + " exited before it was ready");
  }
  Loopbackd(const Loopbackd&) = delete;
  Loopbackd& operator=(const Loopbackd&) = delete;
  ~Loopbackd() {
    if (pid_ > 0) stop(SIGKILL);
  }

  // SIGTERM stops it cleanly (exit status 0); returns the raw wait status.
  int stop(int signal = SIGTERM) {
    ::kill(pid_, signal);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: process_test PATH-TO-ENSEMBLE-LOOPBACKD\n";
    return 2;
  }
  char dir_template[] = "/tmp/bot-test-XXXXXX";  // short: a socket path has at most 107 bytes
  if (::mkdtemp(dir_template) == nullptr) {
    std::perror("process_test: mkdtemp");
    return 1;
  }
  const std::filesystem::path dir = dir_template;
  int failed = 1;
  {
    Loopbackd daemon(argv[1], (dir / "api.sock").string(), (dir / "loopback").string());
    {
      ensemble::Client client({.socket_path = (dir / "api.sock").string()});

      auto pong = client.service("pong");  // the bot under test
      ensemble::ChatService* self = pong.get();
      pong->on_chat([self](const ensemble::ChatMessage& m) { self->send_message(m.from_addr, "pong: " + m.text); });
      pong->start();

      std::mutex mu;
      std::condition_variable cv;
      std::string reply;
      auto ping = client.service("ping");
      ping->on_chat([&](const ensemble::ChatMessage& m) {
        std::lock_guard lock(mu);
        reply = m.text;
        cv.notify_all();
      });
      ping->start();
      ping->send_message(pong->address(), "ping");

      std::unique_lock lock(mu);
      if (cv.wait_for(lock, std::chrono::seconds(10), [&] { return !reply.empty(); }) && reply == "pong: ping") {
        failed = 0;
      } else {
        std::cerr << "process_test: no round trip through ensemble-loopbackd (reply \"" << reply << "\")\n";
      }
    }
    const int status = daemon.stop();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::cerr << "process_test: ensemble-loopbackd did not exit 0 on SIGTERM (wait status " << status << ")\n";
      failed = 1;
    }
  }
  std::filesystem::remove_all(dir);
  if (failed == 0) std::cout << "process_test: round trip ok through ensemble-loopbackd\n";
  return failed;
}
