#!/usr/bin/env bash
# Fuzz for a bounded time (default 60 s per target): the CoAP datagram
# handling, the LoRaWAN path (Semtech UDP datagram -> PHYPayload -> MIC,
# FCnt, decryption, codec), and the BLE decoders (recorded advertisement
# line, BTHome plain and encrypted, Ruuvi, PVVX/ATC, the dispatcher), and
# the line adapters' framer and CSV/JSON/influx/kv line decoders, and the
# command parser (commands from the cloud broker), the pushed
# configuration's message and allow-list ([remote_config]), and the typed
# parse of any text as gateway.toml (`config_toml`: every section and kind).
#
#   bash scripts/fuzz.sh [seconds] [target]
#   bash scripts/fuzz.sh --build     # only build every target (CI does it beside the tests)
#
# Needs a nightly toolchain; installs cargo-fuzz when missing. Crashes land
# in fuzz/artifacts/; add each as a regression test once fixed (CoAP:
# a line of crates/adapters/tests/data/coap_malformed.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
# Every [[bin]] of fuzz/Cargo.toml: an adapter's targets are named in its
# kind.rs and checked there (crates/adapters/src/declaration_tests.rs).
all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -vx 'edge-gateway-fuzz' | tr '\n' ' ')
# libFuzzer's coverage guidance without AddressSanitizer: the code under
# fuzz is Rust with `unsafe` forbidden in every crate of ours, where a
# memory error cannot happen without a compiler or dependency bug, and ASan
# instruments every dependency (OpenSSL's Rust side included), which slows
# the build and every execution. What is fuzzed here is panics, overflows
# (debug assertions stay on), hangs and unbounded allocation, which need no
# sanitizer.
# FUZZ_SANITIZER=address brings it back for a long hunt.
flags=(--sanitizer "${FUZZ_SANITIZER:-none}")
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
cd fuzz
if [ "${1:-}" = "--build" ]; then
  cargo +nightly fuzz build "${flags[@]}"
  exit 0
fi
seconds="${1:-60}"
targets="${2:-$all}"
for target in $targets; do
  # New inputs go to artifacts/corpus-<target> (not kept); the seeds stay as they are.
  mkdir -p "artifacts/corpus-$target"
  cargo +nightly fuzz run "${flags[@]}" "$target" "artifacts/corpus-$target" "corpus/$target" -- -max_total_time="$seconds"
done
