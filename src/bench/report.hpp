// How a bench invocation's results are shown: a table and notes for the
// console, and a JSON document with every figure plus the command line and
// the machine it ran on.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/scenarios.hpp"

namespace sb::bench {

struct MachineFacts {
  unsigned nproc = 0;
  std::string kernel;     // uname -r
  std::string cpu_model;  // /proc/cpuinfo "model name"
  std::uint64_t mem_total_kib = 0;
  std::uint64_t open_files_limit = 0;
  std::string nats_server_version;   // "" if not installed
  std::string redis_server_version;  // "" if not installed
  std::string switchboard_executable;
  std::string load_average;  // /proc/loadavg at the start: other work on the machine skews every figure
};

MachineFacts gather_machine_facts();

// Figures as the console and the Markdown report show them: "12.3us",
// "3.4ms"; "12.5 MiB" from KiB; "1,234,567".
std::string micros(std::uint64_t ns);
std::string mib(std::uint64_t kib);
std::string thousands(double v);

// The table (one row per run) and a few lines of notes under it.
std::string format_table(const std::vector<RunResult>& results);
std::string format_notes(const std::vector<RunResult>& results);
// A run against a target of several processes (RunResult::server_processes
// not empty): which processes the server figures sum, and each one's part.
std::string server_processes_note(const RunResult& r);

nlohmann::json to_json(const BenchOptions& options, const std::vector<RunResult>& results,
                       const MachineFacts& machine, const std::vector<std::string>& command_line);

}  // namespace sb::bench
