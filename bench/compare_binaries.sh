#!/usr/bin/env bash
# Two switchboard binaries side by side in one run: each serves on its own
# loopback port, and `switchboard bench` (from the second binary) measures
# them in turn, ROUNDS times, alternating, so that noise hits both alike.
# Prints msgs/s and server CPU per million messages (from /proc/PID/stat).
# Usage: bench/compare_binaries.sh OLD_BINARY NEW_BINARY [ROUNDS] [extra bench flags...]
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
shift $(( $# >= 3 ? 3 : 2 ))
tick=$(getconf CLK_TCK)
cpu_s() { awk -v t="$tick" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
"$old" serve --listen 127.0.0.1:0 >/tmp/compare-old.log 2>&1 & op=$!
"$new" serve --listen 127.0.0.1:0 >/tmp/compare-new.log 2>&1 & np=$!
trap 'kill $op $np 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  grep -q "listening on" /tmp/compare-old.log && grep -q "listening on" /tmp/compare-new.log && break
  sleep 0.1
done
port() { sed -n 's/^switchboard listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$1"; }
declare -A where=([old]=$(port /tmp/compare-old.log) [new]=$(port /tmp/compare-new.log))
declare -A pid=([old]=$op [new]=$np)
printf '%-5s %-4s %12s %22s\n' round bin msgs/s "server CPU s/M msgs"
for r in $(seq "$rounds"); do
  for which in old new; do
    before=$(cpu_s "${pid[$which]}")
    line=$("$new" bench --target "addr:127.0.0.1:${where[$which]}" --pairs 16 --size 64 --window 256 \
      --threads 2 --warmup 1s --duration 4s "$@" | grep -E '^addr:' | head -1)
    after=$(cpu_s "${pid[$which]}")
    rate=$(awk '{gsub(",", "", $3); print $3}' <<<"$line")
    # CPU over warm-up + window + drain, per message of the window: an upper
    # bound, the same for both binaries.
    awk -v r="$r" -v w="$which" -v rate="$rate" -v c="$(awk -v a="$after" -v b="$before" 'BEGIN{print a-b}')" \
      'BEGIN{printf "%-5s %-4s %12d %22.3f\n", r, w, rate, c / (rate * 4 / 1e6)}'
  done
done
