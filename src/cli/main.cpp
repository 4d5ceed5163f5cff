// The `switchboard` command: serve, and small clients to try it by hand.
//
// Exit codes (docs/OPERATIONS.md): 0 success (and --help, --version), 1 a
// runtime failure (cannot listen, cannot connect, a server that stopped on
// an error), 2 a usage error (bad flag, bad value, bad config file). CLI11's
// own codes (100 and up) are mapped onto 0 and 2. Every error is one line on
// stderr, "switchboard: ...".
#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench_command.hpp"
#include "cli/client_commands.hpp"
#include "cli/serve_command.hpp"
#include "cli/units.hpp"
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

  sb::cli::ClientOptions client;
  std::string client_timeout = "5s";
  auto add_client_flags = [&](CLI::App* cmd) {
    cmd->add_option("--server", client.server, "Server address: HOST:PORT, [IPv6]:PORT or NAME:PORT")
        ->check(sb::cli::address_validator())
        ->capture_default_str();
    cmd->add_option("--token", client.token, "Token for a server started with --auth-token-file")
        ->envname("SWITCHBOARD_TOKEN");
    cmd->add_option("--timeout", client_timeout,
                    "How long to wait for the server's welcome (and, for send, its PONG)")
        ->capture_default_str();
  };
  bool echo = false;
  auto* listen_cmd = app.add_subcommand("listen",
                                        "Connect, print my ID, then print each message as 'from ID: text'; "
                                        "send each stdin line 'ID text' to ID");
  add_client_flags(listen_cmd);
  listen_cmd->add_flag("--echo", echo, "Also send each message back to its sender");

  std::optional<std::uint32_t> to;
  std::vector<std::string> words;
  auto* send_cmd = app.add_subcommand(
      "send",
      "Send a message to a client ID: send [--to] ID [text...] (no text: each line of stdin is a message)");
  add_client_flags(send_cmd);
  send_cmd->add_option("--to", to, "Destination client ID (or give it as the first word)");
  send_cmd->add_option("text", words, "Message text (default: read lines from stdin)");

  sb::bench::add_bench_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    // `bench` runs in its subcommand's callback and ends with its own exit
    // status this way (1 a run failed, 2 a bad flag, 3 a run lost messages),
    // having said why.
    return e.get_exit_code();
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
    if (*listen_cmd || *send_cmd) {
      const auto timeout = sb::cli::parse_duration(client_timeout);
      if (!timeout || timeout->count() <= 0) {
        return error(kExitUsage,
                     "--timeout: '" + client_timeout + "' is not a duration such as 500ms or 10s");
      }
      client.timeout = *timeout;
    }
    if (*listen_cmd) return sb::cli::run_listen(client, echo);
    if (*send_cmd) {
      if (!to) {
        std::uint32_t first = 0;
        const std::string id_word = words.empty() ? "" : words.front();
        const auto [end, ec] = std::from_chars(id_word.data(), id_word.data() + id_word.size(), first);
        if (id_word.empty() || ec != std::errc{} || end != id_word.data() + id_word.size()) {
          return error(kExitUsage, "send: give the destination ID, as --to ID or as the first word");
        }
        to = first;
        words.erase(words.begin());
      }
      return sb::cli::run_send(client, *to, words);
    }
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
