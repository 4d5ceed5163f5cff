// The charts of `switchboard bench --report DIR`, drawn by gnuplot: for each
// chart a data file (NAME.dat) and a script (NAME.gp) that DIR keeps, so a
// reader can check the figures and redraw them (`cd DIR && gnuplot NAME.gp`).
// Building the files is pure (and tested); drawing runs gnuplot as a child
// process. gnuplot, not a hand-written plotter: it is the charting tool
// DESIGN.md chose, packaged by Debian (gnuplot-nox).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "bench/scenarios.hpp"

namespace sb::bench {

// gnuplot's output format: the first of pngcairo, png, svg that its
// `set terminal` listing names, or "" if none.
std::string pick_gnuplot_terminal(std::string_view set_terminal_listing);
// "png" for pngcairo and png, "svg" for svg.
std::string image_extension(std::string_view terminal);

struct ChartSpec {
  std::string name;                   // file stem: throughput, latency, stall, fanin, conns
  std::string caption;                // one line for the report
  std::string data;                   // NAME.dat
  std::string script;                 // NAME.gp, reads NAME.dat and writes NAME.<ext> in its directory
  std::vector<std::string> left_out;  // "race (failed)": targets with no figure in this chart
};

// One chart per scenario that has at least one successful run among
// `results`, in the order throughput, latency, stall, fanin, conns.
std::vector<ChartSpec> build_charts(const BenchOptions& options, const std::vector<RunResult>& results,
                                    const std::string& terminal);

// "target" as a gnuplot string in double quotes (backslash and quote escaped).
std::string gnuplot_string(std::string_view text);

struct DrawnChart {
  ChartSpec spec;
  std::string image;  // file name in the directory, "" if not drawn
  std::string error;  // why not drawn
};

struct ChartsOutcome {
  std::string gnuplot;  // the program used, "" if none was found
  std::string gnuplot_version;
  std::string terminal;
  std::string problem;  // set when no chart could be drawn at all
  std::vector<DrawnChart> charts;
};

// Writes every chart's .dat and .gp into `dir` and, if gnuplot is there,
// draws them. Never throws for a missing gnuplot: the outcome says so.
ChartsOutcome write_charts(const std::string& dir, const BenchOptions& options,
                           const std::vector<RunResult>& results);

}  // namespace sb::bench
