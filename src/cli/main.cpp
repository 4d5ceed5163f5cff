// The `switchboard` command: serve, and small clients to try it by hand.
//
// Exit codes (docs/OPERATIONS.md): 0 success (and --help, --version), 1 a
// runtime failure (cannot listen, cannot connect, a server that stopped on
// an error), 2 a usage error (bad flag, bad value, bad config file). CLI11's
// own codes (100 and up) are mapped onto 0 and 2. Every error is one line on
// stderr, "switchboard: ...".
#include <CLI/CLI.hpp>
#include <cstdint>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_command.hpp"
#include "cli/client_commands.hpp"
#include "cli/serve_command.hpp"
#include "cli/version.hpp"
#include "net/socket.hpp"

namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

// One line, whatever the message holds.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

int error(int code, const std::string& message) {
  std::cerr << "switchboard: " << one_line(message) << '\n';
  return code;
}

int run(int argc, char** argv) {
  CLI::App app{
      "switchboard: a TCP message router. Clients connect, get an ID, and send each other messages by ID."};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version", std::string("switchboard ") + sb::cli::kVersion + " (git " + sb::cli::kGitRevision + ")");

  sb::cli::ServeFlags f;
  auto* serve_cmd = sb::cli::add_serve_command(app, f);

  std::string server = "127.0.0.1:8080";
  auto* listen_cmd =
      app.add_subcommand("listen", "Connect, print my ID, then print each message as it arrives");
  listen_cmd->add_option("--server", server, "Server address: HOST:PORT, [IPv6]:PORT or NAME:PORT")
      ->check(sb::cli::address_validator())
      ->capture_default_str();

  std::uint32_t to = 0;
  std::vector<std::string> words;
  auto* send_cmd =
      app.add_subcommand("send", "Send a message (the words, or each line of stdin) to a client ID");
  send_cmd->add_option("--server", server, "Server address: HOST:PORT, [IPv6]:PORT or NAME:PORT")
      ->check(sb::cli::address_validator())
      ->capture_default_str();
  send_cmd->add_option("--to", to, "Destination client ID")->required()->check(CLI::Range(0u, 0xFFFFFFFFu));
  send_cmd->add_option("text", words, "Message text (default: read lines from stdin)");

  sb::bench::add_bench_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with code 0: CLI11 prints them.
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    // CLI11 words an unknown config key "INI was not able to parse serve.KEY".
    const std::string what = e.what();
    const std::string unknown_key = "INI was not able to parse serve.";
    if (what.starts_with(unknown_key)) {
      return error(kExitUsage, "--config: unknown key '" + what.substr(unknown_key.size()) +
                                   "' (keys are serve's flag names)");
    }
    return error(kExitUsage, what);
  }

  try {
    if (*serve_cmd) {
      if (const std::string problem = sb::cli::check_serve_flags(f); !problem.empty()) {
        return error(kExitUsage, problem);
      }
      return sb::cli::serve(f);
    }
    if (*listen_cmd) return sb::cli::run_listen(server);
    if (*send_cmd) return sb::cli::run_send(server, to, words);
  } catch (const sb::net::StartupError& e) {
    return error(kExitRuntime, e.what());
  } catch (const std::exception& e) {
    return error(kExitRuntime, e.what());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // setting up the flags, or printing help, failed
    return error(kExitRuntime, e.what());
  }
}
