#!/usr/bin/env bash
# Checks a switchboard.service with `systemd-analyze verify` (syntax, known
# options, ExecStart's binary). Usage: unit_verify.sh UNIT BINARY
# The unit's ExecStart names the installed path (/usr/bin/switchboard); the
# check uses a copy that names BINARY instead, so it runs before installing.
# Exit 77 (ctest: skipped) when systemd-analyze is not installed.
set -euo pipefail
unit=$1
bin=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "unit_verify: systemd-analyze is not installed; skipped" >&2
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -E "s|^ExecStart=[^ ]+/switchboard |ExecStart=$bin |" "$unit" >"$work/switchboard.service"
grep -q "^ExecStart=$bin serve" "$work/switchboard.service"
grep -qx "Type=notify" "$work/switchboard.service"
# verify prints problems on stderr and exits non-zero on errors; warnings
# about the machine (no running systemd) are not the unit's.
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$work/switchboard.service" 2>&1) || {
  echo "$out" >&2
  echo "unit_verify: systemd-analyze verify failed" >&2
  exit 1
}
if grep -i "switchboard.service" <<<"$out" >&2; then
  echo "unit_verify: systemd-analyze warned about the unit (above)" >&2
  exit 1
fi
echo "unit_verify: $unit OK"
