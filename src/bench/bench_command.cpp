#include "bench/bench_command.hpp"

#include <fmt/format.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/markdown_report.hpp"
#include "bench/payload.hpp"
#include "bench/process.hpp"
#include "bench/report.hpp"
#include "bench/scenarios.hpp"
#include "cli/units.hpp"
#include "net/socket.hpp"

namespace sb::bench {

namespace {

struct Flags {
  std::vector<std::string> targets = {"reactor"};
  std::vector<std::string> scenarios = {"throughput"};
  std::vector<std::string> protocols = {"v1"};
  std::uint32_t pairs = 16;
  std::size_t size = 64;
  std::uint32_t window = 256;
  double rate = 10000;
  std::uint32_t conns = 5000;
  std::uint32_t probe_pairs = 100;
  std::uint32_t senders = 16;
  std::uint32_t threads = 1;
  std::uint32_t shards = 0;
  std::string placement = "planned";
  std::string duration = "5s";
  std::string warmup = "1s";
  std::string drain = "3s";
  std::string max_pending;
  std::string slow_consumer;
  std::string json_path;
  std::string report_dir;
  std::string log_dir;
  std::uint64_t seed = 1;
  bool smoke = false;
};

// --smoke: every scenario, briefly, for CI. Each applies only where the flag
// was not given explicitly.
struct SmokeDefaults {
  std::vector<std::string> scenarios = {"all"};
  std::string duration = "1s";
  std::string warmup = "200ms";
  std::string drain = "2s";
  std::uint32_t conns = 300;
  std::uint32_t probe_pairs = 50;
  std::uint32_t senders = 8;
};

// Exit statuses beyond 0.
constexpr int kRunFailed = 1;  // a target could not be measured for a reason other than a missing binary
constexpr int kBadFlags = 2;   // as `switchboard serve` does for a bad flag
constexpr int kIntegrityFailed = 3;  // a run that must lose nothing lost, duplicated, corrupted or reordered

[[noreturn]] void bad_flag(const std::string& message) {
  fmt::print(stderr, "switchboard bench: {}\n", message);
  throw CLI::RuntimeError(kBadFlags);
}

std::chrono::milliseconds duration_flag(const char* name, const std::string& text) {
  auto d = cli::parse_duration(text);
  if (!d) bad_flag(fmt::format("--{}: '{}' is not a duration such as 5, 5s, 500ms or 2m", name, text));
  return *d;
}

BenchOptions to_options(const Flags& f) {
  BenchOptions o;
  try {
    o.targets = parse_targets(f.targets);
    o.scenarios = parse_scenarios(f.scenarios);
  } catch (const std::invalid_argument& e) {
    bad_flag(e.what());
  }
  if (o.targets.empty()) bad_flag("--target: give at least one target");
  // --protocol v1,v2: each switchboard target is measured once per protocol,
  // v2 rows labelled "<target> v2"; NATS and Redis once.
  std::vector<int> versions;
  for (const std::string& p : f.protocols) {
    if (p != "v1" && p != "v2") bad_flag(fmt::format("--protocol: '{}' is not v1 or v2", p));
    const int v = p == "v1" ? 1 : 2;
    if (std::find(versions.begin(), versions.end(), v) == versions.end()) versions.push_back(v);
  }
  if (versions.empty()) bad_flag("--protocol: give v1, v2 or both");
  std::vector<TargetSpec> expanded;
  for (const TargetSpec& t : o.targets) {
    if (!t.switchboard()) {
      expanded.push_back(t);
      continue;
    }
    for (const int v : versions) {
      TargetSpec copy = t;
      copy.version = v;
      if (v == 2) copy.label += " v2";
      expanded.push_back(std::move(copy));
    }
  }
  o.targets = std::move(expanded);
  if (o.scenarios.empty()) bad_flag("--scenario: give at least one scenario");
  if (f.pairs < 1) bad_flag("--pairs must be at least 1");
  if (f.size < kMinPayloadSize || f.size > kMaxPayloadSize) {
    bad_flag(fmt::format("--size must be from {} (sender, sequence, time and checksum) to {} bytes",
                         kMinPayloadSize, kMaxPayloadSize));
  }
  if (f.window < 1) bad_flag("--window must be at least 1");
  if (!(f.rate > 0)) bad_flag("--rate must be above 0");
  if (f.conns < 2) bad_flag("--conns must be at least 2");
  if (f.senders < 1 || f.senders > 10000) bad_flag("--senders must be from 1 to 10000");
  if (f.threads < 1 || f.threads > 64) bad_flag("--threads must be from 1 to 64");
  if (!f.slow_consumer.empty() && f.slow_consumer != "backpressure" && f.slow_consumer != "disconnect" &&
      f.slow_consumer != "drop") {
    bad_flag("--slow-consumer must be backpressure, disconnect or drop");
  }
  o.pairs = f.pairs;
  o.size = f.size;
  o.window = f.window;
  o.rate = f.rate;
  o.conns = f.conns;
  o.probe_pairs = f.probe_pairs;
  o.senders = f.senders;
  o.threads = f.threads;
  if (f.placement == "planned") {
    o.placement = Placement::planned;
  } else if (f.placement == "random") {
    o.placement = Placement::random;
  } else if (f.placement == "crossing") {
    o.placement = Placement::crossing;
  } else if (f.placement == "local") {
    o.placement = Placement::local;
  } else {
    bad_flag("--placement must be planned, random, crossing or local");
  }
  o.shards = f.shards != 0 ? f.shards : std::max(1U, std::thread::hardware_concurrency());  // as serve's 0
  if (o.shards > 4096) bad_flag("--shards must be at most 4096");
  o.server.shards = o.shards;
  o.duration = duration_flag("duration", f.duration);
  o.warmup = duration_flag("warmup", f.warmup);
  o.drain = duration_flag("drain", f.drain);
  if (o.duration.count() <= 0) bad_flag("--duration must be above 0");
  o.seed = f.seed;
  o.server.max_pending = f.max_pending;
  o.server.slow_consumer = f.slow_consumer;
  o.json_path = f.json_path;
  o.log_dir = f.log_dir;
  if (o.log_dir.empty() && !f.report_dir.empty()) o.log_dir = f.report_dir + "/logs";
  return o;
}

int run_bench(const Flags& flags) {
  BenchOptions options = to_options(flags);
  net::ignore_sigpipe();
  if (!options.log_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.log_dir, ec);
    if (ec) {
      fmt::print(stderr, "switchboard bench: cannot create {}: {}\n", options.log_dir, ec.message());
      return kRunFailed;
    }
  } else {
    char tmpl[] = "/tmp/switchboard-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      fmt::print(stderr, "switchboard bench: cannot create a directory for server logs in /tmp\n");
      return kRunFailed;
    }
    options.log_dir = tmpl;
  }
  const MachineFacts machine = gather_machine_facts();
  const std::vector<std::string> command_line = self_command_line();
  const std::string started_utc = utc_now();
  const auto started = std::chrono::steady_clock::now();

  Progress progress;
  const std::vector<RunResult> results = run_all(options, progress);

  std::cout << '\n' << format_table(results) << '\n';
  const std::string notes = format_notes(results);
  if (!notes.empty()) std::cout << notes;
  std::cout << fmt::format("server logs: {}\n", options.log_dir);
  std::cout << fmt::format("machine: {} CPUs, Linux {}, load average at start {}\n", machine.nproc,
                           machine.kernel, machine.load_average);

  int code = 0;
  for (const auto& r : results) {
    if (r.status == "failed") code = kRunFailed;
  }
  for (const auto& r : results) {
    if (!r.integrity_ok()) code = kIntegrityFailed;
  }

  if (!options.json_path.empty()) {
    std::ofstream out(options.json_path);
    out << to_json(options, results, machine, command_line).dump(2) << '\n';
    if (!out) {
      fmt::print(stderr, "switchboard bench: cannot write {}\n", options.json_path);
      return kRunFailed;
    }
    std::cout << fmt::format("wrote {}\n", options.json_path);
  }
  if (!flags.report_dir.empty()) {
    ReportMeta meta;
    meta.command_line = command_line;
    meta.machine = machine;
    meta.git_commit = source_commit();
    meta.started_utc = started_utc;
    meta.finished_utc = utc_now();
    meta.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    meta.load_average_end = read_text_file("/proc/loadavg");
    while (!meta.load_average_end.empty() && meta.load_average_end.back() == '\n')
      meta.load_average_end.pop_back();
    try {
      std::cout << fmt::format("wrote {}\n", write_report(flags.report_dir, options, results, meta));
    } catch (const std::exception& e) {
      fmt::print(stderr, "switchboard bench: {}\n", e.what());
      return kRunFailed;
    }
  }
  std::cout.flush();
  return code;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Measure switchboard engines (and NATS / Redis for reference) over loopback: each run starts a fresh "
      "server, checks every message for loss, duplication, corruption and order, and reports rates, latency "
      "and server memory");
  cmd->add_option(
         "--target", flags->targets,
         "What to measure, repeatable or comma-separated: an engine name (started as `<this program> "
         "serve`), nats, redis, cluster (two reactor nodes joined through a redis-server: senders on one, "
         "receivers on the other; server figures sum all three), addr:HOST:PORT (a switchboard already "
         "running; no RSS figures), engines (every engine of this build), or all (every engine, nats, redis "
         "and cluster)")
      ->delimiter(',')
      ->capture_default_str();
  CLI::Option* scenario_opt =
      cmd->add_option("--scenario", flags->scenarios,
                      "throughput, latency, stall, conns, fanin, or all; repeatable or "
                      "comma-separated")
          ->delimiter(',')
          ->capture_default_str();
  cmd->add_option("--protocol", flags->protocols,
                  "Switchboard targets: the protocol the clients speak, v1, v2 or v1,v2 (each measured; v2 "
                  "checks every message's source too)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--pairs", flags->pairs, "Sender->receiver pairs (one stream each)")->capture_default_str();
  cmd->add_option("--size", flags->size, "Payload bytes per message")->capture_default_str();
  cmd->add_option("--window", flags->window, "Most messages in flight per pair")->capture_default_str();
  cmd->add_option("--rate", flags->rate, "latency: messages per second, all pairs together")
      ->capture_default_str();
  CLI::Option* conns_opt =
      cmd->add_option("--conns", flags->conns, "conns: idle clients to connect")->capture_default_str();
  CLI::Option* probe_opt = cmd->add_option("--probe-pairs", flags->probe_pairs,
                                           "conns: random pairs that then exchange one message")
                               ->capture_default_str();
  CLI::Option* senders_opt = cmd->add_option("--senders", flags->senders,
                                             "fanin: senders to the one receiver (all on one load thread)")
                                 ->capture_default_str();
  cmd->add_option("--threads", flags->threads,
                  "Load-generator threads; pairs are spread over them (conns and fanin always use one)")
      ->capture_default_str();
  CLI::Option* duration_opt =
      cmd->add_option("--duration", flags->duration, "Measured time per run (5, 5s, 500ms, 2m)")
          ->capture_default_str();
  CLI::Option* warmup_opt =
      cmd->add_option("--warmup", flags->warmup, "Time before measuring, excluded from the figures")
          ->capture_default_str();
  CLI::Option* drain_opt =
      cmd->add_option("--drain", flags->drain, "After sending stops, longest wait for messages in flight")
          ->capture_default_str();
  cmd->add_option("--shards", flags->shards,
                  "sharded target: its shards (serve --threads); 0: one per core, as serve counts them")
      ->capture_default_str();
  cmd->add_option("--placement", flags->placement,
                  "sharded target, throughput, latency and stall: planned (each pair's clients on chosen shards: "
                  "every shard sends and receives alike and (N-1)/N of the pairs cross shards, as a random "
                  "placement does on average; a client that lands elsewhere connects again) or random (where "
                  "the kernel's SO_REUSEPORT hash puts them); crossing (every pair across shards) and local (every "
                  "pair on one shard) measure the two ends")
      ->capture_default_str();
  cmd->add_option("--max-pending", flags->max_pending, "Passed to the switchboard servers the bench starts");
  cmd->add_option("--slow-consumer", flags->slow_consumer,
                  "Passed to the switchboard servers the bench starts: backpressure, disconnect or drop");
  cmd->add_option("--json", flags->json_path, "Write every figure, the command line and machine facts here");
  cmd->add_option("--report", flags->report_dir,
                  "Write a Markdown report (report.md), results.json, and gnuplot charts with their data and "
                  "scripts into this directory (server logs go to DIR/logs unless --log-dir is given)");
  cmd->add_flag(
      "--smoke", flags->smoke,
      "CI smoke test: every scenario (unless --scenario), 1 s each after 200 ms of warm-up, 2 s drain, "
      "300 idle clients, 50 probe pairs, 8 fan-in senders; flags given explicitly win. Exit status as "
      "always: non-zero if a run failed or a message was lost, duplicated, corrupted or reordered");
  cmd->add_option("--log-dir", flags->log_dir,
                  "Where server logs go (default: a new /tmp/switchboard-bench-*)");
  cmd->add_option("--seed", flags->seed, "conns: seed for choosing the probe pairs")->capture_default_str();
  cmd->callback(
      [flags, scenario_opt, conns_opt, probe_opt, senders_opt, duration_opt, warmup_opt, drain_opt] {
        if (flags->smoke) {
          const SmokeDefaults d;
          if (scenario_opt->count() == 0) flags->scenarios = d.scenarios;
          if (duration_opt->count() == 0) flags->duration = d.duration;
          if (warmup_opt->count() == 0) flags->warmup = d.warmup;
          if (drain_opt->count() == 0) flags->drain = d.drain;
          if (conns_opt->count() == 0) flags->conns = d.conns;
          if (probe_opt->count() == 0) flags->probe_pairs = d.probe_pairs;
          if (senders_opt->count() == 0) flags->senders = d.senders;
        }
        const int code = run_bench(*flags);
        if (code != 0) throw CLI::RuntimeError(code);
      });
}

}  // namespace sb::bench
