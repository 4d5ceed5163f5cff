# Shared by the e2e scripts that start servers of their own (sourced):
# a temporary work directory, the PIDs they started (stopped by PID at
# exit, never by name), and bounded waits. Set `script` to the script's
# name before sourcing, for messages.
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Says what failed, with the end of every *.err log in the work directory.
fail() {
  echo "$script: FAILED: $*" >&2
  for f in "$work"/*.err; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  exit 1
}

wait_for() {  # file pattern seconds
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "timed out waiting for '$2' in $1"
    sleep 0.1
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The port of a "switchboard listening on 127.0.0.1:PORT" line in a file.
listening_port() {
  sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1"
}
