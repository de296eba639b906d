#!/usr/bin/env bash
# Size and RSS of a cross-built gateway under qemu-user, idle and with
# 1 000 devices x 5 metrics in open windows, against a test Mosquitto:
#   packaging/measure-arm.sh arm64|armhf [simulator]
# The fleet is played by `simulate` of a native build (default:
# target/debug/edge-gateway), so the emulated gateway has the CPU to itself.
# RSS is the gateway's own process_resident_memory_bytes, which under
# qemu-user is the qemu process: the guest's memory plus qemu's translated
# code (several MB). Compare arm64 and armhf with each other, measured the
# same way, not with a Pi.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  arm64) triple=aarch64-unknown-linux-gnu qemu=qemu-aarch64 root=/usr/aarch64-linux-gnu ;;
  armhf) triple=armv7-unknown-linux-gnueabihf qemu=qemu-arm root=/usr/arm-linux-gnueabihf ;;
  *) echo "usage: $0 arm64|armhf [simulator]" >&2; exit 2 ;;
esac
arch="$1"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target_dir/$triple/release/edge-gateway"
sim="${2:-$target_dir/debug/edge-gateway}"
[ -x "$bin" ] || { echo "no $bin: run packaging/build-deb.sh $arch first" >&2; exit 1; }
[ -x "$sim" ] || { echo "no simulator $sim: cargo build -p edge-gateway" >&2; exit 1; }

work=$(mktemp -d)
broker_pid="" gw_pid=""
cleanup() {
  [ -n "$gw_pid" ] && kill -KILL "$gw_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
http_code() { # port path
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  local first
  first=$(head -n 1 <&3)
  exec 3<&-
  echo "$first" | cut -d' ' -f2
}
http_body() { # port path
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  local resp
  resp=$(cat <&3)
  exec 3<&-
  printf '%s\n' "${resp#*$'\r\n\r\n'}"
}
metric() { # name -> value
  http_body "$mport" /metrics | awk -v n="$1" '$1 == n { print $2 }'
}

port=$(free_port)
mport=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker_pid=$!
cat >"$work/gateway.toml" <<EOF
[gateway]
id = "measure-$arch"
state_dir = "$work/state"

[upstream]
url = "mqtt://127.0.0.1:$port"

[aggregation]
# Long enough that every series is open when RSS is read.
window = "10m"

[metrics]
bind = "127.0.0.1:$mport"

[[adapter]]
type = "mqtt"
name = "fleet"
url = "mqtt://127.0.0.1:$port"
topics = ["sensors/{device}"]
EOF
# The host's root where that architecture's own libc is installed
# (packaging/qemu-root says why).
root=$(packaging/qemu-root "$bin" "$root")
"$qemu" -L "$root" "$bin" run -c "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_pid=$!
for _ in $(seq 1 600); do
  [ "$(http_code "$mport" /health 2>/dev/null)" = 200 ] && break
  kill -0 "$gw_pid" || { cat "$work/gateway.log"; exit 1; }
  sleep 0.1
done
# Settled: two readings 2 s apart, the second kept.
sleep 2
idle=$(metric process_resident_memory_bytes)

"$sim" simulate --protocol mqtt --broker "mqtt://127.0.0.1:$port" --devices 1000 \
  --metrics temperature,humidity,co2,pressure,battery --rate 2000 --count 5000 >"$work/sim.log" 2>&1
want=25000
for _ in $(seq 1 1200); do
  got=$(metric 'edge_gateway_adapter_readings_total{adapter="fleet"}')
  [ "${got:-0}" -ge "$want" ] && break
  sleep 0.1
done
sleep 2
loaded=$(metric process_resident_memory_bytes)
size=$(stat -c %s "$bin")
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
echo "measure-arm: $arch binary $(mb "$size") ($size bytes); RSS under $qemu idle $(mb "$idle"), with 1000 devices x 5 metrics ($got readings) $(mb "$loaded")"
kill -TERM "$gw_pid"
wait "$gw_pid" || true
gw_pid=""
