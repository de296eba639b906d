#!/usr/bin/env bash
# The gateway's CPU for one QoS 0 burst against Mosquitto's, outside any
# bench harness: a gateway with the MQTT adapter alone, `mosquitto_pub -l`
# of N numbers on one topic, both processes' user and system ticks from
# /proc over the burst (docs/PERFORMANCE.md, issue 69). With SYSCALLS=1,
# `perf stat` counts the gateway's receive calls and wake-ups as well: how
# many messages one read brought is what swung the ratio between runs.
#
#   bash scripts/mqtt-cpu.sh GATEWAY [N]      # N defaults to 300 000
#
# Needs mosquitto, mosquitto_pub, curl and python3 (and perf for SYSCALLS).
set -uo pipefail
GW=$1 N=${2:-300000}
free_port() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
B=$(free_port) M=$(free_port)
D=$(mktemp -d)
trap 'kill $GP $MP 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$B" >"$D/m.conf"
mosquitto -c "$D/m.conf" >/dev/null 2>&1 &
MP=$!
cat >"$D/gw.toml" <<TOML
[gateway]
id = "gw-cpu"
state_dir = "$D/state"
[upstream]
url = "mqtt://127.0.0.1:$B"
[aggregation]
window = "1s"
grace = "1s"
[metrics]
bind = "127.0.0.1:$M"
[[adapter]]
type = "mqtt"
name = "bench"
url = "mqtt://127.0.0.1:$B"
qos = 0
persistent_session = false
topics = ["sensors/data/{device}/{metric}"]
TOML
python3 -c "
import random
with open('$D/burst.txt', 'w') as f:
    for i in range($N): f.write('%.1f\n' % random.uniform(15, 30))"
"$GW" run -c "$D/gw.toml" >"$D/gw.log" 2>&1 &
GP=$!
until grep -q "Subscribed" "$D/gw.log"; do sleep 0.1; done
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
read -r u0 s0 < <(ticks $GP)
read -r mu0 ms0 < <(ticks $MP)
if [ "${SYSCALLS:-0}" = 1 ]; then
  perf stat -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,context-switches \
    -p $GP -o "$D/perf.txt" &
  PS=$!
fi
mosquitto_pub -p "$B" -t sensors/data/dev1/temperature -q 0 -l <"$D/burst.txt"
readings() { curl -s "127.0.0.1:$M/metrics" | awk '/^edge_gateway_aggregator_readings_total/ {print int($2); exit}'; }
until [ "$(readings)" -ge "$N" ] 2>/dev/null; do sleep 0.05; done
read -r u1 s1 < <(ticks $GP)
read -r mu1 ms1 < <(ticks $MP)
if [ "${SYSCALLS:-0}" = 1 ]; then
  kill -INT $PS
  wait $PS
  grep -E "sys_enter|context" "$D/perf.txt"
fi
gw=$((u1 - u0 + s1 - s0)) broker=$((mu1 - mu0 + ms1 - ms0))
echo "gateway user $((u1 - u0)) sys $((s1 - s0)) ticks, mosquitto user $((mu1 - mu0)) sys $((ms1 - ms0)) ticks;" \
  "gateway $(python3 -c "print(round($gw * 10000 / $N, 3))") µs a reading," \
  "$(python3 -c "print(round($gw / max(1, $broker), 3))")x Mosquitto's CPU"
