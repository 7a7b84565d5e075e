// The examples' command line: a handful of flags, no library. Each example declares its
// flags, parse() answers --help (exit 0) and turns every mistake into one line on stderr that
// names the flag (exit 2). Values come as `--flag VALUE` or `--flag=VALUE`.
//
// Exit codes shared by every example:
//   0  done (a --demo that saw everything it expected, or a bot closed by Ctrl-C / SIGTERM)
//   1  the daemon refused us, went away, or a --demo missed something it expected
//   2  a bad flag, or flags that do not fit together
#pragma once

#include <ensemble/auth.hpp>
#include <ensemble/client_options.hpp>
#include <ensemble/errors.hpp>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace examples {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

class Cli {
 public:
  Cli(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  // A switch: --name.
  Cli& flag(std::string name, std::string help) {
    specs_.push_back({std::move(name), {}, std::move(help), false});
    return *this;
  }
  // A flag that takes a value: --name VALUE. `repeatable` flags may be given more than once.
  Cli& option(std::string name, std::string metavar, std::string help, bool repeatable = false) {
    specs_.push_back({std::move(name), std::move(metavar), std::move(help), repeatable});
    return *this;
  }
  // Text after the flag list in --help: what the program does, exit codes, examples.
  Cli& epilog(std::string text) {
    epilog_ = std::move(text);
    return *this;
  }

  // Exits the process on --help (0) and on any mistake (2).
  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::fputs(usage().c_str(), stdout);
        std::exit(kExitOk);
      }
      if (!arg.starts_with("--") || arg.size() == 2) {
        fail("unexpected argument \"" + std::string(arg) + "\" (flags start with --)");
      }
      std::string name(arg.substr(2));
      std::optional<std::string> inline_value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name.resize(eq);
      }
      const Spec* spec = find(name);
      if (spec == nullptr) fail("unknown flag --" + name);
      if (spec->metavar.empty()) {
        if (inline_value) fail("--" + name + " takes no value");
        if (values_.count(name)) fail("--" + name + " given twice");
        values_[name].push_back({});
        continue;
      }
      std::string value;
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        fail("--" + name + " needs a value (" + spec->metavar + ")");
      }
      if (!spec->repeatable && values_.count(name)) fail("--" + name + " given twice");
      values_[name].push_back(std::move(value));
    }
  }

  bool has(std::string_view name) const { return values_.count(std::string(name)) != 0; }

  std::string get(std::string_view name, std::string fallback = {}) const {
    auto it = values_.find(std::string(name));
    return it == values_.end() ? fallback : it->second.back();
  }

  std::vector<std::string> all(std::string_view name) const {
    auto it = values_.find(std::string(name));
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }

  // A whole number in [min, max]; anything else is a usage error naming the flag.
  long long number(std::string_view name, long long fallback, long long min, long long max) const {
    if (!has(name)) return fallback;
    const std::string text = get(name);
    long long value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
      fail("--" + std::string(name) + " must be a whole number from " + std::to_string(min) +
           " to " + std::to_string(max) + ", got \"" + text + "\"");
    }
    return value;
  }

  // One line naming the problem, a pointer to --help, exit 2.
  [[noreturn]] void fail(const std::string& message) const {
    std::fprintf(stderr, "%s: %s\nTry '%s --help'.\n", program_.c_str(), message.c_str(),
                 program_.c_str());
    std::exit(kExitUsage);
  }

  const std::string& program() const noexcept { return program_; }

  std::string usage() const {
    std::ostringstream out;
    out << "Usage: " << program_ << " [FLAGS]\n" << summary_ << "\n\nFlags:\n";
    for (const Spec& s : specs_) {
      std::string left = "  --" + s.name + (s.metavar.empty() ? "" : " " + s.metavar);
      if (left.size() < 26) left.resize(26, ' ');
      else left += "\n" + std::string(26, ' ');
      out << left << s.help << (s.repeatable ? " (repeatable)" : "") << "\n";
    }
    out << "  --help                  this text\n";
    if (!epilog_.empty()) out << "\n" << epilog_ << "\n";
    out << "\nExit codes: 0 done, 1 the daemon refused or went away (or a --demo missed\n"
           "something it expected), 2 bad flags.\n";
    return out.str();
  }

 private:
  struct Spec {
    std::string name;
    std::string metavar;  // empty for a switch
    std::string help;
    bool repeatable;
  };

  const Spec* find(const std::string& name) const {
    for (const Spec& s : specs_) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }

  std::string program_;
  std::string summary_;
  std::string epilog_;
  std::vector<Spec> specs_;
  std::map<std::string, std::vector<std::string>> values_;
};

// The flags every example uses to reach a daemon.
inline void add_connection_flags(Cli& cli) {
  cli.option("socket", "PATH", "the daemon's Unix socket (e.g. /run/ensemble/sock)")
      .option("addr", "HOST:PORT", "the daemon's TCP address (e.g. localhost:9090)")
      .flag("tls", "TLS to --addr, verified against the system trust store")
      .option("tls-ca", "FILE", "TLS, verified against this PEM bundle instead (implies --tls)")
      .flag("tls-insecure", "TLS without verifying the daemon at all; development only")
      .option("seed", "FILE", "admin seed file (32 raw bytes or 64 hex); signs every call");
}

inline std::string read_text_file(const Cli& cli, std::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) cli.fail("--" + std::string(flag) + ": cannot read \"" + path + "\"");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ClientOptions from the connection flags, or nullopt when neither --socket nor --addr was
// given (the caller then falls back to the environment, as a supervised service must).
// Flags that do not fit together fail here, naming them, before any connection is tried.
inline std::optional<ensemble::ClientOptions> connection_options(const Cli& cli) {
  const bool tls = cli.has("tls") || cli.has("tls-ca") || cli.has("tls-insecure");
  if (cli.has("socket") && cli.has("addr")) cli.fail("give --socket or --addr, not both");
  if (tls && cli.has("socket")) cli.fail("--tls, --tls-ca and --tls-insecure apply to --addr only");
  if (!cli.has("socket") && !cli.has("addr")) {
    if (tls) cli.fail("--tls, --tls-ca and --tls-insecure need --addr");
    if (cli.has("seed")) cli.fail("--seed needs --socket or --addr");
    return std::nullopt;
  }
  ensemble::ClientOptions options;
  options.socket_path = cli.get("socket");
  options.addr = cli.get("addr");
  options.tls = cli.has("tls");
  options.tls_insecure = cli.has("tls-insecure");
  if (cli.has("tls-ca")) options.tls_root_certs = read_text_file(cli, "tls-ca", cli.get("tls-ca"));
  if (cli.has("seed")) {
    try {
      options.auth_seed = ensemble::Seed::from_file(cli.get("seed"));
    } catch (const ensemble::AuthError& e) {
      cli.fail(std::string("--seed: ") + e.what());
    }
  }
  return options;
}

}  // namespace examples
