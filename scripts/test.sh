#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine with a Rust toolchain
# and build-essential. Tests start real peers (Mosquitto,
# mosquitto_pub/sub, InfluxDB 1.x...) themselves on loopback ports; this
# installs them first when they are missing. scripts/fresh-check.sh runs
# it in a minimal Debian 12 root.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# test-support's TLS certificates for the upstream TLS tests.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The tests link Debian's OpenSSL (see OPENSSL_NO_VENDOR below).
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v stdbuf >/dev/null 2>&1 || missing+=(coreutils)
command -v coap-client-notls >/dev/null 2>&1 || missing+=(libcoap3-bin)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
# tests/protocols/ble_radio.rs: a private bus and a mock bluetoothd (bluez5 template)
# for btleplug's real D-Bus path. Debian's python3, not a pyenv one.
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus)
/usr/bin/python3 -c 'import dbusmock' 2>/dev/null || missing+=(python3-dbusmock)
# The serial_line test's pseudo-terminal pair, and the check of the
# packaged unit's serial drop-in.
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# tests/outputs/fleet_cluster.rs: a three-node NATS cluster (JetStream, MQTT).
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
# The dashboard's browser test drives a real headless Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# tests/durability/clock_ahead_restart.rs: the gateway restarted with its
# clock 40 days ahead, through libfaketime's LD_PRELOAD.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
# tests/protocols/knx.rs: knxd, the KNXnet/IP tunnelling server and router
# the KNX tests run on loopback (xknx, in the peers' venv, is the devices).
command -v knxd >/dev/null 2>&1 || missing+=(knxd)
# gateway.timezone: IANA zones come from the system's tzdata (Priority:
# required in Debian, but a container may lack it).
[ -e /usr/share/zoneinfo/Europe/Berlin ] || missing+=(tzdata)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing test peers: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# A plain `cargo build` compiles OpenSSL from source (the gateway builds on
# a machine without -dev packages, and the .deb carries its own); that is
# about 330 CPU-seconds each time, in every fresh target directory. The
# tests link Debian's libssl 3.0 instead (the gateway's DTLS code under
# test is the same), and the packages (packaging/ci-check.sh) still build
# and start with the vendored one they ship.
export OPENSSL_NO_VENDOR=1

# The Modbus, BACnet and KNX adapters' independent peers (pymodbus,
# bacpypes3, xknx), in a virtual environment under target/.
bash scripts/peers-venv.sh

# The sensor nodes (firmware/): their no_std codec for both embedded
# targets and their MicroPython library under CPython, end to end against
# the gateway. Run first, so cargo's summary of the workspace is what ends
# the output. Skipped when arguments pick particular cargo tests.
# Each part's CPU-seconds (scripts/cpu-seconds.sh), so CI's log shows where
# its minutes go.
# shellcheck source=scripts/cpu-seconds.sh
. scripts/cpu-seconds.sh
cpu_raw=$(mktemp)
features_pid=""
features_cpu=$(mktemp)
firmware_rc=0
binaries=$(mktemp)
if [ "$#" -eq 0 ]; then
  # One build serves both: the firmware's end-to-end checks run the gateway
  # binary the tests build (with the features the tests resolve), instead
  # of a second build with other features that recompiles most of the tree.
  # Its list of test executables is what the groups below run.
  cpu_mark "$cpu_raw"
  started=$(date +%s) cpu_before=$(cpu_marked "$cpu_raw")
  # The tests' targets only: `cargo test` would also build the examples
  # (the detector's experiments, 53 CPU-s, unoptimised here), which no
  # test runs and CI's clippy checks.
  cargo test --workspace --locked --no-run --lib --bins --tests \
    --message-format=json-render-diagnostics >"$binaries"
  cpu_mark "$cpu_raw"
  echo "== the tests' build: $(($(date +%s) - started)) s, $(($(cpu_marked "$cpu_raw") - cpu_before)) CPU-s"
  # Each protocol alone still builds (cargo check, no tests). In its own
  # target directory, so it runs beside the firmware checks and the tests
  # (which mostly wait on their peers) instead of holding cargo's lock for
  # minutes before them; niced, so the tests' timing comes first. CI points
  # EDGE_FEATURES_TARGET_DIR at the directory clippy checked, whose
  # dependencies it reuses.
  features_log=$(mktemp)
  (
    rc=0
    CARGO_TARGET_DIR="${EDGE_FEATURES_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/features}" \
      nice -n 10 bash scripts/check-features.sh || rc=$?
    cpu_mark "$features_cpu.raw"
    cpu_marked "$features_cpu.raw" >"$features_cpu"
    exit "$rc"
  ) >"$features_log" 2>&1 &
  features_pid=$!
  # A failure here is reported at the end: it must not hide the suite's.
  cpu_mark "$cpu_raw"
  started=$(date +%s) cpu_before=$(cpu_marked "$cpu_raw")
  EDGE_GATEWAY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/edge-gateway" bash scripts/test-firmware.sh \
    || firmware_rc=$?
  cpu_mark "$cpu_raw"
  echo "== the sensor nodes' checks: $(($(date +%s) - started)) s, $(($(cpu_marked "$cpu_raw") - cpu_before)) CPU-s"
fi

# Debian's mosquitto, influxdb and nats-server packages start system
# services on 1883, 8086 and 4222; tests never use them (each starts its
# own on free ports), so they are left alone.
rc=$firmware_rc
if [ "$#" -gt 0 ]; then
  cargo test --workspace --locked "$@" || rc=$?
else
  # The gateway's end-to-end themes spend most of their minutes waiting on
  # their peers and on windows to close, two tests at a time (one per
  # core): one after the other, the suite took 7 of CI's minutes. The test
  # executables run in three groups at once instead
  # (scripts/test-binaries.py says which), each group's output printed
  # whole when it ends; a failing executable does not stop the others.
  groups=$(mktemp -d)
  run_group() { # group: its executables one after the other, as cargo would
    local rc=0 group dir exe label
    while IFS=$'\t' read -r group dir exe label; do
      [ "$group" = "$1" ] || continue
      echo "     Running $label ($exe)"
      (cd "$dir" && "$exe" </dev/null) || rc=1
    done < <(python3 scripts/test-binaries.py "$binaries")
    if [ "$1" = 3 ]; then
      cargo test --workspace --locked --doc || rc=1
    fi
    return "$rc"
  }
  declare -A group_pid=()
  cpu_mark "$cpu_raw"
  started=$(date +%s) cpu_before=$(cpu_marked "$cpu_raw")
  for g in 1 2 3; do
    run_group "$g" >"$groups/$g" 2>&1 &
    group_pid[$g]=$!
  done
  for g in 3 2 1; do
    wait "${group_pid[$g]}" || rc=1
    cat "$groups/$g"
  done
  # With the peers and gateways they start, and the doc tests.
  cpu_mark "$cpu_raw"
  echo "== the test executables: $(($(date +%s) - started)) s, $(($(cpu_marked "$cpu_raw") - cpu_before)) CPU-s"
  # One line for all of them, as cargo prints one per executable.
  cat "$groups"/* | awk '/^test result:/ {
      for (i = 1; i < NF; i++) {
        if ($(i + 1) ~ /^passed/) p += $i
        if ($(i + 1) ~ /^failed/) f += $i
        if ($(i + 1) ~ /^ignored/) ig += $i
      }
      n++
    }
    END { printf "== tests: %d passed, %d failed, %d ignored, in %d test executables\n", p, f, ig, n }'
  rm -rf "$groups"
fi
rm -f "$binaries"
if [ -n "$features_pid" ]; then
  if wait "$features_pid"; then
    echo "== each protocol alone builds (scripts/check-features.sh): ok, $(cat "$features_cpu") CPU-s"
  else
    cat "$features_log"
    echo "== each protocol alone builds (scripts/check-features.sh): FAILED" >&2
    rc=1
  fi
  rm -f "$features_log"
fi
rm -f "$features_cpu" "$features_cpu.raw" "$cpu_raw"
if [ "$firmware_rc" -ne 0 ]; then
  echo "== the sensor nodes' checks (scripts/test-firmware.sh): FAILED, see their output above the suite's" >&2
fi
exit "$rc"
