#!/usr/bin/env bash
# The sharded engine by shard count (serve --threads 1, 2, 4), each beside the
# reactor in the same `switchboard bench` run (the targets one after the
# other, the same load), as docs/BENCHMARKS.md shows it: messages a second,
# server cores, server CPU time per delivered message and its ratio to the
# reactor's, and how many pairs and frames crossed shards (the bench places
# each pair's clients: --placement planned).
# Usage: bench/shards_table.sh [BINARY] [more `switchboard bench` flags]
# Takes about 40 s (three runs of two targets, 1 s warm-up and 4 s each).
set -euo pipefail
bin=${1:-./build/release/src/cli/switchboard}
shift $(($# > 0 ? 1 : 0))
flags=(--scenario throughput --pairs 16 --size 64 --window 256 --threads 2 --warmup 1s --duration 4s)
dir=$(mktemp -d /tmp/switchboard-shards.XXXXXX)
trap 'rm -rf "$dir"' EXIT
for n in 1 2 4; do
  "$bin" bench --target reactor,sharded --shards "$n" "${flags[@]}" "$@" --json "$dir/$n.json" >"$dir/$n.txt"
done
python3 - "$dir" <<'EOF'
import json, sys
print("| shards | reactor msgs/s | sharded msgs/s | server cores (reactor, sharded) "
      "| ns of server CPU per message (reactor, sharded) | ratio | pairs crossing | frames crossing |")
print("|---|---|---|---|---|---|---|---|")
for n in (1, 2, 4):
    runs = {r["target"]: r for r in json.load(open(f"{sys.argv[1]}/{n}.json"))["runs"]}
    r, s = runs["reactor"], runs["sharded"]
    ns = lambda x: x["cpu_cores"]["server"] / x["msgs_per_s"] * 1e9
    sh = s.get("sharded", {})
    routed, fwd = sh.get("frames_routed"), sh.get("frames_forwarded")
    frames = f"{fwd / routed:.0%}" if routed else "n/a"
    pairs = f"{sh['pairs_crossing']} of {sh['pairs_placed']}" if sh.get("placed") else "none placed"
    print(f"| {n} | {r['msgs_per_s']:,.0f} | {s['msgs_per_s']:,.0f} "
          f"| {r['cpu_cores']['server']:.2f}, {s['cpu_cores']['server']:.2f} "
          f"| {ns(r):.0f}, {ns(s):.0f} | {ns(s) / ns(r):.2f} | {pairs} | {frames} |")
EOF
