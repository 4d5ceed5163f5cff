#!/usr/bin/env bash
# Installs what is missing, then configures and builds one CMake preset
# (default: release). Usage: scripts/build.sh [dev|debug|release|tsan|fuzz] [target...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-release}
shift || true
"$root/scripts/install-deps.sh"
cd "$root"
if [[ ! -f "build/$preset/build.ninja" ]]; then
  cmake --preset "$preset" >/dev/null
fi
if [[ $# -gt 0 ]]; then
  cmake --build --preset "$preset" --target "$@"
else
  cmake --build --preset "$preset"
fi
