#!/usr/bin/env bash
# The gateway builds with any one protocol alone (and the upstream output
# with none): each adapter's feature must carry everything it needs, and
# nothing outside an adapter may reach into one without its feature.
# Warnings fail it too (grepped, since RUSTFLAGS would rebuild every crate).
set -euo pipefail
cd "$(dirname "$0")/.."

features=("$@")
[ "${#features[@]}" -gt 0 ] || features=(mqtt coap lorawan ble tcp_line serial)
for feature in "${features[@]}"; do
  echo "== edge-gateway with only '$feature'"
  out=$(cargo check --locked -p edge-gateway --no-default-features --features "$feature" --bins 2>&1) || {
    echo "$out"
    exit 1
  }
  if grep -q '^warning' <<<"$out"; then
    echo "$out"
    echo "check-features: '$feature' alone builds with warnings" >&2
    exit 1
  fi
done
