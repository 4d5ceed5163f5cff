#include "bench/report.hpp"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "bench/process.hpp"
#include "net/socket.hpp"

namespace sb::bench {

std::string micros(std::uint64_t ns) {
  const double us = static_cast<double>(ns) / 1e3;
  if (us >= 10000) return fmt::format("{:.1f}ms", us / 1e3);
  if (us >= 100) return fmt::format("{:.0f}us", us);
  return fmt::format("{:.1f}us", us);
}

std::string mib(std::uint64_t kib) {
  return fmt::format("{:.1f} MiB", static_cast<double>(kib) / 1024.0);
}

std::string thousands(double v) {
  std::string digits = fmt::format("{:.0f}", v);
  std::string out;
  const std::size_t n = digits.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % 3 == 0 && digits[i - 1] != '-') out += ',';
    out += digits[i];
  }
  return out;
}

namespace {

std::string scenario_label(const RunResult& r) {
  std::string s(to_string(r.scenario));
  if (!r.role.empty()) s += " (" + r.role + ")";
  return s;
}

std::string first_line_matching(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

template <class T>
nlohmann::json opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

std::string server_processes_note(const RunResult& r) {
  std::string roles;
  std::string cpu;
  std::string rss;
  bool any_cpu = false;
  for (std::size_t i = 0; i < r.server_processes.size(); ++i) {
    const auto& p = r.server_processes[i];
    const bool last = i + 1 == r.server_processes.size();
    roles += fmt::format("{}{}", i == 0 ? "" : last ? " and " : ", ", p.role);
    cpu += fmt::format("{}{}", i == 0 ? "" : " + ", p.cpu ? fmt::format("{:.2f}", *p.cpu) : "n/a");
    rss += fmt::format("{}{}", i == 0 ? "" : " + ", p.rss_peak_kib ? mib(*p.rss_peak_kib) : "n/a");
    any_cpu = any_cpu || p.cpu.has_value();
  }
  // conns runs measure no CPU window.
  return fmt::format(
      "server figures are sums over {} (Redis included): {}RSS peaks {} (the RSS column is the highest sum "
      "of samples taken together)",
      roles, any_cpu ? fmt::format("CPU {} cores, ", cpu) : "", rss);
}

MachineFacts gather_machine_facts() {
  MachineFacts m;
  m.nproc = static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN));
  utsname u{};
  if (::uname(&u) == 0) m.kernel = u.release;
  const std::string cpu = first_line_matching(read_text_file("/proc/cpuinfo"), "model name");
  if (const auto colon = cpu.find(':'); colon != std::string::npos) m.cpu_model = cpu.substr(colon + 2);
  const std::string mem = first_line_matching(read_text_file("/proc/meminfo"), "MemTotal:");
  if (!mem.empty()) m.mem_total_kib = std::strtoull(mem.c_str() + 9, nullptr, 10);
  m.open_files_limit = net::open_files_limit();
  m.load_average = read_text_file("/proc/loadavg");
  while (!m.load_average.empty() && m.load_average.back() == '\n') m.load_average.pop_back();
  m.nats_server_version = program_version(kNatsServer);
  m.redis_server_version = program_version(kRedisServer);
  try {
    m.switchboard_executable = self_executable();
  } catch (const std::exception&) {
  }
  return m;
}

std::string format_table(const std::vector<RunResult>& results) {
  const std::vector<std::string> head = {"target",  "scenario", "msgs/s",         "MB/s",
                                         "p50",     "p99",      "lost",           "dup",
                                         "corrupt", "reord",    "server RSS peak"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : results) {
    std::vector<std::string> row = {r.target, scenario_label(r)};
    if (r.status != "ok") {
      row.push_back(r.status);
      row.resize(head.size(), "");
      rows.push_back(std::move(row));
      continue;
    }
    const bool rates = r.scenario != Scenario::conns;
    row.push_back(rates ? thousands(r.msgs_per_s) : "-");
    row.push_back(rates ? fmt::format("{:.1f}", r.mb_per_s) : "-");
    const bool latency = r.scenario == Scenario::latency && r.latency.count() > 0;
    row.push_back(latency ? micros(r.latency.percentile(50)) : "-");
    row.push_back(latency ? micros(r.latency.percentile(99)) : "-");
    row.push_back(std::to_string(r.integrity.lost));
    row.push_back(std::to_string(r.integrity.duplicated));
    row.push_back(std::to_string(r.integrity.corrupt + r.integrity.misrouted));
    row.push_back(std::to_string(r.integrity.reordered));
    row.push_back(r.rss_peak_kib ? mib(*r.rss_peak_kib) : "n/a");
    rows.push_back(std::move(row));
  }
  std::vector<std::size_t> width(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) width[i] = head[i].size();
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      // Text columns left-aligned, figures right-aligned.
      s += i < 2 ? fmt::format("{:<{}}", cells[i], width[i]) : fmt::format("{:>{}}", cells[i], width[i]);
      if (i + 1 < cells.size()) s += "  ";
    }
    return s + "\n";
  };
  std::string out = line(head);
  std::size_t total = 0;
  for (auto w : width) total += w + 2;
  out += std::string(total - 2, '-') + "\n";
  for (const auto& row : rows) out += line(row);
  return out;
}

std::string format_notes(const std::vector<RunResult>& results) {
  std::string out;
  for (const auto& r : results) {
    const std::string who = fmt::format("{} {}", r.target, scenario_label(r));
    if (r.status != "ok") {
      out += fmt::format("- {}: {}: {}\n", who, r.status, r.reason);
      if (!r.server_log.empty() && r.status == "failed")
        out += fmt::format("  server log: {}\n", r.server_log);
      continue;
    }
    if (r.scenario == Scenario::latency && r.latency.count() > 0) {
      const auto& h = r.latency;
      out += fmt::format(
          "- {}: one-way latency over {} messages: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n"
          "  (from the moment each was written; the generator ran behind its plan by p50 {}  p99 {}  max "
          "{})\n",
          who, h.count(), micros(h.percentile(50)), micros(h.percentile(90)), micros(h.percentile(99)),
          micros(h.percentile(99.9)), micros(h.max()), micros(r.send_lag.percentile(50)),
          micros(r.send_lag.percentile(99)), micros(r.send_lag.max()));
    }
    if (r.scenario == Scenario::stall) {
      out += fmt::format("- {}: healthy pairs at {} of the plain throughput run ({} -> {} msg/s)\n", who,
                         r.healthy_fraction ? fmt::format("{:.2f}", *r.healthy_fraction) : std::string("n/a"),
                         r.baseline_msgs_per_s ? thousands(*r.baseline_msgs_per_s) : std::string("n/a"),
                         thousands(r.msgs_per_s));
      out += fmt::format("  flooder sent {} messages ({} in the window){}\n",
                         thousands(static_cast<double>(r.flood_sent)),
                         thousands(static_cast<double>(r.flood_sent_in_window)),
                         r.flood_closed > 0 ? "; the server closed the flooder" : "");
      out += fmt::format(
          "  flood, read after the run: {} held (delivered late, at the readout), {} lost, {} duplicated, {} "
          "reordered; deaf receiver closed by the server: {}{}\n",
          thousands(static_cast<double>(r.flood_held())), thousands(static_cast<double>(r.flood_lost)),
          r.flood_duplicated, r.flood_reordered, r.deaf_closed > 0 ? "yes" : "no",
          r.flood_settled ? "" : " (readout time ran out before everything arrived)");
      if (r.hwm_kib)
        out += fmt::format("  server peak RSS sampled {}, VmHWM {}\n", mib(r.rss_peak_kib.value_or(0)),
                           mib(*r.hwm_kib));
    }
    if (r.scenario == Scenario::fanin && r.fairness) {
      const Fairness& f = *r.fairness;
      const double secs = r.seconds > 0 ? r.seconds : 1;
      out += fmt::format(
          "- {}: {} senders -> 1 receiver: per sender {} to {} msg/s (mean {}), min/max {:.2f}, Jain's index "
          "{:.3f}\n",
          who, f.senders, thousands(static_cast<double>(f.min) / secs),
          thousands(static_cast<double>(f.max) / secs), thousands(f.mean / secs), f.min_over_max, f.jain);
    }
    if (r.scenario == Scenario::conns) {
      out += fmt::format("- {}: {} idle connections{} (set up in {:.2f} s)", who, r.connections,
                         r.connections != r.clients ? fmt::format(" for {} clients", r.clients) : "",
                         r.setup_seconds);
      if (r.rss_per_conn_bytes) {
        out += fmt::format(": server RSS {} before, {} idle = {} bytes per connection", mib(*r.rss_start_kib),
                           mib(*r.rss_idle_kib), thousands(*r.rss_per_conn_bytes));
      }
      out += fmt::format("; {}/{} probe messages arrived\n", r.probe_delivered, r.probe_pairs);
    }
    if (r.scenario != Scenario::conns && (r.server_cpu || r.bench_cpu)) {
      // Cores over the window per message of the window: server CPU time
      // per delivered message. Not for the paced latency runs, whose
      // servers are mostly idle: it would be their idle cost spread thin.
      const std::string per_message = r.server_cpu && r.msgs_per_s > 0 && r.scenario != Scenario::latency
                                          ? fmt::format(" ({:.0f} ns of server CPU per delivered message)",
                                                        *r.server_cpu / r.msgs_per_s * 1e9)
                                          : "";
      out += fmt::format("- {}: CPU over the window, in cores: server {}, bench {}{}\n", who,
                         r.server_cpu ? fmt::format("{:.2f}", *r.server_cpu) : std::string("n/a"),
                         r.bench_cpu ? fmt::format("{:.2f}", *r.bench_cpu) : std::string("n/a"), per_message);
    }
    if (!r.server_processes.empty()) out += "  " + server_processes_note(r) + "\n";
    if (r.shards > 0) {
      out += fmt::format("- {}: {} shards, clients {}", who, r.shards,
                         r.pairs_placed > 0 ? fmt::format("placed (--placement {}): {} of {} pairs cross shards",
                                                to_string(r.placement), r.pairs_crossing, r.pairs_placed)
                                  : std::string("where SO_REUSEPORT put them"));
      if (r.frames_routed && r.frames_forwarded && *r.frames_routed > 0) {
        const auto forwarded = static_cast<double>(*r.frames_forwarded);
        const auto routed = static_cast<double>(*r.frames_routed);
        out += fmt::format("; {} of {} routed frames crossed shards ({:.0f}%)", thousands(forwarded),
                           thousands(routed), 100.0 * forwarded / routed);
      }
      out += "\n";
    }
    if (!r.drained)
      out += fmt::format("- {}: not every message had arrived when the drain time ran out\n", who);
    if (r.integrity.misrouted > 0)
      out += fmt::format("- {}: {} misrouted messages\n", who, r.integrity.misrouted);
    if (r.unexpected_closes > 0) {
      out += fmt::format("- {}: the server closed {} healthy connection(s) during the run\n", who,
                         r.unexpected_closes);
    }
    if (r.publish_unrouted > 0) {
      out += fmt::format("- {}: {} PUBLISH replies said no subscriber received the message\n", who,
                         r.publish_unrouted);
    }
    if (r.server_errors > 0 || r.protocol_errors > 0) {
      out += fmt::format("- {}: {} server error replies, {} protocol errors", who, r.server_errors,
                         r.protocol_errors);
      for (const auto& e : r.error_samples) out += fmt::format(" [{}]", e);
      out += "\n";
    }
  }
  return out;
}

nlohmann::json to_json(const BenchOptions& o, const std::vector<RunResult>& results, const MachineFacts& m,
                       const std::vector<std::string>& command_line) {
  nlohmann::json j;
  j["command"] = command_line;
  j["machine"] = {{"nproc", m.nproc},
                  {"uname_r", m.kernel},
                  {"cpu_model", m.cpu_model},
                  {"mem_total_kib", m.mem_total_kib},
                  {"open_files_limit", m.open_files_limit},
                  {"nats_server_version", m.nats_server_version},
                  {"redis_server_version", m.redis_server_version},
                  {"switchboard_executable", m.switchboard_executable},
                  {"load_average_at_start", m.load_average}};
  std::vector<std::string> targets;
  for (const auto& t : o.targets) targets.push_back(t.label);
  std::vector<std::string> scenarios;
  for (auto s : o.scenarios) scenarios.emplace_back(to_string(s));
  j["options"] = {{"targets", targets},
                  {"scenarios", scenarios},
                  {"pairs", o.pairs},
                  {"size", o.size},
                  {"window", o.window},
                  {"rate", o.rate},
                  {"conns", o.conns},
                  {"probe_pairs", o.probe_pairs},
                  {"senders", o.senders},
                  {"threads", o.threads},
                  {"duration_s", static_cast<double>(o.duration.count()) / 1e3},
                  {"warmup_s", static_cast<double>(o.warmup.count()) / 1e3},
                  {"drain_s", static_cast<double>(o.drain.count()) / 1e3},
                  {"seed", o.seed},
                  {"max_pending", o.server.max_pending},
                  {"slow_consumer", o.server.slow_consumer},
                  {"shards", o.shards},
                  {"placement", to_string(o.placement)},
                  {"server_log_dir", o.log_dir}};
  j["units"] = {
      {"latency", "ns, one-way, from the write of the message to its receipt"},
      {"send_lag", "ns, latency scenario: how late each message was written against the planned rate"},
      {"mb_per_s", "payload bytes delivered per second / 10^6"},
      {"rss",
       "KiB from /proc/PID/status of the server (cluster: summed over its two nodes and its redis-server; "
       "server_processes has each)"},
      {"cpu_cores",
       "CPU over the measurement window, in cores, from /proc/PID/stat (cluster: summed over its two nodes "
       "and its redis-server)"},
      {"flood_held",
       "stall: flood messages delivered late, at the readout after the run (the deaf receiver reads nothing "
       "before): kept by the server or in socket buffers until then; the same count as flood_delivered, "
       "named for "
       "what it means. flood_held + flood_lost = flood_sent"},
      {"flood_lost",
       "stall: flood messages sent and never delivered: dropped by the server's policy or thrown away with a "
       "connection it closed (if flood_settled is false, also what was still on its way when the readout "
       "ended)"},
      {"histogram", "log-linear (HdrHistogram-style), values within 1/512 relative"}};
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& r : results) {
    nlohmann::json x;
    x["target"] = r.target;
    x["scenario"] = to_string(r.scenario);
    x["role"] = r.role;
    x["status"] = r.status;
    x["reason"] = r.reason;
    x["integrity_ok"] = r.integrity_ok();
    x["seconds"] = r.seconds;
    x["sent"] = r.sent;
    x["delivered_in_window"] = r.delivered_in_window;
    x["msgs_per_s"] = r.msgs_per_s;
    x["mb_per_s"] = r.mb_per_s;
    x["integrity"] = {{"delivered", r.integrity.delivered},   {"lost", r.integrity.lost},
                      {"duplicated", r.integrity.duplicated}, {"corrupt", r.integrity.corrupt},
                      {"reordered", r.integrity.reordered},   {"misrouted", r.integrity.misrouted}};
    x["drained"] = r.drained;
    const auto& h = r.latency;
    x["latency_ns"] = {{"count", h.count()},          {"min", h.min()},          {"mean", h.mean()},
                       {"p50", h.percentile(50)},     {"p90", h.percentile(90)}, {"p99", h.percentile(99)},
                       {"p99_9", h.percentile(99.9)}, {"max", h.max()}};
    x["send_lag_ns"] = {{"count", r.send_lag.count()},
                        {"p50", r.send_lag.percentile(50)},
                        {"p99", r.send_lag.percentile(99)},
                        {"max", r.send_lag.max()}};
    x["connections"] = r.connections;
    if (r.shards > 0) {
      x["sharded"] = {{"shards", r.shards},
                      {"placed", r.pairs_placed > 0},
                      {"placement", to_string(r.placement)},
                      {"pairs_placed", r.pairs_placed},
                      {"pairs_crossing", r.pairs_crossing},
                      {"frames_routed", opt(r.frames_routed)},
                      {"frames_forwarded", opt(r.frames_forwarded)}};
    }
    x["setup_s"] = r.setup_seconds;
    x["server_rss_kib"] = {{"start", opt(r.rss_start_kib)},
                           {"idle", opt(r.rss_idle_kib)},
                           {"peak_sampled", opt(r.rss_peak_kib)},
                           {"vm_hwm", opt(r.hwm_kib)}};
    x["rss_per_conn_bytes"] = opt(r.rss_per_conn_bytes);
    x["rss_per_client_bytes"] = opt(r.rss_per_client_bytes);
    x["cpu_cores"] = {{"server", opt(r.server_cpu)}, {"bench", opt(r.bench_cpu)}};
    if (!r.server_processes.empty()) {
      nlohmann::json procs = nlohmann::json::array();
      for (const auto& p : r.server_processes) {
        procs.push_back({{"role", p.role},
                         {"command", p.command},
                         {"rss_peak_kib", opt(p.rss_peak_kib)},
                         {"vm_hwm_kib", opt(p.hwm_kib)},
                         {"cpu_cores", opt(p.cpu)}});
      }
      x["server_processes"] = std::move(procs);
    }
    if (r.scenario == Scenario::stall) {
      x["stall"] = {{"baseline_msgs_per_s", opt(r.baseline_msgs_per_s)},
                    {"healthy_fraction", opt(r.healthy_fraction)},
                    {"flood_sent", r.flood_sent},
                    {"flood_sent_in_window", r.flood_sent_in_window},
                    {"flood_delivered", r.flood_delivered},
                    {"flood_held", r.flood_held()},
                    {"flood_lost", r.flood_lost},
                    {"flood_duplicated", r.flood_duplicated},
                    {"flood_reordered", r.flood_reordered},
                    {"flood_settled", r.flood_settled},
                    {"deaf_receiver_closed", r.deaf_closed > 0},
                    {"deaf_receiver_close_seen_at_s",
                     r.deaf_closed > 0 ? nlohmann::json(r.first_deaf_close_s) : nullptr},
                    {"flooder_closed", r.flood_closed > 0}};
    }
    if (r.scenario == Scenario::fanin) {
      nlohmann::json f = {{"per_sender_delivered_in_window", r.per_sender_delivered}};
      if (r.fairness) {
        f["senders"] = r.fairness->senders;
        f["min"] = r.fairness->min;
        f["max"] = r.fairness->max;
        f["mean"] = r.fairness->mean;
        f["min_over_max"] = r.fairness->min_over_max;
        f["jain_index"] = r.fairness->jain;
      }
      x["fanin"] = std::move(f);
    }
    if (r.scenario == Scenario::conns) {
      x["probe"] = {{"pairs", r.probe_pairs}, {"delivered", r.probe_delivered}};
    }
    x["unexpected_closes"] = r.unexpected_closes;
    x["publish_unrouted"] = r.publish_unrouted;
    x["server_errors"] = r.server_errors;
    x["protocol_errors"] = r.protocol_errors;
    x["error_samples"] = r.error_samples;
    x["server_command"] = r.server_command;
    x["server_exit"] = r.server_exit;
    x["server_log"] = r.server_log;
    runs.push_back(std::move(x));
  }
  j["runs"] = std::move(runs);
  return j;
}

}  // namespace sb::bench
