#!/usr/bin/env bash
# Installs what is missing (the `run` profile: only what building and
# running the server needs), builds the release binary and serves on
# 127.0.0.1:8080 with the default engine. Extra arguments go to `serve`,
# e.g. scripts/run.sh --engine reactor --log-level debug
# A failed build shows the compiler's errors in full and exits non-zero.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export SWITCHBOARD_DEPS_PROFILE=run  # scripts/build.sh installs this profile too
"$root/scripts/install-deps.sh" run
echo "switchboard: building the release binary (build/release)..." >&2
if [[ ! -f build/release/build.ninja ]]; then
  # The test suite needs GoogleTest, which the run profile does not install.
  cmake --preset release -DSWITCHBOARD_TESTS=OFF >/dev/null
fi
# Ninja's progress and, if it fails, the compiler's errors in full, on
# stderr: stdout carries only the server's listening line.
if ! "$root/scripts/build.sh" release switchboard >&2; then
  echo "switchboard: the build failed; the errors are above" >&2
  exit 1
fi
exec "$root/build/release/src/cli/switchboard" serve --listen 127.0.0.1:8080 "$@"
