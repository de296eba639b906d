#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine with a Rust toolchain.
# Tests start real peers (Mosquitto, mosquitto_pub/sub) themselves on
# loopback ports; this installs them first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v stdbuf >/dev/null 2>&1 || missing+=(coreutils)
command -v coap-client-notls >/dev/null 2>&1 || missing+=(libcoap3-bin)
# The serial_line test's pseudo-terminal pair, and the check of the
# packaged unit's serial drop-in.
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing test peers: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# The sensor nodes (firmware/): their no_std codec for both embedded
# targets and their MicroPython library under CPython, end to end against
# the gateway. Run first, so cargo's summary of the workspace is what ends
# the output. Skipped when arguments pick particular cargo tests.
if [ "$#" -eq 0 ]; then
  bash scripts/test-firmware.sh
fi

# Debian's mosquitto package starts a system broker on 1883; tests never use
# it (each starts its own on a free port), so it is left alone.
exec cargo test --workspace --locked "$@"
