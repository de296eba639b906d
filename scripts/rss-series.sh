#!/bin/bash
# RSS and anonymous memory of a gateway idle, at the last reading of a
# 10 000 devices x 5 metrics QoS 1 burst, and once the heap check released
# after it, as `ingest` measures them, then glibc malloc_info of the main
# arena (free chunks: count / KiB) through gdb -p (docs/PERFORMANCE.md, issue 69).
#   bash scripts/rss-series.sh GATEWAY [SENDER]
# DEVICES (default 10000) devices send one message of 5 metrics each per
# round until 10 000 messages are sent: DEVICES=10000 leaves 50 000 series
# open, DEVICES=1 sends 10 000 readings into each of 5 series. WINDOW
# (default 1h) is the aggregation window; a short one (5s) also reports the
# RSS once every window has closed and its series were let go. LATER=N
# samples it once more N seconds after the burst settled.
# Needs mosquitto, curl, python3 and gdb.
BIN=$1; SIM=${2:-$1}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port); M=$(free_port); D=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' $P > $D/m.conf
mosquitto -c $D/m.conf >/dev/null 2>&1 & MP=$!
cat > $D/gw.toml <<T
[gateway]
id = "gw-bench"
state_dir = "$D/state"
[upstream]
url = "mqtt://127.0.0.1:$P"
[aggregation]
window = "${WINDOW:-1h}"
grace = "1s"
[metrics]
bind = "127.0.0.1:$M"
[[adapter]]
type = "mqtt"
name = "bench"
url = "mqtt://127.0.0.1:$P"
qos = 1
persistent_session = false
topics = ["sensors/data/{device}/{metric}", "sensors/{device}"]
max_payload_bytes = 4096
T
$BIN run --config $D/gw.toml > $D/log 2>&1 & GP=$!
for i in $(seq 1 150); do grep -q "start-up used" $D/log && break; sleep 0.2; done
sleep 1
metric() { curl -s 127.0.0.1:$M/metrics | awk -v n="$1" '$1==n{print $2}'; }
echo "idle: $(grep -E '^(Rss|Anonymous)' /proc/$GP/smaps_rollup | tr -s ' ' | tr '\n' ' ')"
$SIM simulate --broker mqtt://127.0.0.1:$P --devices ${DEVICES:-10000} --count 10000 --rate 0 --qos 1 --metrics temperature,humidity,pressure,co2,battery >/dev/null 2>&1
for i in $(seq 1 300); do r=$(metric edge_gateway_aggregator_readings_total); [ "${r%.*}" = 50000 ] && break; sleep 0.1; done
rel=$(metric edge_gateway_heap_releases_total)
if [ "${WINDOW:-1h}" != 1h ]; then
  echo "last reading: $(grep -E '^(Rss|Anonymous)' /proc/$GP/smaps_rollup | tr -s ' ' | tr '\n' ' ')"
  for i in $(seq 1 600); do w=$(metric edge_gateway_aggregator_windows_emitted_total); [ "${w%.*}" = "${DEVICES:-10000}" ] && break; sleep 0.1; done
  rel=$(metric edge_gateway_heap_releases_total)
  at="every window closed (windows=$w)"
fi
echo "${at:-last reading}: readings=$r releases=$rel $(grep -E '^(Rss|Anonymous)' /proc/$GP/smaps_rollup | tr -s ' ' | tr '\n' ' ')"
for i in $(seq 1 100); do r2=$(metric edge_gateway_heap_releases_total); [ "$r2" != "$rel" ] && break; sleep 0.05; done
echo "settled: releases=$r2 $(grep -E '^(Rss|Anonymous)' /proc/$GP/smaps_rollup | tr -s ' ' | tr '\n' ' ')"
# LATER=N: the RSS again N seconds after that, idle (the code a released
# burst left faulted back in by what runs idle).
if [ -n "${LATER:-}" ]; then
  sleep "$LATER"; curl -s 127.0.0.1:$M/metrics >/dev/null
  echo "${LATER} s later: $(grep -E '^(Rss|Anonymous)' /proc/$GP/smaps_rollup | tr -s ' ' | tr '\n' ' ')"
fi
gdb -p $GP -batch -ex 'call (int) malloc_info(0, (void*) stderr)' >/dev/null 2>&1
python3 - $D/log <<'PY'
import re,sys
t=open(sys.argv[1]).read()
i=t.rfind('<malloc version')
x=t[i:]
m=re.search(r'<heap nr="0">(.*?)</heap>',x,re.S)
h=m.group(1) if m else x
tot=re.findall(r'<total type="(\w+)" count="(\d+)" size="(\d+)"',h)
sys_=re.findall(r'<system type="current" size="(\d+)"',h)
print("malloc_info heap0:", " ".join(f"{a}:{b}x/{int(c)//1024}KiB" for a,b,c in tot), "system:", [int(s)//1024 for s in sys_], "KiB")
PY
kill $GP; wait $GP 2>/dev/null; kill $MP; wait 2>/dev/null; rm -rf $D
