#!/bin/bash
# One LoRaWAN burst into a gateway's `semtech_udp` adapter, run alone: the
# frames it refused and why, its CPU per uplink processed, and its RSS
# after the burst and 10 s later (docs/PERFORMANCE.md, issue 69).
#   bash scripts/lora-burst.sh GATEWAY [SENDER]
# COUNT (default 300000) PUSH_DATA from one `simulate --rate 0`, 100 devices.
# Needs mosquitto, curl and python3.
set -u
BIN=$(readlink -f "$1"); SIM=${2:-$BIN}; COUNT=${COUNT:-300000}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port); M=$(free_port); U=$(free_udp_port); D=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$P" >"$D/m.conf"
mosquitto -c "$D/m.conf" >/dev/null 2>&1 & MP=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$P") 2>/dev/null && break; sleep 0.05; done
cat >"$D/gw.toml" <<T
[gateway]
id = "gw-bench"
state_dir = "$D/state"
[upstream]
url = "mqtt://127.0.0.1:$P"
[aggregation]
window = "1s"
grace = "1s"
[metrics]
bind = "127.0.0.1:$M"
[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:$U"
$("$SIM" simulate --protocol lorawan --devices 100 --print-lorawan-config)
T
"$BIN" run --config "$D/gw.toml" >"$D/log" 2>&1 & GP=$!
for _ in $(seq 1 150); do grep -q "start-up used" "$D/log" && break; sleep 0.2; done
ticks() { awk '{print $14 + $15}' "/proc/$GP/stat"; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$GP/status"; }
t0=$(ticks)
"$SIM" simulate --protocol lorawan --rate 0 --target "127.0.0.1:$U" --count "$COUNT" --metrics value --devices 100 >/dev/null
# The last frames' window and the counters' write, then the numbers.
sleep 2
t1=$(ticks); after=$(rss)
metrics=$(curl -s "127.0.0.1:$M/metrics")
sleep 10
later=$(rss)
readings=$(echo "$metrics" | awk '/^edge_gateway_adapter_readings_total\{adapter="lora"\}/ {print $2}')
echo "$metrics" | grep -E '^edge_gateway_adapter_(received_messages|errors)_total\{adapter="lora"'
python3 - "$t0" "$t1" "$readings" "$after" "$later" <<'P'
import os, sys
t0, t1, readings, after, later = (float(x or 0) for x in sys.argv[1:])
uplinks = readings / 6
hz = os.sysconf("SC_CLK_TCK")
us = (t1 - t0) / hz * 1e6 / uplinks if uplinks else float("nan")
print(f"uplinks processed {uplinks:.0f}, CPU {us:.2f} µs an uplink; RSS after the burst {after:.0f} kB, 10 s later {later:.0f} kB")
P
kill "$GP" "$MP" 2>/dev/null; wait "$GP" "$MP" 2>/dev/null
rm -rf "$D"
