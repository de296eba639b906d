#!/usr/bin/env bash
# The gateway's CPU per BACnet COV notification (issue 69: at most 20 µs),
# beside the sender's own CPU per notification in the same run.
#
#   bash scripts/bench-bacnet-cov.sh [GATEWAY_BINARY] [COUNT]
#
# A bacpypes3 device (crates/edge-gateway/tests/data/bacnet_peer.py, the
# tests' independent peer) that the gateway subscribes to floods COUNT
# (default 20 000) UnconfirmedCOVNotifications of one object as fast as
# bacpypes3 builds them; the gateway's user + system CPU over the flood
# (/proc/PID/stat), divided by the notifications it counted
# (edge_gateway_bacnet_cov_notifications_total), is the figure. Prints a
# `goal:` line as the benches do. GATEWAY_BINARY defaults to the bench
# build of scripts/bench-ratios.sh. Needs mosquitto and the peers' venv
# (bash scripts/peers-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(readlink -f "${1:-target/ratios/release/edge-gateway}")
count=${2:-20000}
python=target/peers-venv/bin/python
for need in "$bin" "$python"; do
  [ -x "$need" ] || { echo "bench-bacnet-cov: $need is missing" >&2; exit 1; }
done
work=$(mktemp -d)
broker="" gw="" peer=""
cleanup() {
  for p in $gw $peer $broker; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp() { python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt=$(free_port) metrics=$(free_port) device=$(free_udp)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mqtt" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker=$!

mkfifo "$work/peer.in"
layout='{"devices": [{"instance": 2101, "port": '"$device"', "objects": [{"type": "analogInput", "instance": 1, "name": "Duct Pressure", "value": 10.0, "units": "pascals", "cov_increment": 0.1}]}]}'
"$python" crates/edge-gateway/tests/data/bacnet_peer.py "$layout" <"$work/peer.in" >"$work/peer.out" 2>&1 &
peer=$!
exec 3>"$work/peer.in"
for _ in $(seq 300); do grep -q '^ready' "$work/peer.out" && break; sleep 0.1; done

cat >"$work/gateway.toml" <<TOML
[gateway]
id = "gw-cov"
state_dir = "$work/state"
[upstream]
url = "mqtt://127.0.0.1:$mqtt"
[aggregation]
window = "1s"
grace = "0s"
[metrics]
bind = "127.0.0.1:$metrics"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "1h"
timeout = "400ms"
retries = 0
cov_lifetime = "1h"
[[bacnet.device]]
instance = 2101
address = "127.0.0.1:$device"
id = "duct"
cov = true
TOML
"$bin" run -c "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw=$!
sample() { curl -s "127.0.0.1:$metrics/metrics" | awk -v n="$1" 'index($0, n" ") == 1 { print int($2) }'; }
subscribed='edge_gateway_bacnet_cov_subscriptions{adapter="bms",device="duct"}'
notified='edge_gateway_bacnet_cov_notifications_total{adapter="bms"}'
for _ in $(seq 300); do [ "$(sample "$subscribed")" = 1 ] && break; sleep 0.1; done
[ "$(sample "$subscribed")" = 1 ] || { echo "bench-bacnet-cov: no COV subscription" >&2; cat "$work/gateway.log" >&2; exit 1; }

tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); printf "%.2f", (f[12] + f[13]) / t }' "/proc/$1/stat"; }
before=$(sample "$notified")
gw0=$(cpu "$gw") peer0=$(cpu "$peer")
oks=$(grep -c '^ok' "$work/peer.out" || true)
echo "flood 2101 analogInput:1 100 $count" >&3
# The flood is sent once the peer says ok; taken in once the counter stops.
for _ in $(seq 1200); do [ "$(grep -c '^ok' "$work/peer.out" || true)" -gt "$oks" ] && break; sleep 0.1; done
last=-1
while now=$(sample "$notified"); [ "$now" != "$last" ]; do last=$now; sleep 0.5; done
gw1=$(cpu "$gw") peer1=$(cpu "$peer")
taken=$((now - before))
[ "$taken" -gt 0 ] || { echo "bench-bacnet-cov: no notification counted" >&2; exit 1; }
# The counter settles with one idle half-second charged to the flood: at
# most a few ms of timers, noise against seconds of flood.
per_gw=$(echo "1000000 * ($gw1 - $gw0) / $taken" | bc -l)
per_peer=$(echo "1000000 * ($peer1 - $peer0) / $count" | bc -l)
printf 'BACnet COV: %d of %d notifications taken; gateway %.1f µs, bacpypes3 sender %.1f µs of CPU per notification\n' \
  "$taken" "$count" "$per_gw" "$per_peer"
# What the gateway refused or could not queue, if anything.
curl -s "127.0.0.1:$metrics/metrics" | grep '^edge_gateway_adapter_errors_total{adapter="bms"' || true
verdict=$(echo "$per_gw <= 20" | bc -l)
printf 'goal: BACnet COV CPU per notification (sender %.1f µs) | %.2f µs | ≤ 20.00 µs | %s\n' \
  "$per_peer" "$per_gw" "$([ "$verdict" = 1 ] && echo met || echo "NOT MET")"
