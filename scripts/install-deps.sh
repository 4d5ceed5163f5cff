#!/usr/bin/env bash
# Installs the Debian 12 packages switchboard needs, and only those missing.
# Idempotent and silent when everything is already there; uses sudo when not
# root. Called by the README's commands and by .ci/run.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libboost1.81-dev libhiredis-dev
  clang-14 libclang-rt-14-dev clang-format clang-tidy
  redis-server nats-server gnuplot-nox procps python3
  prometheus  # tests: promtool checks /metrics, tests/e2e/prometheus.sh scrapes it
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
