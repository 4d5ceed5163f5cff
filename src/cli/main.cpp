// The `switchboard` command: serve, and small clients to try it by hand.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_command.hpp"
#include "cli/client_commands.hpp"
#include "cli/units.hpp"
#include "core/config.hpp"
#include "engines/engine.hpp"
#include "engines/engine_names.hpp"
#include "net/log.hpp"
#include "net/socket.hpp"

namespace {

struct ServeFlags {
  std::string listen = "127.0.0.1:8080";
  std::string engine = std::string(sb::engines::kEngineNames[0]);
  std::string max_frame = "1M";
  std::string max_pending = "8M";
  std::string slow_consumer = "backpressure";
  std::string stall_timeout = "10s";
  std::string drain_timeout = "5s";
  std::size_t max_conns = 0;
  unsigned threads = 0;
  std::string log_level = "info";
  std::string metrics;  // --metrics HOST:PORT; empty: none
};

std::string engine_list() {
  std::string names;
  for (auto n : sb::engines::kEngineNames) names += (names.empty() ? "" : ", ") + std::string(n);
  return names;
}

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "switchboard: " << message << '\n';
  std::exit(2);
}

std::uint64_t size_flag(const char* name, const std::string& text) {
  auto v = sb::cli::parse_size(text);
  if (!v || *v == 0) fail(std::string("--") + name + ": '" + text + "' is not a size such as 65536, 64K or 8M");
  return *v;
}

std::chrono::milliseconds duration_flag(const char* name, const std::string& text) {
  auto v = sb::cli::parse_duration(text);
  if (!v) fail(std::string("--") + name + ": '" + text + "' is not a duration such as 500ms or 10s");
  return *v;
}

int serve(const ServeFlags& f) {
  sb::net::setup_logging(f.log_level);
  sb::engines::ServerOptions options;
  options.listen = sb::net::parse_endpoint(f.listen);
  options.max_frame = size_flag("max-frame", f.max_frame);
  options.router.max_pending = size_flag("max-pending", f.max_pending);
  auto policy = sb::core::parse_policy(f.slow_consumer);
  if (!policy) fail("--slow-consumer: '" + f.slow_consumer + "' is not one of backpressure, disconnect, drop");
  options.router.policy = *policy;
  options.router.stall_timeout = duration_flag("stall-timeout", f.stall_timeout);
  options.drain_timeout = duration_flag("drain-timeout", f.drain_timeout);
  options.max_conns = f.max_conns;
  options.threads = f.threads;
  if (!f.metrics.empty()) options.metrics = sb::net::parse_endpoint(f.metrics);
  const std::string engine_name = f.engine;
  options.on_listening = [engine_name](const sb::net::Endpoint& bound) {
    std::printf("switchboard listening on %s (engine %s)\n", bound.to_string().c_str(), engine_name.c_str());
    std::fflush(stdout);
  };
  auto engine = sb::engines::make_engine(f.engine, options);
  if (!engine) fail("unknown engine '" + f.engine + "' (available: " + engine_list() + ")");
  const int code = engine->run();
  spdlog::info("stats: {}", engine->stats().summary());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"switchboard: a TCP message router. Clients connect, get an ID, and send each other messages by ID."};
  app.require_subcommand(1);

  ServeFlags f;
  auto* serve_cmd = app.add_subcommand("serve", "Run the router");
  serve_cmd->add_option("--listen", f.listen, "Address to listen on, HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  serve_cmd->add_option("--engine", f.engine, "Engine: " + engine_list())->capture_default_str();
  serve_cmd->add_option("--max-frame", f.max_frame, "Largest payload a client may send (bytes, K, M); a longer frame closes its sender")
      ->capture_default_str();
  serve_cmd->add_option("--max-pending", f.max_pending, "Outbound bytes queued per destination before the slow-consumer policy acts")
      ->capture_default_str();
  serve_cmd->add_option("--slow-consumer", f.slow_consumer, "backpressure (pause its senders), disconnect, or drop")
      ->capture_default_str();
  serve_cmd->add_option("--stall-timeout", f.stall_timeout, "backpressure: close a destination that makes no write progress for this long while senders wait")
      ->capture_default_str();
  serve_cmd->add_option("--max-conns", f.max_conns, "Connection limit (0: what the open-files limit allows)")
      ->capture_default_str();
  serve_cmd->add_option("--drain-timeout", f.drain_timeout, "On SIGINT/SIGTERM, how long to keep writing queued output")
      ->capture_default_str();
  serve_cmd->add_option("--threads", f.threads, "Threads for multi-threaded engines (0: one per core)")
      ->capture_default_str();
  serve_cmd->add_option("--metrics", f.metrics, "Serve /metrics (Prometheus), /healthz and (reactor) /clients over HTTP on HOST:PORT");
  serve_cmd->add_option("--log-level", f.log_level, "trace, debug, info, warn, error or off")->capture_default_str();

  std::string server = "127.0.0.1:8080";
  auto* listen_cmd = app.add_subcommand("listen", "Connect, print my ID, then print each message as it arrives");
  listen_cmd->add_option("--server", server, "Server address")->capture_default_str();

  std::uint32_t to = 0;
  std::vector<std::string> words;
  auto* send_cmd = app.add_subcommand("send", "Send a message (the words, or each line of stdin) to a client ID");
  send_cmd->add_option("--server", server, "Server address")->capture_default_str();
  send_cmd->add_option("--to", to, "Destination client ID")->required();
  send_cmd->add_option("text", words, "Message text (default: read lines from stdin)");

  sb::bench::add_bench_command(app);

  CLI11_PARSE(app, argc, argv);

  try {
    if (*serve_cmd) return serve(f);
    if (*listen_cmd) return sb::cli::run_listen(server);
    if (*send_cmd) return sb::cli::run_send(server, to, words);
  } catch (const sb::net::StartupError& e) {
    std::cerr << "switchboard: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
