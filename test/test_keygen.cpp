// ensemble-keygen, run as the built binary (its path comes in ENSEMBLE_KEYGEN): the file it
// writes (mode 0600 whatever the umask, 64 hex + newline, never overwritten without
// --force), what it prints, its errors, and that the seed it writes signs calls a server
// checking auth like the daemon accepts with the printed public key.
#include <catch2/catch.hpp>

#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/detail/hex.hpp>
#include <ensemble/client.hpp>
#include <ensemble/testing/daemon_double.hpp>
#include <ensemble/version.hpp>

#include "support/identity_server.hpp"
#include "support/tempdir.hpp"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test_keygen {  // this file's names; test_ensemble is a unity build (meson.build)

using test_support::TempDir;

namespace {

struct Run {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string keygen_path() {
  const char* path = std::getenv("ENSEMBLE_KEYGEN");
  if (path == nullptr || *path == '\0') {
    FAIL("ENSEMBLE_KEYGEN is not set; run this test through `meson test`");
  }
  return path;
}

// Runs ensemble-keygen with `args` (no shell involved), under `umask_value` if given.
Run keygen(const std::vector<std::string>& args, std::optional<mode_t> umask_value = {}) {
  TempDir io;
  const auto out_path = io / "stdout";
  const auto err_path = io / "stderr";
  const std::string program = keygen_path();

  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out_fd < 0 || err_fd < 0) ::_exit(126);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    if (umask_value) ::umask(*umask_value);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  Run run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = test_support::read_file(out_path);
  run.err = test_support::read_file(err_path);
  return run;
}

// The value printed after "<label>:" (and spaces) at the start of a stdout line.
std::string printed(const Run& run, const std::string& label) {
  const std::string prefix = label + ":";
  std::size_t start = 0;
  while (start < run.out.size()) {
    std::size_t end = run.out.find('\n', start);
    if (end == std::string::npos) end = run.out.size();
    const std::string_view line(run.out.data() + start, end - start);
    if (line.starts_with(prefix)) {
      std::string_view value = line.substr(prefix.size());
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      return std::string(value);
    }
    start = end + 1;
  }
  FAIL("no '" << prefix << "' line in stdout:\n" << run.out);
  return {};
}

// 64 lowercase hex digits and a newline: the format ensemble-keygen writes.
bool is_seed_file_text(const std::string& text) {
  return text.size() == 65 && text.back() == '\n' &&
         std::all_of(text.begin(), text.end() - 1, [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::array<std::uint8_t, 32> key_from_hex(const std::string& hex) {
  std::array<std::uint8_t, 32> key{};
  REQUIRE(ensemble::detail::hex_decode_into(hex, key));
  return key;
}

std::vector<std::string> directory_entries(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

}  // namespace

TEST_CASE("--out writes a 0600 seed file of 64 hex characters and a newline") {
  TempDir dir;
  const auto seed_path = dir / "admin.seed";
  const Run run = keygen({"--out", seed_path.string()});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);

  CHECK(test_support::file_mode(seed_path) == 0600);
  const std::string content = test_support::read_file(seed_path);
  CHECK(is_seed_file_text(content));
  // Nothing else is left behind (no temporary file).
  CHECK(directory_entries(dir.path()) == std::vector<std::string>{"admin.seed"});

  // What it prints is what the library derives from the file.
  const ensemble::Seed seed = ensemble::Seed::from_file(seed_path, ensemble::SeedFileCheck::error);
  const ensemble::Signer signer(seed);
  CHECK(printed(run, "public key") == signer.public_key_hex());
  CHECK(printed(run, "address") == ensemble::address_from_public_key(signer.public_key()));
  CHECK(ensemble::is_valid_address(printed(run, "address")));
  CHECK_THAT(run.err, Catch::Contains(seed_path.string()));
  // The secret never reaches the terminal.
  CHECK_THAT(run.out + run.err, !Catch::Contains(content.substr(0, 64)));
}

TEST_CASE("--out gives mode 0600 whatever the umask") {
  TempDir dir;
  for (mode_t mask : {0000u, 0022u, 0077u}) {
    const auto seed_path = dir / ("seed-" + std::to_string(mask));
    const Run run = keygen({"--out=" + seed_path.string()}, mask);
    INFO("umask " << mask << ": " << run.err);
    REQUIRE(run.exit_code == 0);
    CHECK(test_support::file_mode(seed_path) == 0600);
  }
}

TEST_CASE("every run makes a different seed") {
  TempDir dir;
  const Run a = keygen({"--out", (dir / "a").string()});
  const Run b = keygen({"--out", (dir / "b").string()});
  REQUIRE(a.exit_code == 0);
  REQUIRE(b.exit_code == 0);
  CHECK(test_support::read_file(dir / "a") != test_support::read_file(dir / "b"));
  CHECK(printed(a, "public key") != printed(b, "public key"));
}

TEST_CASE("an existing file is never overwritten without --force") {
  TempDir dir;
  const auto seed_path = dir / "admin.seed";
  REQUIRE(keygen({"--out", seed_path.string()}).exit_code == 0);
  const std::string original = test_support::read_file(seed_path);

  const Run again = keygen({"--out", seed_path.string()});
  CHECK(again.exit_code == 1);
  CHECK_THAT(again.err, Catch::Contains(seed_path.string()));
  CHECK_THAT(again.err, Catch::Contains("already exists"));
  CHECK_THAT(again.err, Catch::Contains("--force"));
  CHECK(again.out.empty());
  CHECK(test_support::read_file(seed_path) == original);
  CHECK(directory_entries(dir.path()) == std::vector<std::string>{"admin.seed"});

  SECTION("nor any other existing entry: a directory, a dangling symlink") {
    std::filesystem::create_directory(dir / "sub");
    CHECK(keygen({"--out", (dir / "sub").string()}).exit_code == 1);
    std::filesystem::create_symlink(dir / "nowhere", dir / "dangling");
    CHECK(keygen({"--out", (dir / "dangling").string()}).exit_code == 1);
    CHECK_FALSE(std::filesystem::exists(dir / "nowhere"));
  }
  SECTION("--force replaces it with a new 0600 seed") {
    std::filesystem::permissions(seed_path, std::filesystem::perms(0644));
    const Run forced = keygen({"--out", seed_path.string(), "--force"});
    INFO(forced.err);
    REQUIRE(forced.exit_code == 0);
    const std::string replaced = test_support::read_file(seed_path);
    CHECK(replaced != original);
    CHECK(is_seed_file_text(replaced));
    CHECK(test_support::file_mode(seed_path) == 0600);
    CHECK(printed(forced, "public key") ==
          ensemble::Signer(ensemble::Seed::from_file(seed_path)).public_key_hex());
    CHECK(directory_entries(dir.path()) == std::vector<std::string>{"admin.seed"});
  }
}

TEST_CASE("--show prints the public key and address of an existing seed") {
  TempDir dir;
  SECTION("a seed ensemble-keygen wrote") {
    const auto seed_path = dir / "admin.seed";
    const Run made = keygen({"--out", seed_path.string()});
    REQUIRE(made.exit_code == 0);
    const Run shown = keygen({"--show", seed_path.string()});
    REQUIRE(shown.exit_code == 0);
    CHECK(printed(shown, "public key") == printed(made, "public key"));
    CHECK(printed(shown, "address") == printed(made, "address"));
  }
  SECTION("the known vector, as 32 raw bytes") {
    std::string raw;
    for (int i = 0; i < 32; ++i) raw.push_back(static_cast<char>(i));
    test_support::write_file(dir / "raw.seed", raw);
    const Run shown = keygen({"--show", (dir / "raw.seed").string()});
    REQUIRE(shown.exit_code == 0);
    CHECK(printed(shown, "public key") ==
          "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
    CHECK(printed(shown, "address") == "EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy");
  }
  SECTION("a group-readable seed still shows, with the ssh-style warning") {
    test_support::write_file(dir / "open.seed", std::string(64, 'a') + "\n", 0644);
    const Run shown = keygen({"--show", (dir / "open.seed").string()});
    CHECK(shown.exit_code == 0);
    CHECK_THAT(shown.err, Catch::Contains("chmod 600"));
  }
  SECTION("a missing file") {
    const Run shown = keygen({"--show", (dir / "absent").string()});
    CHECK(shown.exit_code == 1);
    CHECK_THAT(shown.err, Catch::Contains((dir / "absent").string()));
    CHECK_THAT(shown.err, Catch::Contains("does not exist"));
  }
  SECTION("a file that is not a seed names what it found") {
    test_support::write_file(dir / "short.seed", std::string(63, 'a') + "\n");
    const Run shown = keygen({"--show", (dir / "short.seed").string()});
    CHECK(shown.exit_code == 1);
    CHECK_THAT(shown.err, Catch::Contains("63 hex characters"));
    CHECK(shown.out.empty());
  }
}

TEST_CASE("usage errors exit 2 with a message; --help and --version exit 0") {
  const Run help = keygen({"--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("--out FILE"));
  CHECK_THAT(help.out, Catch::Contains("--show FILE"));
  CHECK_THAT(help.out, Catch::Contains("--force"));

  const Run version = keygen({"--version"});
  CHECK(version.exit_code == 0);
  CHECK_THAT(version.out, Catch::Contains(ENSEMBLE_CLIENT_VERSION_STRING));

  TempDir dir;
  const std::string file = (dir / "x").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "nothing to do"},
      {{"--bogus"}, "unknown argument '--bogus'"},
      {{"--out"}, "--out needs a file name"},
      {{"--out="}, "--out needs a file name"},
      {{"--show"}, "--show needs a file name"},
      {{"--out", file, "--show", file}, "either --out or --show"},
      {{"--force"}, "--force only applies to --out"},
      {{"--out", file, "--out", file}, "--out given twice"},
  };
  for (const auto& [args, message] : cases) {
    const Run run = keygen(args);
    INFO(message);
    CHECK(run.exit_code == 2);
    CHECK_THAT(run.err, Catch::Contains(message));
    CHECK_THAT(run.err, Catch::Contains("--help"));
  }
  CHECK_FALSE(std::filesystem::exists(file));
}

TEST_CASE("--out into a directory that does not exist fails clearly") {
  TempDir dir;
  const auto path = dir / "no" / "such" / "admin.seed";
  const Run run = keygen({"--out", path.string()});
  CHECK(run.exit_code == 1);
  CHECK_THAT(run.err, Catch::Contains((dir / "no" / "such").string()));
  CHECK_THAT(run.err, Catch::Contains("No such file or directory"));
}

TEST_CASE("a generated seed signs calls that the daemon's check accepts with its public key") {
  const auto transport =
      GENERATE(test_support::Transport::unix_socket, test_support::Transport::loopback_tcp);
  TempDir dir;
  const auto seed_path = dir / "admin.seed";
  const Run made = keygen({"--out", seed_path.string()});
  REQUIRE(made.exit_code == 0);

  // The server is configured from what the tool printed, as an operator would.
  test_support::IdentityServer server(transport, key_from_hex(printed(made, "public key")),
                                      dir.path());

  auto signer = std::make_shared<const ensemble::Signer>(
      ensemble::Seed::from_file(seed_path, ensemble::SeedFileCheck::error));
  ensemble::api::GetIdentityResponse response;
  const grpc::Status status = test_support::get_identity(
      server.channel(ensemble::signing_call_credentials(signer)), &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(response.address() == printed(made, "address"));

  // Another generated seed is refused as the daemon refuses it.
  const Run other = keygen({"--out", (dir / "other.seed").string()});
  REQUIRE(other.exit_code == 0);
  auto stranger = std::make_shared<const ensemble::Signer>(
      ensemble::Seed::from_file(dir / "other.seed"));
  const grpc::Status refused = test_support::get_identity(
      server.channel(ensemble::signing_call_credentials(stranger)));
  CHECK(refused.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(refused.error_message() == "unauthorized public key");
}

TEST_CASE("the daemon double started with the printed public key accepts the seed's calls") {
  TempDir dir;
  const auto seed_path = dir / "admin.seed";
  const Run made = keygen({"--out", seed_path.string()});
  REQUIRE(made.exit_code == 0);

  ensemble::testing::DaemonDoubleOptions options;
  options.unix_socket = (dir / "api.sock").string();
  options.admin_key = key_from_hex(printed(made, "public key"));
  ensemble::testing::DaemonDouble daemon(options);

  ensemble::Client client({.socket_path = options.unix_socket,
                           .auth_seed = ensemble::Seed::from_file(seed_path, ensemble::SeedFileCheck::error)});
  auto service = client.service("keygen-check");
  service->start();  // RegisterService, signed with the generated seed
  CHECK(ensemble::is_valid_address(service->address()));

  ensemble::Client stranger({.socket_path = options.unix_socket, .auth_seed = ensemble::Seed::generate()});
  auto refused = stranger.service("keygen-stranger");
  CHECK_THROWS_AS(refused->start(), ensemble::RegistrationError);
}

}  // namespace test_keygen
