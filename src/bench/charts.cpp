#include "bench/charts.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench/process.hpp"
#include "bench/report.hpp"

namespace sb::bench {

namespace {

using namespace std::chrono_literals;
constexpr auto kGnuplotTimeout = 30s;

std::string describe(const RunResult& r) {
  return r.status == "ok" ? r.target : fmt::format("{} ({})", r.target, r.status);
}

// The terminal line and the look every chart shares.
std::string preamble(const std::string& terminal, const std::string& name, const std::string& title,
                     int height = 580) {
  std::string term;
  if (terminal == "pngcairo") {
    term = fmt::format("set terminal pngcairo size 1000,{} font \"Sans,11\" noenhanced", height);
  } else if (terminal == "png") {
    term = fmt::format("set terminal png size 1000,{} noenhanced", height);
  } else {
    term = fmt::format("set terminal svg size 1000,{} font \"Sans,12\" noenhanced", height);
  }
  return fmt::format(
      "# Drawn by `switchboard bench --report`. Redraw: cd into this directory, then: gnuplot {0}.gp\n"
      "{1}\n"
      "set output '{0}.{2}'\n"
      "set title {3}\n"
      "set style data histograms\n"
      "set style histogram clustered gap 1\n"
      "set style fill solid 0.85 border -1\n"
      "set boxwidth 0.85 relative\n"
      "set grid ytics lc rgb '#dddddd'\n"
      "set border 3\n"
      "set xtics nomirror rotate by 25 right\n"
      "set ytics nomirror\n"
      "set xlabel 'target'\n"
      "set bmargin 7\n"
      "set lmargin 12\n",
      name, term, image_extension(terminal), gnuplot_string(title));
}

std::string left_out_line(const std::vector<std::string>& left_out) {
  if (left_out.empty()) return "";
  std::string s = "not shown: ";
  for (std::size_t i = 0; i < left_out.size(); ++i) s += (i ? ", " : "") + left_out[i];
  return s;
}

std::string title_with(const std::string& title, const std::vector<std::string>& left_out) {
  const std::string extra = left_out_line(left_out);
  return extra.empty() ? title : title + "\n" + extra;
}

std::string num(double v) {
  return fmt::format("{:.6g}", v);
}

}  // namespace

std::string gnuplot_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string pick_gnuplot_terminal(std::string_view listing) {
  bool pngcairo = false;
  bool png = false;
  bool svg = false;
  std::istringstream in{std::string(listing)};
  std::string first;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    if (!(words >> first)) continue;
    pngcairo = pngcairo || first == "pngcairo";
    png = png || first == "png";
    svg = svg || first == "svg";
  }
  if (pngcairo) return "pngcairo";
  if (png) return "png";
  if (svg) return "svg";
  return "";
}

std::string image_extension(std::string_view terminal) {
  return terminal == "svg" ? "svg" : "png";
}

std::vector<ChartSpec> build_charts(const BenchOptions& o, const std::vector<RunResult>& results,
                                    const std::string& terminal) {
  std::vector<ChartSpec> charts;
  auto runs_of = [&](Scenario s, std::vector<const RunResult*>& ok, std::vector<std::string>& left_out) {
    for (const auto& r : results) {
      if (r.scenario != s || !r.role.empty()) continue;
      if (r.status == "ok") {
        ok.push_back(&r);
      } else {
        left_out.push_back(describe(r));
      }
    }
  };
  const double secs = static_cast<double>(o.duration.count()) / 1e3;

  {  // throughput
    std::vector<const RunResult*> ok;
    ChartSpec c;
    c.name = "throughput";
    runs_of(Scenario::throughput, ok, c.left_out);
    if (!ok.empty()) {
      c.caption = "Throughput by target (messages delivered and verified per second; higher is better)";
      c.data = "# target  msgs_per_s  mb_per_s  server_cpu_cores  bench_cpu_cores\n";
      for (const auto* r : ok) {
        c.data +=
            fmt::format("{} {} {} {} {}\n", gnuplot_string(r->target), num(r->msgs_per_s), num(r->mb_per_s),
                        num(r->server_cpu.value_or(-1)), num(r->bench_cpu.value_or(-1)));
      }
      const std::string title =
          fmt::format("Throughput: {} pairs, {}-byte payloads, window {}, {:g} s measured (higher is better)",
                      o.pairs, o.size, o.window, secs);
      c.script = preamble(terminal, c.name, title_with(title, c.left_out)) +
                 "set ylabel 'messages per second (delivered, verified)'\n"
                 "set format y '%.1s%c'\n"
                 "set key off\n"
                 "rate(x) = x >= 1e6 ? sprintf('%.2fM', x / 1e6) : sprintf('%.0fk', x / 1e3)\n"
                 "stats 'throughput.dat' using 2 nooutput\n"
                 "set yrange [0:(STATS_max > 0 ? STATS_max * 1.15 : 1)]\n"
                 "plot 'throughput.dat' using 2:xtic(1) lc rgb '#4472c4', \\\n"
                 "     '' using 0:2:(rate($2)) with labels offset 0,0.8 notitle\n";
      charts.push_back(std::move(c));
    }
  }
  {  // latency
    std::vector<const RunResult*> ok;
    ChartSpec c;
    c.name = "latency";
    runs_of(Scenario::latency, ok, c.left_out);
    std::erase_if(ok, [&](const RunResult* r) {
      if (r->latency.count() > 0) return false;
      c.left_out.push_back(r->target + " (no samples)");
      return true;
    });
    if (!ok.empty()) {
      c.caption =
          "One-way latency by percentile, one line per target (microseconds on a log scale; lower is "
          "better). "
          "Points joined by lines, not bars: on a log axis a bar's height depends on where the axis starts";
      // One block per target (gnuplot's `index`), one line per percentile.
      c.data = "# one block per target, in the order of the script's plot: x  percentile  latency_us\n";
      struct Point {
        const char* name;
        double q;  // 0: the maximum
      };
      constexpr Point kPoints[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"max", 0}};
      std::string plots;
      for (std::size_t i = 0; i < ok.size(); ++i) {
        const auto& h = ok[i]->latency;
        c.data += fmt::format("{}# {}\n", i == 0 ? "" : "\n\n", ok[i]->target);
        for (std::size_t x = 0; x < std::size(kPoints); ++x) {
          const std::uint64_t ns = kPoints[x].q > 0 ? h.percentile(kPoints[x].q) : h.max();
          c.data += fmt::format("{} \"{}\" {}\n", x, kPoints[x].name, num(static_cast<double>(ns) / 1e3));
        }
        // A point shape per line as well as a colour: the lines stay apart in grey too.
        constexpr int kShapes[] = {7, 5, 9, 13, 11, 15, 4, 6, 8, 10};
        plots += fmt::format("{}'latency.dat' index {} using 1:3 with linespoints lw 2 pt {} ps 1.2 title {}",
                             i == 0 ? "plot " : ", \\\n     ", i, kShapes[i % std::size(kShapes)],
                             gnuplot_string(ok[i]->target));
      }
      const std::string title =
          fmt::format("Latency at {:g} msg/s offered ({} pairs, {}-byte payloads) (lower is better)", o.rate,
                      o.pairs, o.size);
      c.script =
          preamble(terminal, c.name, title_with(title, c.left_out)) +
          "set ylabel 'one-way latency (microseconds, log scale)'\n"
          "set logscale y\n"
          "set format y '%g'\n"
          "set ytics (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, "
          "200000, 500000, 1000000)\n"
          "set xlabel 'percentile (max: the largest latency seen)'\n"
          "set xtics norotate ('p50' 0, 'p90' 1, 'p99' 2, 'p99.9' 3, 'max' 4)\n"
          "set xrange [-0.3:4.3]\n"
          "set grid xtics ytics lc rgb '#dddddd'\n"
          "set bmargin 4\n"
          "set key top left\n"
          "stats 'latency.dat' using 3 nooutput\n"
          "set yrange [(STATS_min > 0 ? STATS_min / 1.5 : 0.1):STATS_max * 1.5]\n" +
          plots + "\n";
      charts.push_back(std::move(c));
    }
  }
  {  // stall
    std::vector<const RunResult*> ok;
    ChartSpec c;
    c.name = "stall";
    runs_of(Scenario::stall, ok, c.left_out);
    std::erase_if(ok, [&](const RunResult* r) {
      if (r->healthy_fraction) return false;
      c.left_out.push_back(r->target + " (no baseline)");
      return true;
    });
    if (!ok.empty()) {
      c.caption =
          "Stall impact: above, healthy pairs' throughput while one receiver stops reading, as a fraction of "
          "the same run without it (1.0 = unaffected); below, what became of the flood: held (delivered "
          "late, at the readout after the run) or lost (never delivered), as shares of what the flooder sent";
      c.data =
          "# target  healthy_fraction  baseline_msgs_per_s  stall_msgs_per_s  flood_sent  flood_held  "
          "flood_lost  held_percent  lost_percent  held_label  lost_label\n"
          "# held: delivered late, at the readout; lost: never delivered; held + lost = sent. A lost label "
          "ending in * : the readout ran out of time\n";
      bool cut_short = false;
      for (const auto* r : ok) {
        const double sent = static_cast<double>(r->flood_sent);
        auto percent = [&](std::uint64_t n) {
          return sent > 0 ? 100.0 * static_cast<double>(n) / sent : 0.0;
        };
        cut_short = cut_short || !r->flood_settled;
        c.data += fmt::format("{} {} {} {} {} {} {} {} {} {} {}\n", gnuplot_string(r->target),
                              num(*r->healthy_fraction), num(r->baseline_msgs_per_s.value_or(0)),
                              num(r->msgs_per_s), r->flood_sent, r->flood_held(), r->flood_lost,
                              num(percent(r->flood_held())), num(percent(r->flood_lost)),
                              gnuplot_string("held " + thousands(static_cast<double>(r->flood_held()))),
                              gnuplot_string("lost " + thousands(static_cast<double>(r->flood_lost)) +
                                             (r->flood_settled ? "" : " *")));
      }
      const std::string title = fmt::format(
          "Stall: {} healthy pairs beside one sender flooding a receiver that never reads (1.0 = unaffected)",
          o.pairs);
      std::string flood_title =
          "The flood, read after the run: held = delivered late, at the readout; lost = never delivered";
      if (cut_short)
        flood_title += "\n* the readout ran out of time: some of these may still have been on their way";
      c.script = preamble(terminal, c.name, title_with(title, c.left_out), 900) +
                 "set multiplot layout 2,1\n"
                 "set ylabel " +
                 gnuplot_string("healthy throughput /\nthroughput without the stall") +
                 "\n"
                 "set format y '%.1f'\n"
                 "set key off\n"
                 "stats 'stall.dat' using 2 nooutput\n"
                 "set yrange [0:(STATS_max > 1.1 ? STATS_max * 1.15 : 1.25)]\n"
                 "set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead back dt 2 lc rgb '#555555'\n"
                 "plot 'stall.dat' using 2:xtic(1) lc rgb '#70ad47', \\\n"
                 "     '' using 0:2:(sprintf('%.2f', $2)) with labels offset 0,0.8 notitle\n"
                 "unset arrow 1\n"
                 "set title " +
                 gnuplot_string(flood_title) +
                 "\n"
                 "set style histogram rowstacked\n"
                 "set ylabel 'share of the flood sent (%)'\n"
                 "set format y '%.0f'\n"
                 "set yrange [0:135]\n"
                 "set ytics 0, 25, 100\n"
                 "unset xlabel\n"  // the key goes where it was
                 "set key bmargin center horizontal\n"
                 "plot 'stall.dat' using 8:xtic(1) title 'held (delivered late)' lc rgb '#4472c4', \\\n"
                 "     '' using 9 title 'lost' lc rgb '#c00000', \\\n"
                 "     '' using 0:(100):(strcol(10)) with labels offset 0,2.2 font ',10' notitle, \\\n"
                 "     '' using 0:(100):(strcol(11)) with labels offset 0,1.0 font ',10' notitle\n"
                 "unset multiplot\n";
      charts.push_back(std::move(c));
    }
  }
  {  // fanin
    std::vector<const RunResult*> ok;
    ChartSpec c;
    c.name = "fanin";
    runs_of(Scenario::fanin, ok, c.left_out);
    if (!ok.empty()) {
      c.caption =
          "Fan-in by target: total messages per second into one receiver, with Jain's fairness index J over "
          "the senders (1 = every sender got the same share)";
      c.data = "# target  msgs_per_s  jain_index  min_sender_msgs_per_s  max_sender_msgs_per_s\n";
      for (const auto* r : ok) {
        const Fairness f = r->fairness.value_or(Fairness{});
        const double s = r->seconds > 0 ? r->seconds : 1;
        c.data += fmt::format("{} {} {} {} {}\n", gnuplot_string(r->target), num(r->msgs_per_s), num(f.jain),
                              num(static_cast<double>(f.min) / s), num(static_cast<double>(f.max) / s));
      }
      const std::string title =
          fmt::format("Fan-in: {} senders to one receiver, {}-byte payloads, window {} per sender", o.senders,
                      o.size, o.window);
      c.script =
          preamble(terminal, c.name, title_with(title, c.left_out)) +
          "set ylabel 'messages per second into the one receiver'\n"
          "set format y '%.1s%c'\n"
          "set key off\n"
          "rate(x) = x >= 1e6 ? sprintf('%.2fM', x / 1e6) : sprintf('%.0fk', x / 1e3)\n"
          "stats 'fanin.dat' using 2 nooutput\n"
          "set yrange [0:(STATS_max > 0 ? STATS_max * 1.25 : 1)]\n"
          "plot 'fanin.dat' using 2:xtic(1) lc rgb '#8064a2', \\\n"
          "     '' using 0:2:(sprintf(\"%s\\nJ = %.3f\", rate($2), $3)) with labels offset 0,2 notitle\n";
      charts.push_back(std::move(c));
    }
  }
  {  // conns
    std::vector<const RunResult*> ok;
    ChartSpec c;
    c.name = "conns";
    runs_of(Scenario::conns, ok, c.left_out);
    std::erase_if(ok, [&](const RunResult* r) {
      if (r->rss_per_client_bytes) return false;
      c.left_out.push_back(r->target + " (no RSS figures)");
      return true;
    });
    if (!ok.empty()) {
      c.caption =
          "Server memory per idle client (RSS growth / clients; a Redis client holds two connections)";
      c.data = "# target  rss_bytes_per_client  rss_bytes_per_connection  connections\n";
      for (const auto* r : ok) {
        c.data += fmt::format("{} {} {} {}\n", gnuplot_string(r->target), num(*r->rss_per_client_bytes),
                              num(r->rss_per_conn_bytes.value_or(0)), r->connections);
      }
      const std::string title =
          fmt::format("Memory: server RSS growth per idle client, {} clients (lower is better)", o.conns);
      c.script = preamble(terminal, c.name, title_with(title, c.left_out)) +
                 "set ylabel 'bytes of server RSS per idle client'\n"
                 "set key off\n"
                 "stats 'conns.dat' using 2 nooutput\n"
                 "set yrange [(STATS_min < 0 ? STATS_min * 1.2 : 0):(STATS_max > 0 ? STATS_max * 1.15 : 1)]\n"
                 "plot 'conns.dat' using 2:xtic(1) lc rgb '#ed7d31', \\\n"
                 "     '' using 0:2:(sprintf('%.0f', $2)) with labels offset 0,0.8 notitle\n";
      charts.push_back(std::move(c));
    }
  }
  return charts;
}

namespace {

std::string find_gnuplot() {
  if (::access("/usr/bin/gnuplot", X_OK) == 0) return "/usr/bin/gnuplot";
  const char* path =
      std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): main thread, nobody sets the environment
  if (path == nullptr) return "";
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/gnuplot";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string shell_single_quote(const std::string& s) {
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

std::string terminal_listing(const std::string& gnuplot) {
  const std::string cmd = shell_single_quote(gnuplot) + " -e 'set terminal' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

}  // namespace

ChartsOutcome write_charts(const std::string& dir, const BenchOptions& options,
                           const std::vector<RunResult>& results) {
  ChartsOutcome outcome;
  outcome.gnuplot = find_gnuplot();
  if (outcome.gnuplot.empty()) {
    outcome.problem =
        "gnuplot is not installed (looked for /usr/bin/gnuplot and in PATH): no charts were drawn";
  } else {
    outcome.gnuplot_version = program_version(outcome.gnuplot, "--version");
    outcome.terminal = pick_gnuplot_terminal(terminal_listing(outcome.gnuplot));
    if (outcome.terminal.empty()) {
      outcome.problem = fmt::format(
          "{} offers none of the pngcairo, png and svg terminals: no charts were drawn", outcome.gnuplot);
    }
  }
  // The scripts are written even when they cannot be drawn here, for a
  // machine that has gnuplot.
  const std::string terminal = outcome.terminal.empty() ? "pngcairo" : outcome.terminal;
  const std::string abs_dir = std::filesystem::absolute(dir).string();
  for (ChartSpec& spec : build_charts(options, results, terminal)) {
    DrawnChart d;
    d.spec = std::move(spec);
    const std::string stem = abs_dir + "/" + d.spec.name;
    if (!write_file(stem + ".dat", d.spec.data) || !write_file(stem + ".gp", d.spec.script)) {
      d.error = fmt::format("cannot write {}.dat / .gp", stem);
      outcome.charts.push_back(std::move(d));
      continue;
    }
    if (!outcome.problem.empty()) {
      d.error = "not drawn";
      outcome.charts.push_back(std::move(d));
      continue;
    }
    std::string image = d.spec.name;
    image += '.';
    image += image_extension(terminal);
    const std::string log = stem + ".gnuplot.log";
    const std::filesystem::path image_path = std::filesystem::path(abs_dir) / image;
    std::filesystem::remove(image_path);
    try {
      ChildProcess child = ChildProcess::spawn(
          {outcome.gnuplot, "-e", "cd " + gnuplot_string(abs_dir), stem + ".gp"}, log, false);
      const auto deadline = std::chrono::steady_clock::now() + kGnuplotTimeout;
      while (child.running() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
      std::string how;
      if (child.running()) {
        how = child.stop();
        how += " (timed out)";
      } else {
        how = child.exit_description();
      }
      std::error_code ec;
      const auto size = std::filesystem::file_size(image_path, ec);
      std::string log_text = read_text_file(log);
      if (how == "exit 0" && !ec && size > 0) {
        d.image = image;
        if (log_text.empty()) std::filesystem::remove(log);
      } else {
        while (!log_text.empty() && log_text.back() == '\n') log_text.pop_back();
        if (log_text.size() > 400) log_text = "..." + log_text.substr(log_text.size() - 400);
        d.error = fmt::format("gnuplot {}: {}", how, log_text.empty() ? "no image" : log_text);
      }
    } catch (const std::exception& e) {
      d.error = e.what();
    }
    outcome.charts.push_back(std::move(d));
  }
  return outcome;
}

}  // namespace sb::bench
