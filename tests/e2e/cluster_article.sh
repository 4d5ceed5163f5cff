#!/usr/bin/env bash
# The article's test across a cluster: a redis-server of its own on a free
# loopback port, two nodes (serve --cluster), and the independent Python
# client (article_client.py) with client 1 on one node and client 2 on the
# other. Then a check that the nodes' counters saw the frames cross.
# Usage: tests/e2e/cluster_article.sh [path/to/switchboard] (default: the dev build)
# Stops only the processes it started, by PID.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/build/dev/src/cli/switchboard}

script=cluster_article.sh
# shellcheck source=tests/e2e/lib.sh
source "$root/tests/e2e/lib.sh"

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.err" 2>&1 &
pids+=("$!")
deadline=$((SECONDS + 15))
until redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG; do
  ((SECONDS < deadline)) || fail "redis-server did not answer"
  sleep 0.1
done

ports=()
for n in 1 2; do
  "$bin" serve --listen 127.0.0.1:0 --cluster "redis://127.0.0.1:$rport/e2e" >"$work/node$n.out" 2>"$work/node$n.err" &
  pids+=("$!")
  wait_for "$work/node$n.out" "listening on" 15
  ports+=("$(listening_port "$work/node$n.out")")
done

python3 "$root/tests/e2e/article_client.py" "${ports[0]}" "${ports[1]}" || fail "the article's exchange across two nodes"

# Both nodes stop cleanly, and each forwarded what its client sent to the other.
for i in 1 2; do
  kill -TERM "${pids[$i]}"
  wait "${pids[$i]}" || fail "node $i did not exit cleanly"
done
grep -q "forwarded=101 " "$work/node1.err" || fail "node 1 did not forward the 101 frames of client 1"
grep -q "forwarded=1 " "$work/node2.err" || fail "node 2 did not forward the 1 frame of client 2"
echo "cluster_article.sh: OK (the article's test with its two clients on two nodes)"
