#!/usr/bin/env bash
# Installs what is missing, builds the release binary and serves on
# 127.0.0.1:8080 with the default engine. Extra arguments go to `serve`,
# e.g. scripts/run.sh --engine reactor --log-level debug
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
echo "switchboard: installing what is missing and building the release binary..." >&2
"$root/scripts/build.sh" release switchboard >/dev/null
exec "$root/build/release/src/cli/switchboard" serve --listen 127.0.0.1:8080 "$@"
