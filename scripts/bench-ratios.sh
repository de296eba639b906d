#!/usr/bin/env bash
# The performance goals as one table, in a few seconds per bench: each
# path's CPU per unit of work and rate against its reference measured in
# the same run (Mosquitto, a raw UDP or TCP receiver), and the RSS. Run by
# CI beside the tests so a regression shows in the log of the landing that
# brought it (issue 69); it never fails on a number.
#
#   bash scripts/bench-ratios.sh            # build, run, print the table
#   bash scripts/bench-ratios.sh --build    # build only (CI starts it early)
#   bash scripts/bench-ratios.sh --run      # run what --build built
#
# The build is the release profile with LTO off over 16 units, unwinding
# and no incremental state, in target/ratios (about a third of a fat-LTO
# build's CPU): the per-reading crates keep their opt-level 3, so CPU per unit is
# close to the shipped binary's, while rates on a shared or loaded machine
# are not. The full benches (`cargo bench -p edge-gateway --bench ingest`
# etc., docs/PERFORMANCE.md) measure the shipped profile.
#
# BENCH_RATIOS_OUT: also write the table to this file (CI prints it in its
# summary). Needs mosquitto, mosquitto-clients and python3 (the peers
# scripts/test.sh installs).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
export OPENSSL_NO_VENDOR=${OPENSSL_NO_VENDOR:-1}
export CARGO_TARGET_DIR="$PWD/target/ratios"
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_BENCH_LTO=off
export CARGO_PROFILE_BENCH_CODEGEN_UNITS=16
# Unwinding, as the bench executables themselves must: with the release
# profile's `panic = "abort"`, the gateway binary the benches run was built
# apart from them, every crate twice (measured 2026-12-01: 1 331 CPU-s
# before, 782 after, over the same four benches). A panic never happens
# on a measured path, so what is measured does not change.
export CARGO_PROFILE_BENCH_PANIC=unwind
benches=(ingest udp_ingest tcp_line modbus)
cargo_args=(-p edge-gateway --no-default-features --features all-protocols --locked)
for b in "${benches[@]}"; do cargo_args+=(--bench "$b"); done

if [ "$mode" != "--run" ]; then
  cargo bench "${cargo_args[@]}" --no-run || exit
  [ "$mode" = "--build" ] && exit 0
fi

for tool in mosquitto mosquitto_pub mosquitto_sub python3 taskset; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench-ratios: needs $tool; no table" >&2
    exit 0
  fi
done
# The bench executables, as cargo reports them (their names carry a hash).
mapfile -t executables < <(cargo bench "${cargo_args[@]}" --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "bench" in m["target"]["kind"] and m.get("executable"):
        print(m["target"]["name"], m["executable"])
')
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
started=$(date +%s)
# Bursts of 300 000: seconds each, and a CPU per unit read from /proc's
# 10 ms ticks to a few hundredths of a µs. Each bench runs from its crate's
# directory, as cargo bench runs it.
for entry in "${executables[@]}"; do
  name=${entry%% *} exe=${entry#* }
  echo "== bench-ratios: $name"
  (cd crates/edge-gateway &&
    EDGE_BENCH_MESSAGES=300000 EDGE_BENCH_QOS=0 EDGE_BENCH_PINNED=0 EDGE_BENCH_PYTHON=0 \
      EDGE_BENCH_DATAGRAMS=300000 \
      EDGE_BENCH_LINES=300000 EDGE_BENCH_ROUNDS=3 EDGE_BENCH_BUSY=0 \
      EDGE_BENCH_SECONDS=4 EDGE_BENCH_JITTER=0 \
      timeout 300 "$exe" --bench) >"$logs/$name.log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || echo "bench-ratios: $name exited with $rc" >>"$logs/$name.log"
  sed 's/^/  /' "$logs/$name.log"
done
{
  echo "== performance goals ($(date -u +%Y-%m-%dT%H:%MZ), LTO off, unwinding, load average $(cut -d' ' -f1-3 /proc/loadavg), $(($(date +%s) - started)) s)"
  # Without LTO the executable is larger and differently laid out: its
  # RSS is a trend, the shipped binary's is the ingest bench's own.
  echo "(CPU and rates from a build without LTO: compare landings with each other; RSS is this build's, not the .deb's)"
  printf '%-78s %14s %14s  %s\n' "figure" "measured" "goal" "verdict"
  cat "$logs"/*.log | sed -n 's/^goal: //p' |
    awk -F' [|] ' '{ printf "%-78s %14s %14s  %s\n", $1, $2, $3, $4 }'
  grep -h 'exited with' "$logs"/*.log || true
} | tee "${BENCH_RATIOS_OUT:-/dev/null}"
