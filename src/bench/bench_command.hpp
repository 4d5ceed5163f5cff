// `switchboard bench`: the load generator and benchmark (docs in
// bench_command.cpp's help texts and DESIGN.md). The CLI's main calls
// add_bench_command once while building its App; the subcommand runs from
// its own CLI11 callback, prints its report, and signals a non-zero exit
// status by throwing CLI::RuntimeError (which CLI11 turns into the exit code
// without printing anything more).
#pragma once

#include <CLI/CLI.hpp>

namespace sb::bench {

void add_bench_command(CLI::App& app);

}  // namespace sb::bench
