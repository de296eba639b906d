#!/usr/bin/env bash
# Instructions the gateway executes per unit of work on its hot paths,
# under callgrind: a figure the machine's load does not move, for before
# and after a change (docs/PERFORMANCE.md, issue 69). One gateway under
# valgrind with a CoAP server, a Semtech UDP adapter (100 ABP devices from
# `simulate --print-lorawan-config`) and an MQTT adapter, 1 s windows, the
# upstream to a local Mosquitto, as the benches configure them. Per path:
# counters zeroed, a burst sent, the readings counted from /metrics once
# they settle, the counters dumped.
#
#   bash scripts/callgrind-units.sh GATEWAY SENDER OUTDIR [coap] [lora] [mqtt]
#
# GATEWAY: the binary measured (build it unstripped, e.g. the bench
# profile); SENDER: the binary whose `simulate` sends (keep it the same
# for both sides of a comparison). Prints instructions per CoAP datagram,
# per LoRaWAN reading (6 an uplink) and per MQTT QoS 0 reading, then the
# largest self costs of each. Needs valgrind, mosquitto, mosquitto_pub,
# curl and python3.
set -uo pipefail
GW=$1 SIM=$2 OUT=$3
shift 3
PATHS=${*:-coap lora mqtt}
mkdir -p "$OUT"
rm -f "$OUT"/cg.* "$OUT"/result.txt
free_port() { python3 -c "import socket;s=socket.socket(socket.AF_INET,socket.$1);s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
BROKER=$(free_port SOCK_STREAM) METRICS=$(free_port SOCK_STREAM)
COAP=$(free_port SOCK_DGRAM) LORA=$(free_port SOCK_DGRAM)
D=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\nmax_inflight_messages 1000\n' "$BROKER" >"$D/m.conf"
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
type = "coap"
name = "coap"
bind = "127.0.0.1:$COAP"
rate_limit = 0
[[adapter]]
type = "mqtt"
name = "bench"
url = "mqtt://127.0.0.1:$BROKER"
qos = 0
persistent_session = false
topics = ["sensors/data/{device}/{metric}", "sensors/{device}"]
max_payload_bytes = 4096
[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:$LORA"
$TABLES
TOML
readings() {
  curl -s "http://127.0.0.1:$METRICS/metrics" |
    awk '/^edge_gateway_aggregator_readings_total/ {s += $2} END {printf "%d\n", s}'
}
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p.out" \
  "$GW" run -c "$D/gw.toml" >"$D/gw.log" 2>&1 &
GPID=$!
until curl -sf "http://127.0.0.1:$METRICS/metrics" >/dev/null; do sleep 1; done
sleep 3
# QoS 0 4-byte numbers, one a line, as the ingest bench sends them.
seq 1 30000 | awk '{printf "%d.%d\n", 20 + $1 % 7, $1 % 10}' >"$D/burst.txt"
settle() {
  local prev=-1 cur
  while :; do
    sleep 3
    cur=$(readings)
    [ "$cur" = "$prev" ] && break
    prev=$cur
  done
  echo "$cur"
}
# Self cost per unit of the largest functions of one dump.
top() {
  python3 - "$1" "$2" <<'PY'
import collections, re, sys
path, units = sys.argv[1], float(sys.argv[2])
names, cost, fn, skip = {}, collections.Counter(), None, False
def name(spec):
    m = re.match(r'\((\d+)\)(?: (.*))?', spec)
    if not m:
        return spec
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), spec)
for line in open(path):
    line = line.rstrip('\n')
    if line.startswith('fn='):
        fn = name(line[3:])
    elif line.startswith('cfn='):
        name(line[4:])
    elif line.startswith('calls='):
        skip = True
    elif line[:1].isdigit() or line[:1] in '+-*':
        if skip:
            skip = False
        elif fn and len(line.split()) >= 2:
            cost[fn] += int(line.split()[1])
for f, c in cost.most_common(8):
    print(f"    {c / units:7.0f}  {f[:110]}")
PY
}
for p in $PATHS; do
  r0=$(readings)
  callgrind_control -z "$GPID" >/dev/null
  case $p in
    # Rates the gateway under valgrind takes most of, as 24 000 each.
    coap) "$SIM" simulate --protocol coap --rate 3000 --target "127.0.0.1:$COAP" --count 24000 --metrics value --devices 100 >/dev/null ;;
    lora) "$SIM" simulate --protocol lorawan --rate 2000 --target "127.0.0.1:$LORA" --count 24000 --metrics value --devices 100 >/dev/null ;;
    mqtt) mosquitto_pub -p "$BROKER" -t sensors/data/dev1/temperature -q 0 -l <"$D/burst.txt" ;;
  esac
  r1=$(settle)
  callgrind_control -d "$p" "$GPID" >/dev/null
  sleep 1
  f=$(ls -t "$OUT"/cg.*.out.* | head -1)
  ir=$(sed -n 's/^summary: //p' "$f")
  n=$((r1 - r0))
  echo "$p: $n readings, $ir instructions, $((ir / (n > 0 ? n : 1))) per reading ($f)" | tee -a "$OUT/result.txt"
  top "$f" "$n"
done
kill -TERM "$GPID"
wait "$GPID" 2>/dev/null
kill "$MPID"
rm -rf "$D"
