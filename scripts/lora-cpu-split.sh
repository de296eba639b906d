#!/usr/bin/env bash
# Gateway CPU per LoRaWAN uplink, user and system, by thread (issue 69):
# the callgrind-units.sh configuration with only the Semtech adapter, run
# natively; one burst of N uplinks from 100 ABP devices at RATE a second
# (0: as fast as the sender can); /proc/PID/task/*/stat before and after.
# Threads that appear during the burst are the blocking pool (counter writes).
#
#   bash scripts/lora-cpu-split.sh GATEWAY SENDER [N] [RATE]
#
# Needs mosquitto, curl and python3.
set -uo pipefail
GW=$1 SIM=$2 N=${3:-100000} RATE=${4:-0}
free_port() { python3 -c "import socket;s=socket.socket(socket.AF_INET,socket.$1);s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
BROKER=$(free_port SOCK_STREAM) METRICS=$(free_port SOCK_STREAM) LORA=$(free_port SOCK_DGRAM)
D=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$BROKER" >"$D/m.conf"
mosquitto -c "$D/m.conf" >/dev/null 2>&1 &
MPID=$!
TABLES=$("$SIM" simulate --protocol lorawan --devices 100 --print-lorawan-config)
cat >"$D/gw.toml" <<TOML
[gateway]
id = "gw-bench"
state_dir = "$D/state"
[upstream]
url = "mqtt://127.0.0.1:$BROKER"
[aggregation]
window = "1s"
grace = "1s"
[metrics]
bind = "127.0.0.1:$METRICS"
[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:$LORA"
$TABLES
TOML
readings() { curl -s "http://127.0.0.1:$METRICS/metrics" | awk '/^edge_gateway_adapter_readings_total\{adapter="lora"\}/ {print $2}'; }
RUST_LOG=warn "$GW" run -c "$D/gw.toml" >"$D/gw.log" 2>&1 &
GPID=$!
until curl -sf "http://127.0.0.1:$METRICS/metrics" >/dev/null; do sleep 0.2; done
sleep 1
snap() { for t in /proc/$GPID/task/*; do echo "$(basename $t) $(sed 's/.*) //' $t/stat | cut -d' ' -f12,13) $(cat $t/comm | tr ' ' _)"; done; }
snap >"$D/before"
"$SIM" simulate --protocol lorawan --rate "$RATE" --target "127.0.0.1:$LORA" --count "$N" --metrics value --devices 100 >/dev/null
prev=-1
while :; do sleep 1; cur=$(readings); [ "$cur" = "$prev" ] && break; prev=$cur; done
snap >"$D/after"
files=$(ls "$D/state")
python3 - "$D/before" "$D/after" "$cur" <<'PY'
import os, sys
hz = os.sysconf('SC_CLK_TCK')
def load(p):
    d = {}
    for l in open(p):
        tid, u, s, comm = l.split()
        d[tid] = (int(u), int(s), comm)
    return d
b, a, r = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3] or 0)
up = r / 6
by = {}
for tid, (u, s, comm) in a.items():
    u0, s0, _ = b.get(tid, (0, 0, comm))
    x = by.setdefault(f"{comm}:{tid}", [0, 0, 1]); x[0] += u - u0; x[1] += s - s0
tu = sum(v[0] for v in by.values()); ts = sum(v[1] for v in by.values())
print(f"uplinks {up:.0f}: user {1e6*tu/hz/up:.2f} us, system {1e6*ts/hz/up:.2f} us, total {1e6*(tu+ts)/hz/up:.2f} us per uplink")
for c, (u, s, n) in sorted(by.items(), key=lambda x: -(x[1][0] + x[1][1])):
    if u + s: print(f"   {c:<20} x{n}: user {1e6*u/hz/up:.2f} sys {1e6*s/hz/up:.2f} us/uplink")
PY
grep -c . "$D/gw.log" | sed 's/^/gateway log lines: /'
kill -TERM "$GPID"; wait "$GPID" 2>/dev/null
kill "$MPID"; rm -rf "$D"
