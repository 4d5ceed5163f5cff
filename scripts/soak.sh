#!/usr/bin/env bash
# Soak test (not in CI): runs the release server for DURATION under churn,
# malformed input, floods, receivers that stall and signals (SIGUSR1,
# SIGHUP), samples its RSS and open file descriptors every second, prints a
# table, and says whether the end is flat: the last samples at most 10%
# above the first ones after the warm-up (the first fifth of the run, at least
# 5 s; 5 samples averaged on each side), and the fds back to where they
# started once the load has gone.
#
# Usage: scripts/soak.sh DURATION      DURATION: seconds, or 90s, 5m, 2h
#
# The load is two switchboard-fuzz-client runs against the server (see
# tests/tools/fuzz_client.cpp): connections that come and go every few
# milliseconds doing one bad thing each, connections that flood and never
# read (closed by the stall timeout), and verified pairs that must lose
# nothing. Exit status 0 when both fuzz runs pass, the server exits 0 on
# SIGTERM and RSS and fds are flat.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() { echo "usage: scripts/soak.sh DURATION (seconds, or 90s, 5m, 2h)" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
case "$1" in
  *h) duration=$(( ${1%h} * 3600 )) ;;
  *m) duration=$(( ${1%m} * 60 )) ;;
  *s) duration=${1%s} ;;
  *) duration=$1 ;;
esac
[[ "$duration" =~ ^[0-9]+$ && "$duration" -ge 10 ]] || { echo "soak: DURATION must be at least 10 s" >&2; usage; }

bin=$root/build/release/src/cli/switchboard
fuzz=$root/build/release/tests/tools/switchboard-fuzz-client
if [[ ! -x "$bin" || ! -x "$fuzz" ]]; then
  echo "soak: building the release server and fuzz client"
  bash "$root/scripts/build.sh" release switchboard switchboard-fuzz-client >/dev/null
fi

work=$(mktemp -d /tmp/switchboard-soak-XXXXXX)
server_pid=""
load_pids=()
cleanup() {
  # Only the processes this script started, by PID.
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n "$server_pid" ]] && kill -KILL "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

help=$("$bin" serve --help 2>&1 || true)
extra=()
grep -q -- "--max-pending-total" <<<"$help" && extra+=(--max-pending-total 64M)
# A short stall timeout so that receivers which never read are closed and
# replaced many times over.
"$bin" serve --listen 127.0.0.1:0 --max-pending 1M --stall-timeout 3s "${extra[@]}" \
  >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 150); do
  grep -q "listening on" "$work/server.out" 2>/dev/null && break
  sleep 0.1
done
port=$(sed -n 's/^switchboard listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/server.out")
[[ -n "$port" ]] || { echo "soak: the server did not start:"; cat "$work/server.log"; exit 1; }
echo "soak: server PID $server_pid on 127.0.0.1:$port for ${duration}s; logs in $work"

sample() {  # prints "RSS_KiB FDS"
  local rss fds
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0)
  fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "${rss:-0} $fds"
}
read -r rss0 fds0 < <(sample)

# The load outlasts the sampling by a few seconds, so every sample is
# taken under load.
load_for=$(( duration + 5 ))
"$fuzz" --server "127.0.0.1:$port" --pid "$server_pid" --duration "$load_for" --clients 60 --seed 1 \
  >"$work/fuzz1.out" 2>&1 &
load_pids+=($!)
"$fuzz" --server "127.0.0.1:$port" --pid "$server_pid" --duration "$load_for" --clients 20 --seed 2 \
  >"$work/fuzz2.out" 2>&1 &
load_pids+=($!)

warmup=$(( duration / 5 > 5 ? duration / 5 : 5 ))
rss=() fds=()
printf '%6s %10s %6s  %s\n' "t(s)" "RSS(KiB)" "fds" "signal"
begin=$(date +%s.%N)
for (( t = 1; t <= duration; t++ )); do
  # On the second, by the wall clock: sampling takes time too.
  sleep "$(awk -v b="$begin" -v t="$t" -v now="$(date +%s.%N)" 'BEGIN { d = b + t - now; print (d > 0 ? d : 0) }')"
  kill -0 "$server_pid" 2>/dev/null || { echo "soak: the server died at ${t}s"; tail -20 "$work/server.log"; exit 1; }
  signal=""
  if (( t % 5 == 0 )); then kill -USR1 "$server_pid"; signal="USR1"; fi
  if (( t % 7 == 0 )); then kill -HUP "$server_pid"; signal="$signal HUP"; fi
  read -r r f < <(sample)
  rss+=("$r") fds+=("$f")
  printf '%6d %10d %6d  %s\n' "$t" "$r" "$f" "$signal"
done

status=0
for p in "${load_pids[@]}"; do
  if ! wait "$p"; then status=1; fi
done
load_pids=()
sleep 2  # the last connections close, memory is trimmed (once a second)
read -r rss_quiet fds_quiet < <(sample)

kill -TERM "$server_pid"
server_rc=0
wait "$server_pid" || server_rc=$?
server_pid=""

flat() {  # flat FIRST LAST: LAST at most 10% above FIRST (falling is not a leak)
  awk -v a="$1" -v b="$2" 'BEGIN { exit !(b <= a * 1.10) }'
}
# "First after warm-up" and "last" are means over 5 samples: the number of
# open connections under churn moves by tens from one second to the next.
mean5() {  # mean5 START VALUES...: the mean of 5 values from index START
  local start=$1; shift
  local v=("$@")
  printf '%s\n' "${v[@]:$start:5}" | awk '{ s += $1; n++ } END { printf "%d", s / n }'
}
n=${#rss[@]}
rss_first=$(mean5 "$warmup" "${rss[@]}") rss_last=$(mean5 $(( n - 5 )) "${rss[@]}")
fds_first=$(mean5 "$warmup" "${fds[@]}") fds_last=$(mean5 $(( n - 5 )) "${fds[@]}")
rss_max=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
fds_max=$(printf '%s\n' "${fds[@]}" | sort -n | tail -1)
verdict() { if flat "$1" "$2"; then echo flat; else echo "NOT flat"; fi; }

echo
echo "soak summary (${duration}s, warm-up ${warmup}s)"
printf '  %-5s start %8s  after warm-up %8s  last %8s  max %8s  quiet after the load %8s  -> %s\n' \
  "RSS" "$rss0" "$rss_first" "$rss_last" "$rss_max" "$rss_quiet" "$(verdict "$rss_first" "$rss_last")"
printf '  %-5s start %8s  after warm-up %8s  last %8s  max %8s  quiet after the load %8s  -> %s\n' \
  "fds" "$fds0" "$fds_first" "$fds_last" "$fds_max" "$fds_quiet" "$(verdict "$fds_first" "$fds_last")"
for f in "$work/fuzz1.out" "$work/fuzz2.out"; do sed 's/^/  /' "$f" | grep -v "^  fuzz: seed" || true; done
echo "  server: exit code $server_rc on SIGTERM; $(grep -c 'stats: ' "$work/server.log") stats lines logged"
grep 'stats: ' "$work/server.log" | tail -1 | sed 's/.*stats: /  final counters: /'

flat "$rss_first" "$rss_last" || status=1
flat "$fds_first" "$fds_last" || status=1
(( fds_quiet == fds0 )) || { echo "  open fds after the load ($fds_quiet) differ from the start ($fds0)"; status=1; }
(( server_rc == 0 )) || status=1
echo "soak: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit "$status"
