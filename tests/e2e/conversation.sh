#!/usr/bin/env bash
# Two programs converse through the server in protocol v2, each library on
# one side: the C++ echo service answers the Python requester, the Python
# echo service answers the C++ requester, and `switchboard listen --echo`
# answers too; `switchboard send` to nobody reports the ERROR. The examples
# are those of docs/CLIENTS.md. The server is the README's binary (build/<preset>,
# default release, built if needed) on a free port. Stops only what it
# started, by PID; every wait is bounded.
#   tests/e2e/conversation.sh [release|dev]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
preset=${1:-release}
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
      echo "conversation: timed out waiting for '$2' in $1:" >&2
      cat "$1" >&2
      return 1
    fi
    sleep 0.1
  done
}

# The documentation shows these very files.
for f in examples/echo_service.cpp examples/requester.cpp clients/python/examples/echo.py \
  clients/python/examples/requester.py; do
  python3 -c 'import sys; sys.exit(open(sys.argv[1]).read() not in open("docs/CLIENTS.md").read())' "$f" ||
    { echo "conversation: docs/CLIENTS.md does not show $f as it is" >&2; exit 1; }
done

bash scripts/build.sh "$preset" switchboard echo_service requester >/dev/null
build=build/$preset
bin=$build/src/cli/switchboard
export PYTHONPATH=$root/clients/python  # the package, not installed

"$bin" serve --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
server=$!
pids+=("$server")
wait_for "$work/server.out" "listening on 127.0.0.1:" 30
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.out")

expect_answer() {  # output-file service-id text
  if ! grep -qx "answer from $2: $3" "$1"; then
    echo "conversation: expected 'answer from $2: $3', got:" >&2
    cat "$1" >&2
    return 1
  fi
}

# C++ echo service, Python requester.
"$build/examples/echo_service" 127.0.0.1 "$port" >"$work/cpp_echo.out" 2>"$work/cpp_echo.err" &
pids+=("$!")
wait_for "$work/cpp_echo.out" "^echo service: id " 10
cpp_echo=$(sed -n 's/^echo service: id //p' "$work/cpp_echo.out")
timeout 20 python3 clients/python/examples/requester.py 127.0.0.1 "$port" "$cpp_echo" "hello from python" \
  >"$work/py_req.out"
expect_answer "$work/py_req.out" "$cpp_echo" "hello from python"
echo "C++ echo service <-> Python requester OK"

# Python echo service, C++ requester.
python3 clients/python/examples/echo.py 127.0.0.1 "$port" >"$work/py_echo.out" 2>"$work/py_echo.err" &
pids+=("$!")
wait_for "$work/py_echo.out" "^echo service: id " 10
py_echo=$(sed -n 's/^echo service: id //p' "$work/py_echo.out")
timeout 20 "$build/examples/requester" 127.0.0.1 "$port" "$py_echo" "hello from c++" >"$work/cpp_req.out"
expect_answer "$work/cpp_req.out" "$py_echo" "hello from c++"
echo "Python echo service <-> C++ requester OK"

# `switchboard listen --echo` as the service: it prints what it got, with the sender.
"$bin" listen --server "127.0.0.1:$port" --echo </dev/null >"$work/listen.out" 2>"$work/listen.err" &
pids+=("$!")
wait_for "$work/listen.out" "^id " 10
listen_id=$(sed -n 's/^id //p' "$work/listen.out")
timeout 20 python3 clients/python/examples/requester.py 127.0.0.1 "$port" "$listen_id" "hello listen" \
  >"$work/py_req2.out"
expect_answer "$work/py_req2.out" "$listen_id" "hello listen"
wait_for "$work/listen.out" "^from [0-9]*: hello listen$" 10
echo "listen --echo <-> Python requester OK"

# The requesters and `send` report an unknown destination and fail.
if timeout 20 "$build/examples/requester" 127.0.0.1 "$port" 4000000 "anyone?" 2>"$work/nobody.err"; then
  echo "conversation: the requester succeeded with no service" >&2
  exit 1
fi
grep -qx "requester: no client 4000000 (no_route)" "$work/nobody.err"
if timeout 20 "$bin" send --server "127.0.0.1:$port" 4000000 anyone 2>"$work/send.err"; then
  echo "conversation: send to nobody exited 0" >&2
  exit 1
fi
grep -q "no client 4000000 (no_route)" "$work/send.err"
echo "no_route reported OK"

for p in "${pids[@]:1}"; do kill -TERM "$p" 2>/dev/null || true; done
kill -TERM "$server"
wait "$server"
grep -q "stats: accepted=" "$work/server.err"
echo "conversation OK: server stopped cleanly ($(grep -o 'stats: .*' "$work/server.err"))"
