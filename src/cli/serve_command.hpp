// `switchboard serve`: its flags (validated by CLI11 as they are parsed, so
// every bad value is a usage error before anything starts) and running it.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace sb::cli {

// The flags as given; sizes and durations stay text until serve() converts
// them, which cannot fail once the validators have passed.
struct ServeFlags {
  std::string listen = "127.0.0.1:8080";
  std::string engine;
  std::string max_frame = "1M";
  std::string max_pending = "8M";
  std::string max_pending_total;  // empty: a quarter of the memory limit
  std::string ring_bytes = "4M";  // sharded: bytes in flight from one shard to another
  std::string slow_consumer = "backpressure";
  std::string stall_timeout = "10s";
  std::string drain_timeout = "5s";
  std::string auth_token_file;
  std::string auth_timeout = "5s";
  std::int64_t max_conns = 0;
  std::int64_t threads = 0;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string metrics;  // --metrics HOST:PORT; empty: none
  std::string cluster;  // --cluster redis://HOST:PORT[/NAME]; empty: a node alone
  std::string cluster_lease = "5s";
};

// The bounds the validators enforce, so that no value wraps where it is used
// (sizes are added up in size_t, durations become nanoseconds in int64).
inline constexpr std::uint64_t kMaxFrameLimit = std::uint64_t{1} << 30;    // 1G: a frame is buffered whole
inline constexpr std::uint64_t kMaxPendingLimit = std::uint64_t{1} << 40;  // 1T
inline constexpr std::int64_t kMaxThreads = 1024;
inline constexpr std::int64_t kMaxConnsLimit = 10'000'000;

// Checks an address flag's syntax (net::parse_endpoint): HOST:PORT,
// [IPv6]:PORT or NAME:PORT. For --listen and the clients' --server.
CLI::Validator address_validator();

// Adds `serve` and its flags (with --config) to `app`.
CLI::App* add_serve_command(CLI::App& app, ServeFlags& flags);

// Checks that need several flags at once; "" if fine, else a one-line usage
// error.
std::string check_serve_flags(const ServeFlags& flags);

// Runs the server; returns the exit code. Throws net::StartupError when it
// cannot start.
int serve(const ServeFlags& flags);

}  // namespace sb::cli
