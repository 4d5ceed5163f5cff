#!/usr/bin/env bash
# Builds the .deb (`cpack -G DEB`) from the run command's release tree
# (build/release, configured without the tests by scripts/run.sh) when there
# is one, so CI does not compile the server a second time; else in a tree of
# its own (build/deb: only the binary is compiled). Then checks what it holds with
# dpkg-deb: /usr/bin/switchboard, the systemd unit, the docs; that the
# packaged binary runs (--version); and the packaged unit with
# `systemd-analyze verify` where that is installed. For .ci/run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
SWITCHBOARD_DEPS_PROFILE=test bash scripts/install-deps.sh test
build=build/deb
if [[ -f build/release/build.ninja ]] && grep -q '^SWITCHBOARD_TESTS:BOOL=OFF' build/release/CMakeCache.txt &&
  grep -q '^CMAKE_INSTALL_PREFIX:PATH=/usr$' build/release/CMakeCache.txt; then
  build=build/release
elif [[ ! -f $build/build.ninja ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSWITCHBOARD_TESTS=OFF \
    -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
fi
cmake --build "$build" --target switchboard
rm -f "$build"/switchboard_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls "$build"/switchboard_*.deb)
echo "deb: built $deb"

contents=$(dpkg-deb -c "$deb")
for want in ./usr/bin/switchboard ./usr/lib/systemd/system/switchboard.service \
  ./usr/share/doc/switchboard/README.md ./usr/share/doc/switchboard/OPERATIONS.md \
  ./usr/share/doc/switchboard/CLUSTER.md \
  ./usr/share/doc/switchboard/switchboard.toml; do
  if ! grep -q " $want\$" <<<"$contents"; then
    echo "deb: $want is missing from the package; it holds:" >&2
    echo "$contents" >&2
    exit 1
  fi
done
depends=$(dpkg-deb -f "$deb" Depends)
echo "deb: Depends: $depends"
grep -q libspdlog <<<"$depends" || { echo "deb: Depends lacks libspdlog (dpkg-shlibdeps did not run?)" >&2; exit 1; }
grep -q libhiredis <<<"$depends" || { echo "deb: Depends lacks libhiredis (--cluster needs it)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work"
"$work/usr/bin/switchboard" --version
grep -q '^ExecStart=/usr/bin/switchboard serve' "$work/usr/lib/systemd/system/switchboard.service"
status=0
bash tests/e2e/unit_verify.sh "$work/usr/lib/systemd/system/switchboard.service" "$work/usr/bin/switchboard" || status=$?
if [[ $status -ne 0 && $status -ne 77 ]]; then exit "$status"; fi
echo "deb: OK"
