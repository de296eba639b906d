#!/usr/bin/env bash
# Fuzz for a bounded time (default 60 s per target): the CoAP datagram
# handling, the LoRaWAN path (Semtech UDP datagram -> PHYPayload -> MIC,
# FCnt, decryption, codec), and the BLE decoders (recorded advertisement
# line, BTHome plain and encrypted, Ruuvi, PVVX/ATC, the dispatcher), and
# the line adapters' framer and CSV/JSON/influx/kv line decoders.
# `bash scripts/fuzz.sh [seconds] [target]`.
# Needs a nightly toolchain; installs cargo-fuzz when missing. Crashes land
# in fuzz/artifacts/; add each as a regression test once fixed (CoAP:
# a line of crates/adapters/tests/data/coap_malformed.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
targets="${2:-coap_datagram lorawan_datagram ble_advert_line ble_bthome ble_ruuvi ble_xiaomi ble_dispatch line_parsers}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
cd fuzz
for target in $targets; do
  # New inputs go to artifacts/corpus-<target> (not kept); the seeds stay as they are.
  mkdir -p "artifacts/corpus-$target"
  cargo +nightly fuzz run "$target" "artifacts/corpus-$target" "corpus/$target" -- -max_total_time="$seconds"
done
