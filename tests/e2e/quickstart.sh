#!/usr/bin/env bash
# Checks the README's first command end to end: `bash scripts/run.sh` must
# install, build and serve on 127.0.0.1:8080, and independent clients (the
# Python one here, and `switchboard listen`/`send`) must work against it.
# Stops only the processes it started, by PID.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() {  # file pattern seconds
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "quickstart: timed out waiting for '$2' in $1:" >&2
      cat "$1" >&2
      return 1
    fi
    sleep 0.1
  done
}

bash scripts/run.sh >"$work/server.out" 2>"$work/server.err" &
server=$!
pids+=("$server")
wait_for "$work/server.out" "listening on 127.0.0.1:8080" 900

python3 tests/e2e/article_client.py 8080

bin=build/release/src/cli/switchboard
"$bin" --version | grep -Eq '^switchboard [0-9]+\.[0-9]+\.[0-9]+ \(git '
# A bad value is a usage error: exit 2, one line.
set +e
"$bin" serve --listen 127.0.0.1:0 --threads 5000 2>"$work/bad.err"
code=$?
set -e
[[ $code -eq 2 && $(wc -l <"$work/bad.err") -eq 1 ]] || { echo "quickstart: bad flag gave exit $code:" >&2; cat "$work/bad.err" >&2; exit 1; }
echo "--version and usage errors OK"

"$bin" listen >"$work/listen.out" 2>/dev/null &
pids+=("$!")
wait_for "$work/listen.out" "^id " 10
id=$(sed -n 's/^id //p' "$work/listen.out")
"$bin" send --server localhost:8080 --to "$id" hello from the quickstart 2>/dev/null
printf 'line one\nline two\n' | "$bin" send --to "$id" 2>/dev/null
wait_for "$work/listen.out" "^from [0-9]*: line two$" 10
grep -qx "from [0-9]*: hello from the quickstart" "$work/listen.out"
echo "listen/send OK"

kill -TERM "$server"
wait "$server"
grep -q "stats: accepted=" "$work/server.err"
echo "quickstart OK: server stopped cleanly ($(grep -o 'stats: .*' "$work/server.err"))"
