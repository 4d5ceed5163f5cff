// `switchboard bench --report DIR`: DIR/report.md, a Markdown report of one
// invocation (command line, machine, a table per scenario, the verification
// counts, notes, charts), DIR/results.json with every figure, and the
// charts' data files and gnuplot scripts (charts.hpp). The text is built by
// pure functions, tested in tests/bench/markdown_report_test.cpp.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "bench/charts.hpp"
#include "bench/report.hpp"
#include "bench/scenarios.hpp"

namespace sb::bench {

struct ReportMeta {
  std::vector<std::string> command_line;
  MachineFacts machine;
  std::string git_commit = "unknown";  // `git rev-parse --short HEAD` in the source tree
  std::string started_utc;
  std::string finished_utc;
  double wall_seconds = 0;
  std::string load_average_end;
};

// One cell: '|' escaped, line breaks turned into spaces.
std::string markdown_cell(std::string_view text);
// A GitHub-flavoured table. `align` holds 'l' or 'r' per column (missing: 'l').
// Rows shorter than the head are padded with empty cells.
std::string markdown_table(const std::vector<std::string>& head,
                           const std::vector<std::vector<std::string>>& rows, std::string_view align);
// The command line as one could paste it into a POSIX shell.
std::string shell_command(const std::vector<std::string>& argv);

// The section for one scenario ("" if `results` has no run of it).
std::string scenario_section(Scenario scenario, const BenchOptions& options,
                             const std::vector<RunResult>& results);
// Every run's verification counts, baseline runs included.
std::string verification_table(const std::vector<RunResult>& results);

std::string render_report(const BenchOptions& options, const std::vector<RunResult>& results,
                          const ReportMeta& meta, const ChartsOutcome& charts);

// The switchboard commit of the source tree this binary was built from:
// `git rev-parse --short HEAD` there, "+ uncommitted changes" if
// `git status` lists modified tracked files, "unknown" without git or tree.
std::string source_commit();
// UTC now, as 2026-11-26T08:01:02Z.
std::string utc_now();

// Writes report.md, results.json and the charts into `dir` (created if
// needed). Returns the path of report.md; throws std::runtime_error if a
// file cannot be written.
std::string write_report(const std::string& dir, const BenchOptions& options,
                         const std::vector<RunResult>& results, const ReportMeta& meta);

}  // namespace sb::bench
