#!/usr/bin/env bash
# End to end with a real Prometheus: serve with --metrics, route a few
# frames, let Debian's `prometheus` scrape switchboard every second, and read
# switchboard_frames_routed_total back from its HTTP API. Skipped (exit 0,
# with a message) only when the prometheus binary is missing.
# Usage: tests/e2e/prometheus.sh [path/to/switchboard] (default: the dev build)
# Stops only the processes it started, by PID; its storage is a temp dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/build/dev/src/cli/switchboard}

if ! command -v prometheus >/dev/null; then
  echo "prometheus.sh: SKIPPED: no prometheus binary (Debian package 'prometheus')"
  exit 0
fi

script=prometheus.sh
# shellcheck source=tests/e2e/lib.sh
source "$root/tests/e2e/lib.sh"

"$bin" serve --listen 127.0.0.1:0 --metrics 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
pids+=("$!")
wait_for "$work/server.out" "listening on" 15
port=$(listening_port "$work/server.out")
mport=$(sed -n 's|.*metrics on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$work/server.err")
[[ -n "$port" && -n "$mport" ]] || fail "no ports in the server's output"

# Three frames, client to itself (the article's v1 protocol), checked.
python3 - "$port" <<'EOF' || fail "routing a few frames"
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
buf = b""
while len(buf) < 4:
    buf += s.recv(4)
me = struct.unpack(">I", buf[:4])[0]
for i in range(3):
    s.sendall(struct.pack(">I", me) + b"hello %d\0" % i)
got = buf[4:]
while got.count(b"\0") < 3:
    got += s.recv(4096)
assert got == b"hello 0\0hello 1\0hello 2\0", got
EOF

pport=$(free_port)
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: switchboard
    static_configs:
      - targets: ['127.0.0.1:$mport']
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$pport" >"$work/prometheus.out" 2>"$work/prometheus.err" &
pids+=("$!")

# Bounded: up to 60 s for Prometheus to start, scrape and answer.
value=""
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  answer=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
             "http://127.0.0.1:$pport/api/v1/query?query=switchboard_frames_routed_total" 2>/dev/null || true)
  value=$(printf '%s' "$answer" | python3 -c '
import json, sys
try:
    r = json.load(sys.stdin)["data"]["result"]
    print(r[0]["value"][1] if r else "")
except Exception:
    print("")' 2>/dev/null || true)
  [[ -n "$value" ]] && break
  sleep 0.5
done
[[ -n "$value" ]] || fail "Prometheus never returned switchboard_frames_routed_total"
((value >= 3)) || fail "switchboard_frames_routed_total is $value, expected at least 3"
echo "prometheus.sh OK: Prometheus scraped switchboard_frames_routed_total = $value"
