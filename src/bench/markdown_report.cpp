#include "bench/markdown_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "bench/process.hpp"
#include "bench/worker.hpp"

#ifndef SWITCHBOARD_SOURCE_DIR
#define SWITCHBOARD_SOURCE_DIR ""
#endif

namespace sb::bench {

namespace {

constexpr std::size_t kReasonInTable = 90;

std::string cores(const std::optional<double>& v) {
  return v ? fmt::format("{:.2f}", *v) : "n/a";
}

std::string status_cell(const RunResult& r) {
  if (r.status == "ok") return "ok";
  std::string reason = r.reason;
  if (reason.size() > kReasonInTable) reason = reason.substr(0, kReasonInTable) + "...";
  return fmt::format("**{}**: {}", r.status, reason);
}

std::string per_second(std::uint64_t count, double seconds) {
  return thousands(seconds > 0 ? static_cast<double>(count) / seconds : 0);
}

std::string seconds_text(std::chrono::milliseconds d) {
  return fmt::format("{:g} s", static_cast<double>(d.count()) / 1e3);
}

std::vector<const RunResult*> runs_of(Scenario s, const std::vector<RunResult>& results) {
  std::vector<const RunResult*> out;
  for (const auto& r : results) {
    if (r.scenario == s && r.role.empty()) out.push_back(&r);
  }
  return out;
}

// For a failed run: the status cell, then dashes up to the width of the table.
std::vector<std::string> failed_row(const RunResult& r, std::size_t columns) {
  std::vector<std::string> row = {r.target, status_cell(r)};
  row.resize(columns, "-");
  return row;
}

std::string capture(const std::string& command) {
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[512];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (::pclose(p) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string quote_for_shell(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace

std::string markdown_cell(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string markdown_table(const std::vector<std::string>& head,
                           const std::vector<std::vector<std::string>>& rows, std::string_view align) {
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (std::size_t i = 0; i < head.size(); ++i) {
      s += ' ';
      s += markdown_cell(i < cells.size() ? cells[i] : "");
      s += " |";
    }
    return s + "\n";
  };
  std::string out = line(head);
  out += "|";
  for (std::size_t i = 0; i < head.size(); ++i)
    out += (i < align.size() && align[i] == 'r') ? " ---: |" : " --- |";
  out += "\n";
  for (const auto& row : rows) out += line(row);
  return out;
}

std::string shell_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) ||
             std::string_view("-_./:=,@%+").find(c) != std::string_view::npos;
    });
    out += plain ? a : quote_for_shell(a);
  }
  return out;
}

std::string scenario_section(Scenario scenario, const BenchOptions& o,
                             const std::vector<RunResult>& results) {
  const auto runs = runs_of(scenario, results);
  if (runs.empty()) return "";
  std::vector<std::vector<std::string>> rows;
  std::string out;
  switch (scenario) {
    case Scenario::throughput: {
      out += fmt::format(
          "### Throughput\n\n{} sender -> receiver pairs, {}-byte payloads, at most {} messages in flight "
          "per pair, {} load thread{}; {} measured after {} of warm-up.\n\n",
          o.pairs, o.size, o.window, o.threads, o.threads == 1 ? "" : "s", seconds_text(o.duration),
          seconds_text(o.warmup));
      const std::vector<std::string> head = {
          "target", "status", "msgs/s", "MB/s", "server CPU (cores)", "bench CPU (cores)", "server RSS peak"};
      for (const auto* r : runs) {
        if (r->status != "ok") {
          rows.push_back(failed_row(*r, head.size()));
          continue;
        }
        rows.push_back({r->target, "ok", thousands(r->msgs_per_s), fmt::format("{:.1f}", r->mb_per_s),
                        cores(r->server_cpu), cores(r->bench_cpu),
                        r->rss_peak_kib ? mib(*r->rss_peak_kib) : "n/a"});
      }
      out += markdown_table(head, rows, "llrrrrr");
      break;
    }
    case Scenario::latency: {
      out += fmt::format(
          "### Latency\n\n{} pairs paced to {:g} messages per second in all, {}-byte payloads; one-way "
          "latency "
          "from the write of each message to its receipt. \"generator lag\" is how late the bench wrote "
          "messages "
          "against its plan (a large value means the figures are optimistic).\n\n",
          o.pairs, o.rate, o.size);
      const std::vector<std::string> head = {
          "target",     "status",   "msgs/s", "p50", "p90", "p99", "p99.9", "max", "generator lag p99",
          "server CPU", "bench CPU"};
      for (const auto* r : runs) {
        if (r->status != "ok") {
          rows.push_back(failed_row(*r, head.size()));
          continue;
        }
        const auto& h = r->latency;
        const bool any = h.count() > 0;
        auto p = [&](double q) { return any ? micros(h.percentile(q)) : std::string("-"); };
        rows.push_back({r->target, "ok", thousands(r->msgs_per_s), p(50), p(90), p(99), p(99.9),
                        any ? micros(h.max()) : "-", micros(r->send_lag.percentile(99)), cores(r->server_cpu),
                        cores(r->bench_cpu)});
      }
      out += markdown_table(head, rows, "llrrrrrrrrr");
      break;
    }
    case Scenario::stall: {
      out += fmt::format(
          "### Stall\n\nThe throughput setup ({} pairs), plus one sender flooding a receiver that never "
          "reads (it connects with a {} KiB receive buffer and a {}-byte MSS, so that the server's write to "
          "it blocks after about 0.2 MB whatever the machine's speed). \"healthy fraction\" is the healthy "
          "pairs' rate divided by the plain throughput run's (1.00 = the stall costs them nothing). The "
          "flood "
          "is read after the run; of what the flooder sent, \"held\" was delivered late, at that readout "
          "(kept by the server, or in socket buffers, until then), and \"lost\" never arrived (dropped by "
          "the "
          "server's policy, or thrown away with a connection it closed); held + lost = sent. What happens to "
          "the flood is the server's policy, not a verification failure.\n\n",
          o.pairs, kDeafReceiverConnect.receive_buffer / 1024, kDeafReceiverConnect.max_segment);
      const std::vector<std::string> head = {"target",
                                             "status",
                                             "baseline msgs/s",
                                             "msgs/s during stall",
                                             "healthy fraction",
                                             "flooder sent",
                                             "flood held (delivered late)",
                                             "flood lost",
                                             "deaf receiver closed",
                                             "flooder closed",
                                             "server RSS peak"};
      for (const auto* r : runs) {
        if (r->status != "ok") {
          rows.push_back(failed_row(*r, head.size()));
          continue;
        }
        rows.push_back({r->target, "ok", r->baseline_msgs_per_s ? thousands(*r->baseline_msgs_per_s) : "n/a",
                        thousands(r->msgs_per_s),
                        r->healthy_fraction ? fmt::format("{:.2f}", *r->healthy_fraction) : "n/a",
                        thousands(static_cast<double>(r->flood_sent)),
                        thousands(static_cast<double>(r->flood_held())),
                        thousands(static_cast<double>(r->flood_lost)) +
                            (r->flood_settled ? "" : " (readout ran out of time)"),
                        r->deaf_closed > 0 ? "yes" : "no", r->flood_closed > 0 ? "yes" : "no",
                        r->rss_peak_kib ? mib(*r->rss_peak_kib) : "n/a"});
      }
      out += markdown_table(head, rows, "llrrrrrrllr");
      break;
    }
    case Scenario::conns: {
      out += fmt::format(
          "### Connections\n\n{} idle clients connected at once, then {} random pairs among them exchange "
          "one "
          "message. Memory is the server's RSS growth from before the first connection to all connected and "
          "idle "
          "(kernel socket buffers are not in RSS).\n\n",
          o.conns, o.probe_pairs);
      const std::vector<std::string> head = {"target",          "status",           "clients",
                                             "TCP connections", "setup (s)",        "server RSS before",
                                             "server RSS idle", "bytes/connection", "bytes/client",
                                             "probes arrived"};
      for (const auto* r : runs) {
        if (r->status != "ok") {
          rows.push_back(failed_row(*r, head.size()));
          continue;
        }
        rows.push_back({r->target, "ok", std::to_string(r->clients), std::to_string(r->connections),
                        fmt::format("{:.2f}", r->setup_seconds),
                        r->rss_start_kib ? mib(*r->rss_start_kib) : "n/a",
                        r->rss_idle_kib ? mib(*r->rss_idle_kib) : "n/a",
                        r->rss_per_conn_bytes ? thousands(*r->rss_per_conn_bytes) : "n/a",
                        r->rss_per_client_bytes ? thousands(*r->rss_per_client_bytes) : "n/a",
                        fmt::format("{}/{}", r->probe_delivered, r->probe_pairs)});
      }
      out += markdown_table(head, rows, "llrrrrrrrr");
      break;
    }
    case Scenario::fanin: {
      out += fmt::format(
          "### Fan-in\n\n{} senders to one receiver (one load thread holds them all), {}-byte payloads, at "
          "most {} "
          "messages in flight per sender; the receiver's connection is the bottleneck. Per-sender figures "
          "are "
          "messages delivered per second in the window; Jain's index is (sum x)^2 / (n * sum x^2): 1.000 "
          "when "
          "every sender got the same share, 1/n when one got everything.\n\n",
          o.senders, o.size, o.window);
      const std::vector<std::string> head = {"target",
                                             "status",
                                             "senders",
                                             "msgs/s",
                                             "MB/s",
                                             "slowest sender msgs/s",
                                             "fastest sender msgs/s",
                                             "min/max",
                                             "Jain's index",
                                             "server CPU",
                                             "bench CPU"};
      for (const auto* r : runs) {
        if (r->status != "ok") {
          rows.push_back(failed_row(*r, head.size()));
          continue;
        }
        const Fairness f = r->fairness.value_or(Fairness{});
        rows.push_back({r->target, "ok", std::to_string(f.senders), thousands(r->msgs_per_s),
                        fmt::format("{:.1f}", r->mb_per_s), per_second(f.min, r->seconds),
                        per_second(f.max, r->seconds), fmt::format("{:.2f}", f.min_over_max),
                        fmt::format("{:.3f}", f.jain), cores(r->server_cpu), cores(r->bench_cpu)});
      }
      out += markdown_table(head, rows, "llrrrrrrrrr");
      break;
    }
  }
  return out;
}

std::string verification_table(const std::vector<RunResult>& results) {
  const std::vector<std::string> head = {
      "target", "scenario", "sent",  "delivered", "lost",
      "dup",    "corrupt",  "reord", "misrouted", "healthy conns closed by server",
      "verdict"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : results) {
    std::string scenario(to_string(r.scenario));
    if (!r.role.empty()) scenario += " (" + r.role + ")";
    if (r.status != "ok") {
      rows.push_back({r.target, scenario, "-", "-", "-", "-", "-", "-", "-", "-", "run " + r.status});
      continue;
    }
    const auto& i = r.integrity;
    // The verifier counts the flood stream's arrivals too; `sent` never
    // includes them.
    const std::uint64_t delivered = r.scenario == Scenario::stall && i.delivered >= r.flood_delivered
                                        ? i.delivered - r.flood_delivered
                                        : i.delivered;
    rows.push_back({r.target, scenario, std::to_string(r.sent), std::to_string(delivered),
                    std::to_string(i.lost), std::to_string(i.duplicated), std::to_string(i.corrupt),
                    std::to_string(i.reordered), std::to_string(i.misrouted),
                    std::to_string(r.unexpected_closes), r.integrity_ok() ? "clean" : "**NOT clean**"});
  }
  return markdown_table(head, rows, "llrrrrrrrrl");
}

std::string render_report(const BenchOptions& o, const std::vector<RunResult>& results,
                          const ReportMeta& meta, const ChartsOutcome& charts) {
  const MachineFacts& m = meta.machine;
  std::string out = "# switchboard bench report\n\n";
  out += fmt::format("Run from {} to {} ({:.0f} s).\n\n", meta.started_utc.empty() ? "?" : meta.started_utc,
                     meta.finished_utc.empty() ? "?" : meta.finished_utc, meta.wall_seconds);
  out += "## Command\n\n```sh\n" + shell_command(meta.command_line) + "\n```\n\n";

  out += "## Machine\n\n";
  auto or_missing = [](const std::string& s) { return s.empty() ? std::string("not installed") : s; };
  out += markdown_table(
      {"fact", "value"},
      {{"CPUs (online)", fmt::format("{}{}", m.nproc, m.cpu_model.empty() ? "" : " x " + m.cpu_model)},
       {"memory", fmt::format("{:.1f} GiB", static_cast<double>(m.mem_total_kib) / 1048576.0)},
       {"kernel", "Linux " + m.kernel},
       {"switchboard commit", meta.git_commit},
       {"switchboard executable", m.switchboard_executable},
       {"nats-server", or_missing(m.nats_server_version)},
       {"redis-server", or_missing(m.redis_server_version)},
       {"open files limit", std::to_string(m.open_files_limit)},
       {"load average at start", m.load_average},
       {"load average at end (this run included)", meta.load_average_end}},
      "ll");
  out +=
      "\nThe bench and the servers share these CPUs: on a small machine the CPU columns below tell which "
      "side "
      "was the limit.\n\n";

  out += "## Settings\n\n";
  std::string targets;
  for (const auto& t : o.targets) targets += (targets.empty() ? "" : ", ") + t.label;
  std::string scenarios;
  for (auto s : o.scenarios) scenarios += (scenarios.empty() ? "" : ", ") + std::string(to_string(s));
  std::vector<std::vector<std::string>> settings = {
      {"targets", targets},
      {"scenarios", scenarios},
      {"pairs / payload / window", fmt::format("{} / {} bytes / {} messages", o.pairs, o.size, o.window)},
      {"load threads", std::to_string(o.threads)},
      {"warm-up / measured / drain",
       fmt::format("{} / {} / {}", seconds_text(o.warmup), seconds_text(o.duration), seconds_text(o.drain))},
      {"latency rate", fmt::format("{:g} msg/s", o.rate)},
      {"conns clients / probe pairs", fmt::format("{} / {}", o.conns, o.probe_pairs)},
      {"fanin senders", std::to_string(o.senders)},
      {"server --max-pending", o.server.max_pending.empty()
                                   ? fmt::format("server default (stall runs: {})", kStallMaxPending)
                                   : o.server.max_pending},
      {"server --slow-consumer", o.server.slow_consumer.empty() ? "server default" : o.server.slow_consumer},
      {"server logs", o.log_dir}};
  if (std::any_of(o.targets.begin(), o.targets.end(),
                  [](const TargetSpec& t) { return t.kind == TargetKind::cluster; })) {
    settings.push_back(
        {"cluster",
         "two `serve --engine reactor --cluster redis://...` nodes and the redis-server they share, all "
         "started by the bench; every sender connects to node A and every receiver to node B, so every "
         "message crosses nodes through Redis. Its server CPU and RSS figures are the sums over the two "
         "nodes and redis-server (Redis included); the notes give each one's part"});
  }
  out += markdown_table({"setting", "value"}, settings, "ll");

  out += "\n## Results\n\n";
  for (Scenario s : kAllScenarios) {
    const std::string section = scenario_section(s, o, results);
    if (section.empty()) continue;
    out += section + "\n";
    for (const auto& c : charts.charts) {
      if (c.spec.name != to_string(s)) continue;
      if (!c.image.empty()) {
        out += fmt::format("![{}]({})\n\n", c.spec.caption, c.image);
        out += fmt::format("*{}.* Data: [{}.dat]({}.dat), script: [{}.gp]({}.gp).\n\n", c.spec.caption,
                           c.spec.name, c.spec.name, c.spec.name, c.spec.name);
      } else {
        out += fmt::format("Chart not drawn ({}); data: [{}.dat]({}.dat), script: [{}.gp]({}.gp).\n\n",
                           c.error, c.spec.name, c.spec.name, c.spec.name, c.spec.name);
      }
    }
  }

  out +=
      "## Verification\n\n"
      "Every message is checked on arrival (marker, checksum, padding, receiver, place in its sender's "
      "sequence). "
      "lost: sent and never received by the end of the drain; dup: extra copies; corrupt: failed a check; "
      "reord: "
      "arrived after a later message of its sender; misrouted: intact but at the wrong receiver. A stall "
      "run's "
      "flood stream is not counted here (see the stall table).\n\n";
  out += verification_table(results);

  const std::string notes = format_notes(results);
  if (!notes.empty()) out += "\n## Notes\n\nCPU use, server-side losses and closes, per run.\n\n" + notes;

  bool any_failed = false;
  for (const auto& r : results) any_failed = any_failed || r.status != "ok";
  if (any_failed) {
    out += "\n## Runs that failed or were skipped\n\n";
    for (const auto& r : results) {
      if (r.status == "ok") continue;
      out += fmt::format("- {} {}{}: {}{}\n\n  ```\n", r.target, to_string(r.scenario),
                         r.role.empty() ? "" : " (" + r.role + ")", r.status,
                         r.server_log.empty() ? "" : fmt::format(" (server log: `{}`)", r.server_log));
      std::string reason = r.reason;
      std::string indented = "  ";
      for (char c : reason) {
        indented += c;
        if (c == '\n') indented += "  ";
      }
      out += indented + "\n  ```\n\n";
    }
  }

  out += "\n## Charts\n\n";
  if (!charts.problem.empty()) {
    out += charts.problem + ". The data files and gnuplot scripts are in this directory all the same.\n";
  } else if (charts.charts.empty()) {
    out += "No scenario had a successful run to chart.\n";
  } else {
    out += fmt::format(
        "Drawn with {} ({}), terminal {}. Redraw one: `cd` into this directory, then `gnuplot NAME.gp`.\n",
        charts.gnuplot, charts.gnuplot_version, charts.terminal);
  }
  return out;
}

std::string source_commit() {
  const std::string dir = SWITCHBOARD_SOURCE_DIR;
  if (dir.empty() || !std::filesystem::exists(dir + "/.git")) return "unknown";
  const std::string git = "git -C " + quote_for_shell(dir);
  const std::string head = capture(git + " rev-parse --short HEAD 2>/dev/null");
  if (head.empty()) return "unknown";
  const std::string changes = capture(git + " status --porcelain --untracked-files=no 2>/dev/null");
  return changes.empty() ? head : head + " + uncommitted changes";
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return "?";
  return buf;
}

std::string write_report(const std::string& dir, const BenchOptions& o, const std::vector<RunResult>& results,
                         const ReportMeta& meta) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot create {}: {}", dir, ec.message()));
  const ChartsOutcome charts = write_charts(dir, o, results);
  {
    std::ofstream json(dir + "/results.json");
    json << to_json(o, results, meta.machine, meta.command_line).dump(2) << '\n';
    if (!json) throw std::runtime_error(fmt::format("cannot write {}/results.json", dir));
  }
  std::string path = dir + "/report.md";
  std::ofstream md(path);
  md << render_report(o, results, meta, charts);
  if (!md) throw std::runtime_error(fmt::format("cannot write {}", path));
  for (const auto& c : charts.charts) {
    if (c.image.empty() && charts.problem.empty())
      fmt::print(stderr, "switchboard bench: chart {} not drawn: {}\n", c.spec.name, c.error);
  }
  return path;
}

}  // namespace sb::bench
