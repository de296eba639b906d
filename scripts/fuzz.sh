#!/usr/bin/env bash
# Fuzz the CoAP datagram handling for a bounded time (default 60 s).
# Needs a nightly toolchain; installs cargo-fuzz when missing. Crashes land
# in fuzz/artifacts/; add each as a line of
# crates/adapters/tests/data/coap_malformed.txt once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
cd fuzz
# New inputs go to artifacts/corpus (not kept); the seeds stay as they are.
mkdir -p artifacts/corpus
cargo +nightly fuzz run coap_datagram artifacts/corpus corpus/coap_datagram -- -max_total_time="$seconds"
