#!/usr/bin/env bash
# The default benchmark matrix: every engine this build has (the bench's
# `all` target: engines::kEngineNames, then nats and redis) over every
# scenario (throughput, stall, latency, conns, fanin), with a Markdown report,
# charts and every figure written to bench/results/<UTC date-time>/.
#
# Usage: scripts/bench.sh [--update-docs] [more `switchboard bench` flags]
#   --update-docs   also copy the report, its charts, data and scripts into
#                   docs/bench/ (what docs/BENCHMARKS.md shows; bench/results
#                   is not committed)
# Later flags override the matrix's, e.g. scripts/bench.sh --duration 10s.
#
# Installs what is missing (scripts/install-deps.sh bench: nats-server,
# redis-server and gnuplot included), builds the release binary, then waits (up to
# BENCH_MAX_WAIT=180 s) for the 1-minute load average to fall below 1.5: the
# bench and the servers share the CPUs, and the report records the load.
# The matrix takes about 25 s per target on a 2-core machine (3 targets:
# ~75 s; 8: ~3.5 min). Exit status: the bench's (0 every run clean, 1 a run
# failed, 3 a message was lost, duplicated, corrupted or reordered); the report
# is written in every case, a failed run shown as failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
update_docs=0
if [[ ${1:-} == --update-docs ]]; then
  update_docs=1
  shift
fi

export SWITCHBOARD_DEPS_PROFILE=bench
"$root/scripts/install-deps.sh" bench
"$root/scripts/build.sh" release switchboard
cd "$root"  # the report shows the command with paths relative to the tree
bin=./build/release/src/cli/switchboard

stamp=$(date -u +%Y-%m-%dT%H-%M-%SZ)
out=bench/results/$stamp
mkdir -p "$out"
# Other work skews every figure (the report records the load average): let
# the build's load die down first, for up to BENCH_MAX_WAIT seconds.
busy() {
  read -r load1 _ < /proc/loadavg
  awk -v l="$load1" 'BEGIN { exit !(l > 1.5) }'
}
waited=0
while busy && [[ $waited -lt ${BENCH_MAX_WAIT:-180} ]]; do
  [[ $waited -eq 0 ]] && echo "bench.sh: waiting for the 1-minute load average ($load1) to fall below 1.5..." >&2
  sleep 5
  waited=$((waited + 5))
done
if busy; then
  echo "bench.sh: load average still $load1: other work on this machine will skew the figures" >&2
fi

# The matrix's flags; a flag given on the command line replaces its default
# here (CLI11 takes each flag once), e.g. scripts/bench.sh --duration 10s.
defaults=(
  --target all --scenario all
  --pairs 16 --size 64 --window 256 --threads 2
  --rate 20000
  --conns 5000 --probe-pairs 100
  --senders 16
  --warmup 1s --duration 4s --drain 3s
  --report "$out"
)
given=" "
for arg in "$@"; do
  [[ $arg == --* ]] && given+="${arg%%=*} "
done
matrix=()
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  [[ $given == *" ${defaults[i]} "* ]] || matrix+=("${defaults[i]}" "${defaults[i + 1]}")
done

start=$SECONDS
set +e
"$bin" bench "${matrix[@]}" "$@" | tee "$out/console.txt"
status=${PIPESTATUS[0]}
set -e
if [[ -f $out/report.md ]]; then
  echo "bench.sh: matrix took $((SECONDS - start)) s, bench exit status $status; report: $out/report.md"
elif [[ $given == *" --report "* ]]; then
  echo "bench.sh: matrix took $((SECONDS - start)) s, bench exit status $status; report: where --report said"
else
  echo "bench.sh: bench exit status $status and no report was written (see the errors above; console output in $out/console.txt)" >&2
  [[ $status -eq 0 ]] && status=1
fi

if [[ $update_docs -eq 1 ]]; then
  if [[ ! -f $out/report.md ]]; then
    echo "bench.sh: no report was written; docs/bench left as it was" >&2
    exit "$status"
  fi
  mkdir -p docs/bench
  # Only what a report consists of: stale charts of targets no longer run go too.
  rm -f docs/bench/*.png docs/bench/*.svg docs/bench/*.dat docs/bench/*.gp docs/bench/report.md \
    docs/bench/results.json docs/bench/console.txt
  cp "$out"/report.md "$out"/results.json "$out"/console.txt docs/bench/
  for f in "$out"/*.png "$out"/*.svg "$out"/*.dat "$out"/*.gp; do
    [[ -e $f ]] && cp "$f" docs/bench/
  done
  echo "bench.sh: copied the report and its charts to docs/bench/"
fi
exit "$status"
