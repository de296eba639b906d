#!/usr/bin/env bash
# Checks the serial-port drop-in against the packaged unit with
# `systemd-analyze verify` (no unknown keys, no errors) and `systemd-analyze
# security --offline` (the drop-in opens devices; the unit alone does not).
# `bash packaging/check-serial-dropin.sh [path-of-the-edge-gateway-binary]`
# (default: /usr/bin/edge-gateway when installed, else target/debug's).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-serial-dropin: FAILED: $*" >&2; exit 1; }
ok() { echo "check-serial-dropin: ok: $*"; }

command -v systemd-analyze >/dev/null 2>&1 || fail "systemd-analyze is missing (apt-get install systemd)"
bin="${1:-}"
if [ -z "$bin" ]; then
  if [ -x /usr/bin/edge-gateway ]; then bin=/usr/bin/edge-gateway; else bin="$PWD/target/debug/edge-gateway"; fi
fi
[ -x "$bin" ] || fail "no edge-gateway binary at $bin"

unit=packaging/debian/edge-gateway.service
dropin=packaging/debian/serial-port.conf
grep -qx 'PrivateDevices=yes' "$unit" || fail "the packaged unit no longer has PrivateDevices=yes"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/edge-gateway.service.d"
# The unit as installed, but running the binary given (verify checks that
# ExecStart is executable).
sed "s#/usr/bin/edge-gateway#$bin#g" "$unit" > "$work/edge-gateway.service"
cp "$dropin" "$work/edge-gateway.service.d/serial-port.conf"

# SYSTEMD_UNIT_PATH makes systemd read the drop-in directory beside it.
out=$(SYSTEMD_UNIT_PATH="$work:" systemd-analyze verify "$work/edge-gateway.service" 2>&1) \
  || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
ok "systemd-analyze verify (unit + drop-in)"

security() {
  SYSTEMD_UNIT_PATH="$1:" systemd-analyze security --offline=yes "$1/edge-gateway.service" 2>&1
}
with=$(security "$work")
grep -q '✗ PrivateDevices=' <<<"$with" || fail "the drop-in did not apply: $with"
grep -q '✗ SupplementaryGroups=' <<<"$with" || fail "no supplementary group with the drop-in"
ok "the drop-in opens devices: $(echo "$with" | grep 'Overall exposure')"

rm -r "$work/edge-gateway.service.d"
without=$(security "$work")
grep -q '✓ PrivateDevices=' <<<"$without" || fail "the unit alone gives access to devices: $without"
ok "the unit alone keeps PrivateDevices: $(echo "$without" | grep 'Overall exposure')"
