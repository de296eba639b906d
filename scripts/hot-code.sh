#!/usr/bin/env bash
# Regenerates packaging/hot-code.txt: the functions a started gateway runs,
# which packaging/link-hot-first lays out side by side. Traced with
# callgrind on the bench build, from the moment start-up's code is released:
# a minute idle (status, heap and checkpoint ticks, a /metrics scrape),
# then MQTT bursts at QoS 1
# (10 000 devices x 5 metrics, as the RSS bench) and QoS 0, acknowledged
# and plain CSV lines over TCP, one-minute windows closing and published,
# and /metrics and /health scraped.
#
# Needs valgrind, mosquitto and mosquitto-clients; about 5 minutes.
# Run it again when the ingest path changes much; a stale list costs memory
# (code left scattered), never correctness.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind callgrind_control mosquitto mosquitto_pub c++filt curl; do
  command -v "$tool" >/dev/null || { echo "hot-code: needs $tool" >&2; exit 1; }
done
cargo build --profile bench -p edge-gateway --no-default-features --features all-protocols --bin edge-gateway
# Resolved: callgrind names the object by its real path, and the list is
# made of the functions in that object.
bin=$(readlink -f "$PWD/target/release/edge-gateway")
work=$(mktemp -d)
broker_pid="" gw_pid=""
cleanup() {
  [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) metrics=$(free_port) tcp_plain=$(free_port) tcp_acked=$(free_port)
# Unbounded queues: the traced gateway runs ~50x slower than it does, and
# mosquitto would drop what waits for it beyond 1000 messages.
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n' "$port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker_pid=$!
csv='columns = ["device", "temperature", "pressure", "humidity", "gas"]'
cat >"$work/gateway.toml" <<TOML
[gateway]
id = "gw-trace"
state_dir = "$work/state"
[upstream]
url = "mqtt://127.0.0.1:$port"
[aggregation]
window = "1m"
grace = "1s"
[metrics]
bind = "127.0.0.1:$metrics"
[[adapter]]
type = "mqtt"
name = "qos1"
url = "mqtt://127.0.0.1:$port"
qos = 1
persistent_session = false
topics = ["sensors/{device}"]
[[adapter]]
type = "mqtt"
name = "qos0"
url = "mqtt://127.0.0.1:$port"
qos = 0
persistent_session = false
topics = ["sensors/data/{device}/{metric}"]
[[adapter]]
type = "tcp_line"
name = "plain"
bind = "127.0.0.1:$tcp_plain"
format = "csv"
$csv
[[adapter]]
type = "tcp_line"
name = "acked"
bind = "127.0.0.1:$tcp_acked"
format = "csv"
$csv
ack = true
TOML
valgrind --tool=callgrind --demangle=no --instr-atstart=no \
  --callgrind-out-file="$work/trace" "$bin" run -c "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw_pid=$!
readings() { curl -s "127.0.0.1:$metrics/metrics" | awk '/^edge_gateway_aggregator_readings_total/ { print int($2) }'; }
# Until the readings counter has not moved for 5 s: under callgrind what
# arrives comes slowly, and how much of a QoS 0 burst does is the broker's.
wait_readings() {
  local last=-1 now
  while now=$(readings); [ "$now" != "$last" ]; do last=$now; sleep 5; done
}
for _ in $(seq 600); do grep -q "start-up used" "$work/gateway.log" && break; sleep 0.5; done
grep -q "start-up used" "$work/gateway.log" || { cat "$work/gateway.log"; exit 1; }
callgrind_control -i on "$gw_pid" >/dev/null
sleep 65
curl -s "127.0.0.1:$metrics/metrics" >/dev/null
curl -s "127.0.0.1:$metrics/health" >/dev/null
# The idle minute in a file of its own (trace.1): its functions go first.
callgrind_control -d "$gw_pid" >/dev/null
for _ in $(seq 100); do [ -s "$work/trace.1" ] && break; sleep 0.2; done
"$bin" simulate --broker "mqtt://127.0.0.1:$port" --devices 10000 --count 10000 --rate 0 --qos 1 \
  --metrics temperature,humidity,pressure,co2,battery >/dev/null
wait_readings
seq 1 20000 | mosquitto_pub -p "$port" -t sensors/data/fridge-1/temperature -q 0 -l
wait_readings
for target in "$tcp_plain" "$tcp_acked"; do
  "$bin" simulate --protocol tcp --rate 0 --target "127.0.0.1:$target" --count 20000 \
    --metrics temperature,pressure,humidity,gas --devices 4 --device-column >/dev/null
done
wait_readings
# Windows of a minute, so that their closing (rendering, the upstream, the
# outbox's index) is in the trace: with the default five minutes it runs
# all day. A trace of hour windows held it only when it crossed the hour.
windows() { curl -s "127.0.0.1:$metrics/metrics" | awk '/^edge_gateway_aggregator_windows_emitted_total/ { print int($2) }'; }
for _ in $(seq 40); do [ "$(windows)" -gt 0 ] 2>/dev/null && break; sleep 5; done
[ "$(windows)" -gt 0 ] 2>/dev/null || { echo "hot-code: no window closed in the trace" >&2; exit 1; }
curl -s "127.0.0.1:$metrics/metrics" >/dev/null
curl -s "127.0.0.1:$metrics/health" >/dev/null
callgrind_control -d "$gw_pid" >/dev/null
for _ in $(seq 100); do [ -s "$work/trace.2" ] && break; sleep 0.2; done
sleep 1

# The functions of the gateway's own executable with any cost in a trace,
# by their canonical names (link-hot-first --canonical: demangled, without
# the crate disambiguators and callgrind's recursion marks, '2). Every
# crate is v0-mangled (.cargo/config.toml), so a name still says which
# monomorphisation of a generic it is, and is the same in every profile and
# target the list is linked with.
functions() {
  awk -v exe="$bin" '
    FNR == 1 { delete obs; delete fns; ob = ""; fn = "" }
    /^ob=\(/ { id = $1; sub(/^ob=/, "", id); if (NF > 1) { obs[id] = $2 }; ob = obs[id]; next }
    /^cob=\(/ { id = $1; sub(/^cob=/, "", id); if (NF > 1) { obs[id] = $2 }; next }
    /^fn=\(/ { id = $1; sub(/^fn=/, "", id); if (NF > 1) { fns[id] = $2 }; fn = fns[id]; next }
    /^cfn=\(/ { id = $1; sub(/^cfn=/, "", id); if (NF > 1) { fns[id] = $2 }; next }
    /^[0-9+*-]/ { if (ob == exe && fn != "") hot[fn] = 1 }
    END { for (f in hot) print f }
  ' "$@" | c++filt | packaging/link-hot-first --canonical | LC_ALL=C sort -u
}
# What runs as start-up's code is released, before tracing can start: the
# release itself and the log line that follows it.
released() {
  printf '%s\n' edge_gateway::memory::release_startup_code \
    "<memory_release::code::StartupCode>::release" memory_release::code::imp::drop_pages
}
{ functions "$work/trace.1"; released; } | LC_ALL=C sort -u >"$work/idle"
functions "$work/trace.2" | LC_ALL=C comm -23 - "$work/idle" >"$work/busy"
# The list's order is the layout. An idle gateway faults back its code 64 KB
# around each page it runs (more where the page cache holds larger folios),
# so the code it runs while idle comes first and together, and what only
# traffic runs after it.
{
  echo "# Functions a started gateway runs, for packaging/link-hot-first, in"
  echo "# the order it lays them out: first what an idle gateway runs, then"
  echo "# what traffic adds. Generated by scripts/hot-code.sh; edit that, not this."
  cat "$work/idle"
  echo "# What traffic adds:"
  cat "$work/busy"
} >packaging/hot-code.txt
echo "hot-code: $(grep -vc '^#' packaging/hot-code.txt) functions in packaging/hot-code.txt, $(wc -l <"$work/idle") run idle"
