#!/usr/bin/env bash
# Installs what is missing (the `test` profile), builds the given preset
# (default: dev, with assertions, AddressSanitizer and UBSan) and runs the
# whole test suite with CTest.
# Usage: scripts/test.sh [dev|debug|release|tsan] [extra ctest arguments]
# Safe while scripts/run.sh serves on 127.0.0.1:8080: every test listens on a
# free port, and the article's test on 8080 is skipped (saying why) when
# that port is taken; its bytes are checked on a free port as well.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-dev}
shift || true
export SWITCHBOARD_DEPS_PROFILE=test
"$root/scripts/install-deps.sh" test
cd "$root"
# scripts/run.sh configures build/release without the tests: turn them on.
if [[ -f build/$preset/CMakeCache.txt ]] && grep -q '^SWITCHBOARD_TESTS:BOOL=OFF' "build/$preset/CMakeCache.txt"; then
  cmake --preset "$preset" -DSWITCHBOARD_TESTS=ON >/dev/null
fi
# The dev tree's tests that measure the server's memory run the release
# server (the sanitizers' shadow memory would be measured otherwise): build
# it first, configured as scripts/run.sh does, so that the run command and
# the package reuse it.
if [[ $preset == dev ]]; then
  if [[ ! -f build/release/build.ninja ]]; then
    cmake --preset release -DSWITCHBOARD_TESTS=OFF >/dev/null
  fi
  "$root/scripts/build.sh" release switchboard
fi
# SWITCHBOARD_TEST_TARGETS (space-separated) builds only those targets, for
# a ctest -R that runs nothing else (.ci/run's ThreadSanitizer step).
# shellcheck disable=SC2086
"$root/scripts/build.sh" "$preset" ${SWITCHBOARD_TEST_TARGETS:-}
# Two tests per core: most of a test's time is spent waiting on its server.
ctest --preset "$preset" -j "$(($(nproc) * 2))" --no-tests=error "$@"
