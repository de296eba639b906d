#!/usr/bin/env bash
# The gateway builds with any one protocol alone (and the upstream output
# with none): each adapter's feature must carry everything it needs, and
# nothing outside an adapter may reach into one without its feature.
# Warnings fail it too (grepped, since RUSTFLAGS would rebuild every crate).
set -euo pipefail
cd "$(dirname "$0")/.."

features=("$@")
if [ "${#features[@]}" -eq 0 ]; then
  # Every protocol the binary knows: the members of `all-protocols`.
  mapfile -t features < <(grep '^all-protocols' crates/edge-gateway/Cargo.toml | grep -o '"[a-z_]*"' | tr -d '"')
fi
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
