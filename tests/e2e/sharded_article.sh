#!/usr/bin/env bash
# The article's test against the sharded engine, checked by the independent
# Python client (article_client.py), with 2 and with 4 shards. The kernel
# puts each connection on a shard (SO_REUSEPORT), so the client runs until
# its two clients have landed on different shards at least once (the shard
# is the top bits of an ID: 1 bit for 2 shards, 2 for 4), at most 40 times;
# every run must pass. Then the server stops cleanly and its counters show
# frames that crossed shards.
# Usage: tests/e2e/sharded_article.sh [path/to/switchboard] (default: the dev build)
# Stops only the processes it started, by PID.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/build/dev/src/cli/switchboard}

script=sharded_article.sh
# shellcheck source=tests/e2e/lib.sh
source "$root/tests/e2e/lib.sh"

for shards in 2 4; do
  bits=$((shards == 2 ? 1 : 2))
  "$bin" serve --listen 127.0.0.1:0 --engine sharded --threads "$shards" >"$work/s$shards.out" 2>"$work/s$shards.err" &
  server=$!
  pids+=("$server")
  wait_for "$work/s$shards.out" "listening on" 15
  port=$(listening_port "$work/s$shards.out")
  crossed=0
  for run in $(seq 40); do
    out=$(python3 "$root/tests/e2e/article_client.py" "$port") || fail "run $run with $shards shards: $out"
    read -r id1 id2 < <(sed -n 's/.*(ids \([0-9]*\) and \([0-9]*\)).*/\1 \2/p' <<<"$out")
    [[ -n $id1 && -n $id2 ]] || fail "no IDs in the client's output: $out"
    if (((id1 >> (32 - bits)) != (id2 >> (32 - bits)))); then
      crossed=$run
      break
    fi
  done
  ((crossed > 0)) || fail "in 40 runs with $shards shards the two clients never landed on different shards"
  kill -TERM "$server"
  wait "$server" || fail "the server with $shards shards did not exit cleanly"
  forwarded=$(sed -n 's/.*stats: .* forwarded=\([0-9]*\) .*/\1/p' "$work/s$shards.err" | tail -1)
  ((${forwarded:-0} >= 101)) || fail "with $shards shards the counters show ${forwarded:-no} forwarded frames, not the crossing run's 101 or more"
  echo "sharded_article.sh: $shards shards: $crossed run(s) of the article's test, the last across shards; forwarded=$forwarded"
done
echo "sharded_article.sh: OK (the article's test, independent client, 2 and 4 shards, frames across shards)"
