#!/usr/bin/env bash
# Installs what is missing, builds the given preset (default: dev, with
# assertions) and runs the whole test suite with CTest.
# Usage: scripts/test.sh [dev|release|asan|tsan] [extra ctest arguments]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-dev}
shift || true
"$root/scripts/build.sh" "$preset"
cd "$root"
ctest --preset "$preset" -j "$(nproc)" "$@"
