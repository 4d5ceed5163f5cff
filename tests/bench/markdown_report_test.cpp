// The report's text: Markdown tables and cells, the command line, the
// per-scenario sections and verification table from hand-made results, and
// the charts' data files and gnuplot scripts. No gnuplot is run here.
#include "bench/markdown_report.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bench/charts.hpp"
#include "bench/report.hpp"

namespace sb::bench {
namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

BenchOptions options() {
  BenchOptions o;
  o.pairs = 4;
  o.size = 64;
  o.window = 32;
  o.senders = 4;
  o.rate = 2000;
  o.conns = 100;
  o.probe_pairs = 10;
  o.duration = std::chrono::milliseconds{2000};
  o.warmup = std::chrono::milliseconds{500};
  o.drain = std::chrono::milliseconds{1000};
  o.targets = parse_targets({"reactor", "nats"});
  o.scenarios = {Scenario::throughput, Scenario::fanin};
  return o;
}

RunResult ok_run(std::string target, Scenario s) {
  RunResult r;
  r.target = std::move(target);
  r.scenario = s;
  r.status = "ok";
  r.seconds = 2.0;
  r.drained = true;
  return r;
}

RunResult fanin_run() {
  RunResult r = ok_run("reactor", Scenario::fanin);
  r.per_sender_delivered = {2000, 2000, 1000, 3000};
  r.fairness = fairness_of(r.per_sender_delivered);
  r.delivered_in_window = 8000;
  r.msgs_per_s = 4000;
  r.mb_per_s = 0.256;
  r.sent = 8100;
  r.integrity.delivered = 8100;
  r.server_cpu = 0.5;
  r.bench_cpu = 0.75;
  return r;
}

RunResult failed_run(std::string target, Scenario s, std::string reason) {
  RunResult r;
  r.target = std::move(target);
  r.scenario = s;
  r.status = "failed";
  r.reason = std::move(reason);
  return r;
}

TEST(Markdown, CellsEscapePipesAndLineBreaks) {
  EXPECT_EQ(markdown_cell("a|b"), "a\\|b");
  EXPECT_EQ(markdown_cell("line one\nline two\r"), "line one line two ");
  EXPECT_EQ(markdown_cell("plain"), "plain");
}

TEST(Markdown, TableWithAlignmentAndShortRows) {
  const std::string t =
      markdown_table({"target", "msgs/s", "note"}, {{"reactor", "1,000", "x|y"}, {"nats"}}, "lr");
  EXPECT_EQ(t,
            "| target | msgs/s | note |\n"
            "| --- | ---: | --- |\n"
            "| reactor | 1,000 | x\\|y |\n"
            "| nats |  |  |\n");
}

TEST(Markdown, CommandLineIsQuotedForTheShell) {
  EXPECT_EQ(shell_command({"./build/release/src/cli/switchboard", "bench", "--target", "engines,nats",
                           "--report", "bench/results/2026-11-26T08:00:00Z"}),
            "./build/release/src/cli/switchboard bench --target engines,nats --report "
            "bench/results/2026-11-26T08:00:00Z");
  EXPECT_EQ(shell_command({"sb", "a b", "it's", ""}), "sb 'a b' 'it'\\''s' ''");
}

TEST(Markdown, FaninSectionShowsRatesAndFairness) {
  const BenchOptions o = options();
  const std::vector<RunResult> results = {fanin_run(),
                                          failed_run("nats", Scenario::fanin, "nats-server ended")};
  const std::string s = scenario_section(Scenario::fanin, o, results);
  EXPECT_TRUE(contains(s, "### Fan-in")) << s;
  EXPECT_TRUE(contains(s, "4 senders to one receiver")) << s;
  // 1000 and 3000 messages in a 2 s window: 500 and 1,500 msg/s; min/max
  // 1/3; Jain (8000^2) / (4 * 18,000,000) = 0.889.
  EXPECT_TRUE(contains(s, "| reactor | ok | 4 | 4,000 | 0.3 | 500 | 1,500 | 0.33 | 0.889 | 0.50 | 0.75 |"))
      << s;
  EXPECT_TRUE(contains(s, "| nats | **failed**: nats-server ended | - | - |")) << s;
  EXPECT_EQ(scenario_section(Scenario::latency, o, results), "");
}

TEST(Markdown, ThroughputAndLatencySections) {
  const BenchOptions o = options();
  RunResult t = ok_run("reactor", Scenario::throughput);
  t.msgs_per_s = 1234567.4;
  t.mb_per_s = 79.01;
  t.server_cpu = 0.9;
  t.rss_peak_kib = 5120;
  RunResult l = ok_run("redis", Scenario::latency);
  // 1..100 us; the histogram keeps values to within 1/512, so p90 shows as 90.1us.
  for (int i = 1; i <= 100; ++i) l.latency.record(static_cast<std::uint64_t>(i) * 1000);
  l.msgs_per_s = 2000;
  const std::vector<RunResult> results = {t, l};
  const std::string ts = scenario_section(Scenario::throughput, o, results);
  EXPECT_TRUE(contains(ts, "| reactor | ok | 1,234,567 | 79.0 | 0.90 | n/a | 5.0 MiB |")) << ts;
  const std::string ls = scenario_section(Scenario::latency, o, results);
  EXPECT_TRUE(
      contains(ls, "| redis | ok | 2,000 | 50.0us | 90.1us | 99.1us | 100us | 100us | 0.0us | n/a | n/a |"))
      << ls;
}

// A stall run whose flood was partly held, partly lost: 4,000 read at the
// readout, 1,000 never.
RunResult stall_run(std::string target) {
  RunResult s = ok_run(std::move(target), Scenario::stall);
  s.baseline_msgs_per_s = 1000;
  s.msgs_per_s = 900;
  s.healthy_fraction = 0.9;
  s.flood_sent = 5000;
  s.flood_delivered = 4000;
  s.flood_lost = 1000;
  s.flood_settled = true;
  s.deaf_closed = 1;
  return s;
}

TEST(Stall, HeldIsWhatArrivedAtTheReadoutAndHeldPlusLostIsSent) {
  const RunResult s = stall_run("redis");
  EXPECT_EQ(s.flood_held(), 4000u);
  EXPECT_EQ(s.flood_held() + s.flood_lost, s.flood_sent);
}

TEST(Markdown, StallSectionShowsTheFractionAndTheFlood) {
  RunResult cut = stall_run("nats");
  cut.flood_settled = false;
  const std::string text = scenario_section(Scenario::stall, options(), {stall_run("reactor"), cut});
  EXPECT_TRUE(contains(text, "| flooder sent | flood held (delivered late) | flood lost |")) << text;
  EXPECT_TRUE(contains(text, "\"held\" was delivered late")) << text;
  EXPECT_TRUE(contains(text, "held + lost = sent")) << text;
  EXPECT_TRUE(contains(text, "a 4 KiB receive buffer and a 1460-byte MSS")) << text;
  EXPECT_TRUE(
      contains(text, "| reactor | ok | 1,000 | 900 | 0.90 | 5,000 | 4,000 | 1,000 | yes | no | n/a |"))
      << text;
  EXPECT_TRUE(
      contains(text, "| nats | ok | 1,000 | 900 | 0.90 | 5,000 | 4,000 | 1,000 (readout ran out of time) |"))
      << text;
}

TEST(Report, StallNotesAndJsonNameHeldAndLost) {
  const std::vector<RunResult> results = {stall_run("redis")};
  const std::string notes = format_notes(results);
  EXPECT_TRUE(contains(notes, "4,000 held (delivered late, at the readout), 1,000 lost")) << notes;
  const nlohmann::json j = to_json(options(), results, MachineFacts{}, {"switchboard", "bench"});
  const auto& stall = j["runs"][0]["stall"];
  EXPECT_EQ(stall["flood_sent"], 5000);
  EXPECT_EQ(stall["flood_held"], 4000);
  EXPECT_EQ(stall["flood_lost"], 1000);
  EXPECT_TRUE(j["units"].contains("flood_held")) << j["units"].dump();
  EXPECT_TRUE(j["units"].contains("flood_lost")) << j["units"].dump();
}

TEST(Markdown, VerificationTableGivesAVerdictPerRun) {
  RunResult clean = fanin_run();
  RunResult lossy = ok_run("nats", Scenario::throughput);
  lossy.sent = 10;
  lossy.integrity.delivered = 9;
  lossy.integrity.lost = 1;
  // The verifier also counted the flood stream's 50 arrivals; the table
  // shows the healthy streams' only, beside what they sent.
  RunResult stall = ok_run("reactor", Scenario::stall);
  stall.sent = 100;
  stall.integrity.delivered = 150;
  stall.flood_delivered = 50;
  RunResult baseline = ok_run("redis", Scenario::throughput);
  baseline.role = "stall baseline";
  const std::string t =
      verification_table({clean, lossy, baseline, failed_run("race", Scenario::conns, "did not listen")});
  EXPECT_TRUE(contains(t, "| reactor | fanin | 8100 | 8100 | 0 | 0 | 0 | 0 | 0 | 0 | clean |")) << t;
  EXPECT_TRUE(contains(t, "| nats | throughput | 10 | 9 | 1 | 0 | 0 | 0 | 0 | 0 | **NOT clean** |")) << t;
  EXPECT_TRUE(contains(t, "| redis | throughput (stall baseline) |")) << t;
  EXPECT_TRUE(contains(t, "| race | conns | - | - | - | - | - | - | - | - | run failed |")) << t;
}

TEST(Markdown, ReportHasCommandMachineChartsAndFailures) {
  const BenchOptions o = options();
  ReportMeta meta;
  meta.command_line = {"switchboard", "bench", "--report", "out dir"};
  meta.machine.nproc = 2;
  meta.machine.kernel = "6.1.0";
  meta.machine.nats_server_version = "nats-server: v2.9.10";
  meta.git_commit = "abc1234";
  meta.started_utc = "2026-11-26T08:00:00Z";
  meta.finished_utc = "2026-11-26T08:01:00Z";
  meta.wall_seconds = 60;
  const std::vector<RunResult> results = {fanin_run(), failed_run("nats", Scenario::fanin, "line 1\nline 2")};

  ChartsOutcome charts;
  charts.gnuplot = "/usr/bin/gnuplot";
  charts.gnuplot_version = "gnuplot 5.4";
  charts.terminal = "pngcairo";
  DrawnChart d;
  d.spec.name = "fanin";
  d.spec.caption = "Fan-in by target";
  d.image = "fanin.png";
  charts.charts.push_back(d);
  const std::string r = render_report(o, results, meta, charts);
  EXPECT_TRUE(contains(r, "```sh\nswitchboard bench --report 'out dir'\n```")) << r;
  EXPECT_TRUE(contains(r, "| switchboard commit | abc1234 |")) << r;
  EXPECT_TRUE(contains(r, "| nats-server | nats-server: v2.9.10 |")) << r;
  EXPECT_TRUE(contains(r, "| redis-server | not installed |")) << r;
  EXPECT_TRUE(contains(r, "![Fan-in by target](fanin.png)")) << r;
  EXPECT_TRUE(contains(r, "## Verification")) << r;
  EXPECT_TRUE(contains(r, "## Runs that failed or were skipped")) << r;
  EXPECT_TRUE(contains(r, "  line 1\n  line 2\n")) << r;

  ChartsOutcome none;
  none.problem = "gnuplot is not installed";
  const std::string r2 = render_report(o, results, meta, none);
  EXPECT_TRUE(contains(r2, "gnuplot is not installed")) << r2;
  EXPECT_FALSE(contains(r2, "![")) << r2;
}

// A cluster's server figures are sums over its nodes and Redis, and the
// notes and the settings say so, with each process' part.
TEST(Report, ClusterFiguresSayTheySumNodesAndRedis) {
  RunResult r = ok_run("cluster", Scenario::throughput);
  r.msgs_per_s = 1'000'000;
  r.server_cpu = 1.5;
  r.bench_cpu = 1.0;
  r.rss_peak_kib = 25600;
  r.server_processes = {{"node A", {"switchboard", "serve"}, 8192, 9000, 0.5},
                        {"node B", {"switchboard", "serve"}, 7168, 8000, 0.6},
                        {"redis-server", {"redis-server"}, 10240, 11000, 0.4}};
  const std::string notes = format_notes({r});
  EXPECT_TRUE(
      contains(notes,
               "- cluster throughput: CPU over the window, in cores: server 1.50, bench 1.00 (1500 ns of "
               "server CPU per delivered message)\n"))
      << notes;
  EXPECT_TRUE(
      contains(notes,
               "  server figures are sums over node A, node B and redis-server (Redis included): CPU 0.50 "
               "+ 0.60 + 0.40 cores, RSS peaks 8.0 MiB + 7.0 MiB + 10.0 MiB"))
      << notes;
  // One server: no breakdown.
  RunResult one = r;
  one.target = "reactor";
  one.server_processes.clear();
  EXPECT_FALSE(contains(format_notes({one}), "sums over")) << format_notes({one});

  BenchOptions o = options();
  o.targets = parse_targets({"reactor,cluster"});
  o.scenarios = {Scenario::throughput};
  const std::string report = render_report(o, {one, r}, ReportMeta{}, ChartsOutcome{});
  EXPECT_TRUE(contains(report, "| cluster | two `serve --engine reactor --cluster redis://...` nodes"))
      << report;
  EXPECT_TRUE(contains(report, "sums over the two nodes and redis-server (Redis included)")) << report;
  o.targets = parse_targets({"reactor"});
  EXPECT_FALSE(contains(render_report(o, {one}, ReportMeta{}, ChartsOutcome{}), "| cluster |"));

  const nlohmann::json j = to_json(o, {r}, MachineFacts{}, {});
  ASSERT_EQ(j["runs"][0]["server_processes"].size(), 3u);
  EXPECT_EQ(j["runs"][0]["server_processes"][2]["role"], "redis-server");
  EXPECT_EQ(j["runs"][0]["server_processes"][2]["cpu_cores"], 0.4);
}

TEST(Charts, PicksTheBestTerminalOffered) {
  const std::string listing =
      "Available terminal types:\n"
      "           png  PNG images using libgd and TrueType fonts\n"
      "      pngcairo  png terminal based on cairo\n"
      "           svg  W3C Scalable Vector Graphics\n";
  EXPECT_EQ(pick_gnuplot_terminal(listing), "pngcairo");
  EXPECT_EQ(pick_gnuplot_terminal("   svg  W3C\n   png  PNG images\n"), "png");
  EXPECT_EQ(pick_gnuplot_terminal("   svg  W3C Scalable Vector Graphics\n"), "svg");
  EXPECT_EQ(pick_gnuplot_terminal("   dumb  ascii art\n  epscairo  eps\n"), "");
  EXPECT_EQ(image_extension("pngcairo"), "png");
  EXPECT_EQ(image_extension("svg"), "svg");
}

TEST(Charts, GnuplotStringsAreEscaped) {
  EXPECT_EQ(gnuplot_string("reactor"), "\"reactor\"");
  EXPECT_EQ(gnuplot_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(gnuplot_string("two\nlines"), "\"two\\nlines\"");
}

TEST(Charts, DataAndScriptsPerScenarioWithFailuresLeftOut) {
  const BenchOptions o = options();
  RunResult t = ok_run("reactor", Scenario::throughput);
  t.msgs_per_s = 1500000;
  t.mb_per_s = 96;
  const std::vector<RunResult> results = {t, failed_run("race", Scenario::throughput, "crashed"),
                                          fanin_run()};
  const auto charts = build_charts(o, results, "svg");
  ASSERT_EQ(charts.size(), 2u);
  EXPECT_EQ(charts[0].name, "throughput");
  EXPECT_TRUE(contains(charts[0].data, "\"reactor\" 1.5e+06 96 -1 -1\n")) << charts[0].data;
  ASSERT_EQ(charts[0].left_out.size(), 1u);
  EXPECT_EQ(charts[0].left_out[0], "race (failed)");
  EXPECT_TRUE(contains(charts[0].script, "set terminal svg")) << charts[0].script;
  EXPECT_TRUE(contains(charts[0].script, "set output 'throughput.svg'")) << charts[0].script;
  EXPECT_TRUE(contains(charts[0].script, "not shown: race (failed)")) << charts[0].script;
  EXPECT_TRUE(contains(charts[0].script, "plot 'throughput.dat'")) << charts[0].script;
  EXPECT_EQ(charts[1].name, "fanin");
  // msgs/s, Jain, slowest and fastest sender per second.
  EXPECT_TRUE(contains(charts[1].data, "\"reactor\" 4000 0.888889 500 1500\n")) << charts[1].data;
  EXPECT_TRUE(charts[1].left_out.empty());
  EXPECT_TRUE(build_charts(o, {failed_run("race", Scenario::latency, "x")}, "png").empty());
}

TEST(Charts, StallChartShowsTheFractionAndWhatBecameOfTheFlood) {
  RunResult cut = stall_run("nats");
  cut.flood_settled = false;
  cut.flood_sent = 0;  // nothing sent: no share to draw, and no division by zero
  cut.flood_delivered = 0;
  cut.flood_lost = 0;
  RunResult big = stall_run("redis");
  big.flood_sent = 789632;
  big.flood_delivered = 39419;
  big.flood_lost = 750213;
  const auto charts = build_charts(options(), {big, cut}, "pngcairo");
  ASSERT_EQ(charts.size(), 1u);
  const ChartSpec& c = charts[0];
  EXPECT_EQ(c.name, "stall");
  // fraction, baseline, stall rate, sent, held, lost, held %, lost %, labels.
  EXPECT_TRUE(contains(c.data,
                       "\"redis\" 0.9 1000 900 789632 39419 750213 4.99207 95.0079 \"held 39,419\" "
                       "\"lost 750,213\"\n"))
      << c.data;
  EXPECT_TRUE(contains(c.data, "\"nats\" 0.9 1000 900 0 0 0 0 0 \"held 0\" \"lost 0 *\"\n")) << c.data;
  EXPECT_TRUE(contains(c.script, "set multiplot layout 2,1")) << c.script;
  EXPECT_TRUE(contains(c.script, "set style histogram rowstacked")) << c.script;
  EXPECT_TRUE(contains(c.script, "using 8:xtic(1) title 'held (delivered late)'")) << c.script;
  EXPECT_TRUE(contains(c.script, "using 9 title 'lost'")) << c.script;
  EXPECT_TRUE(contains(c.script, "* the readout ran out of time")) << c.script;
  EXPECT_TRUE(contains(c.caption, "held (delivered late, at the readout after the run) or lost"))
      << c.caption;

  // Every readout complete: no footnote.
  const auto settled = build_charts(options(), {big}, "pngcairo");
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_FALSE(contains(settled[0].script, "ran out of time")) << settled[0].script;
}

TEST(Charts, LatencyIsPointsOnALogAxisNotBars) {
  RunResult a = ok_run("reactor", Scenario::latency);
  RunResult b = ok_run("nats", Scenario::latency);
  for (int i = 1; i <= 1000; ++i) {
    a.latency.record(static_cast<std::uint64_t>(i) * 1000);  // 1..1000 us
    b.latency.record(static_cast<std::uint64_t>(i) * 2000);
  }
  const auto charts = build_charts(options(), {a, b}, "pngcairo");
  ASSERT_EQ(charts.size(), 1u);
  const ChartSpec& c = charts[0];
  EXPECT_EQ(c.name, "latency");
  // One block per target, one line per point: x, name, microseconds (as
  // the histogram keeps them, to within 1/512).
  auto us = [](const RunResult& r, double q) {
    return fmt::format("{:.6g}",
                       static_cast<double>(q > 0 ? r.latency.percentile(q) : r.latency.max()) / 1e3);
  };
  EXPECT_TRUE(contains(c.data, "# reactor\n0 \"p50\" " + us(a, 50) + "\n1 \"p90\" " + us(a, 90) +
                                   "\n2 \"p99\" " + us(a, 99) + "\n3 \"p99.9\" " + us(a, 99.9) +
                                   "\n4 \"max\" " + us(a, 0) + "\n\n\n# nats\n0 \"p50\" " + us(b, 50) + "\n"))
      << c.data;
  EXPECT_NE(us(a, 50), us(b, 50));
  EXPECT_TRUE(contains(c.script, "set logscale y")) << c.script;
  EXPECT_FALSE(contains(c.script, ":xtic(")) << c.script;  // no bar per target
  EXPECT_TRUE(contains(c.script, "'latency.dat' index 0 using 1:3 with linespoints")) << c.script;
  EXPECT_TRUE(contains(c.script, "index 1 using 1:3 with linespoints")) << c.script;
  EXPECT_TRUE(contains(c.script, "title \"nats\"")) << c.script;
  EXPECT_TRUE(contains(c.caption, "not bars")) << c.caption;
}

}  // namespace
}  // namespace sb::bench
