#!/usr/bin/env bash
# Installs the Debian 12 packages switchboard needs for one profile, and only
# those missing; uses sudo when not root. Says what it installs and shows
# apt's progress; silent when everything is already there.
#
# Usage: scripts/install-deps.sh [run|test|bench]
#   run    building and running the server: compiler, CMake, Ninja, Boost,
#          CLI11, spdlog, fmt, nlohmann-json, libsystemd, hiredis (--cluster)
#          (scripts/run.sh)
#   test   run + GoogleTest, Google Benchmark, clang (fuzzing, sanitizers,
#          clang-format, clang-tidy), python3 (e2e client), redis-server,
#          nats-server and prometheus (peers of the bench's, the cluster's
#          and the metrics' tests) (scripts/test.sh, .ci/run)
#   bench  test + gnuplot (charts) (scripts/bench.sh)
# Without an argument: $SWITCHBOARD_DEPS_PROFILE, else `test` (what
# scripts/build.sh needs for any preset).
#
# Packages that ship a system service (redis-server, nats-server,
# prometheus) are installed without starting it (a policy-rc.d that refuses
# starts, for the time of the install, when there is none) and left disabled
# afterwards: the tests start their own instances on free ports. A service
# that was installed before this script ran is left as it was.
set -euo pipefail

profile=${1:-${SWITCHBOARD_DEPS_PROFILE:-test}}
run_packages=(
  cmake ninja-build g++ pkg-config git
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libboost1.81-dev libsystemd-dev libhiredis-dev
)
test_packages=(
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev clang-format clang-tidy
  python3 procps dpkg-dev
  redis-server nats-server prometheus
)
bench_packages=(gnuplot-nox)
# The packages above whose postinst enables a service, and its unit name.
declare -A service_of=([redis-server]=redis-server [nats-server]=nats-server [prometheus]=prometheus)

case $profile in
  run) packages=("${run_packages[@]}") ;;
  test) packages=("${run_packages[@]}" "${test_packages[@]}") ;;
  bench) packages=("${run_packages[@]}" "${test_packages[@]}" "${bench_packages[@]}") ;;
  *)
    echo "install-deps: unknown profile '$profile' (use run, test or bench)" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
echo "install-deps ($profile profile): installing ${#missing[@]} Debian package(s): ${missing[*]}" >&2

# Refuse service starts while installing, unless the machine already has a
# policy (containers often do); removed again on exit.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# scripts/install-deps.sh: no service starts while it installs\nexit 101\n' |
    "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  own_policy=1
fi
remove_policy() { if [[ $own_policy -eq 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap remove_policy EXIT

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: apt-get update" >&2
"${sudo[@]}" apt-get update
echo "install-deps: apt-get install (this can take a few minutes the first time)" >&2
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"

# Leave the services this run installed disabled and stopped.
for p in "${missing[@]}"; do
  unit=${service_of[$p]:-}
  [[ -n $unit ]] || continue
  echo "install-deps: disabling the $unit service that $p installs (tests start their own)" >&2
  if command -v deb-systemd-helper >/dev/null; then
    "${sudo[@]}" deb-systemd-helper disable "$unit.service" || true
  fi
  if [[ -d /run/systemd/system ]]; then
    "${sudo[@]}" systemctl disable --now "$unit.service" || true
  fi
  if [[ -x /etc/init.d/$unit ]] && command -v update-rc.d >/dev/null; then
    "${sudo[@]}" update-rc.d "$unit" disable >/dev/null 2>&1 || true
    [[ -d /run/systemd/system ]] || "${sudo[@]}" /etc/init.d/"$unit" stop >/dev/null 2>&1 || true
  fi
done
echo "install-deps: done" >&2
