#!/usr/bin/env bash
# A fleet of N gateways against one broker URL list, for load tests of the
# cloud side (docs/fleet.md). Each gateway gets its own directory (config,
# state: outbox, journal), a tcp_line input and /metrics on its own ports,
# and `edge-gateway simulate --protocol tcp` feeding it.
#
#   scripts/fleet.sh N URL [URL...]
#
# Environment:
#   EDGE_GATEWAY   the binary (default: target/release/edge-gateway, else
#                  target/debug/edge-gateway, else edge-gateway on PATH)
#   FLEET_DIR      where the gateways' directories go (default: a new
#                  directory under /tmp); kept afterwards
#   FLEET_ORG      first topic level (default: acme); topics are
#                  {org}/{site}/{gateway}/... with site-NNN and gw-NNN
#   FLEET_RATE     lines per second per gateway (default: 50)
#   FLEET_DEVICES  devices per gateway (default: 10)
#   FLEET_WINDOW   aggregation window (default: 10s)
#   FLEET_PORT     first port: gateway i listens for lines on FLEET_PORT+i
#                  and serves /metrics on FLEET_PORT+1000+i (default: 20000)
#
# Ctrl-C (or SIGTERM; a script sent to the background by a non-interactive
# shell ignores SIGINT) stops the simulators and then the gateways, which
# flush what they hold to the broker before exiting.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  sed -n "2,22p" "$0" | sed 's/^# \{0,1\}//'
  exit 64
fi
n=$1
shift
case $n in
  '' | *[!0-9]*)
    echo "fleet.sh: N must be a number, got '$n'" >&2
    exit 64
    ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${EDGE_GATEWAY:-}
if [ -z "$bin" ]; then
  for b in "$root/target/release/edge-gateway" "$root/target/debug/edge-gateway"; do
    [ -x "$b" ] && { bin=$b; break; }
  done
fi
bin=${bin:-edge-gateway}
dir=${FLEET_DIR:-$(mktemp -d /tmp/edge-fleet.XXXXXX)}
org=${FLEET_ORG:-acme}
rate=${FLEET_RATE:-50}
devices=${FLEET_DEVICES:-10}
window=${FLEET_WINDOW:-10s}
base=${FLEET_PORT:-20000}

urls=""
for u in "$@"; do
  urls+="${urls:+, }\"$u\""
done

pids=()
sims=()
stop() {
  trap - INT TERM
  [ "${#sims[@]}" -eq 0 ] || kill "${sims[@]}" 2>/dev/null || true
  wait "${sims[@]}" 2>/dev/null || true
  [ "${#pids[@]}" -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "fleet stopped; directories kept in $dir"
}
trap stop INT TERM

for i in $(seq 0 $((n - 1))); do
  id=$(printf 'gw-%03d' "$i")
  site=$(printf 'site-%03d' "$i")
  mkdir -p "$dir/$id"
  cat >"$dir/$id/gateway.toml" <<EOF
[gateway]
id = "$id"
site = "$site"
state_dir = "$dir/$id/state"

[upstream]
urls = [$urls]
qos = 1
topic_prefix = "$org/{site}/{gateway}"

[aggregation]
window = "$window"
grace = "2s"

[metrics]
bind = "127.0.0.1:$((base + 1000 + i))"

[[adapter]]
type = "tcp_line"
name = "meter"
bind = "127.0.0.1:$((base + i))"
format = "csv"
columns = ["device", "power"]
EOF
  "$bin" validate -c "$dir/$id/gateway.toml" >/dev/null
  "$bin" run -c "$dir/$id/gateway.toml" >"$dir/$id/gateway.log" 2>&1 &
  pids+=($!)
done

# Each gateway answers on its line port once it is running.
for i in $(seq 0 $((n - 1))); do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((base + i))") 2>/dev/null && break
    sleep 0.1
  done
done

for i in $(seq 0 $((n - 1))); do
  "$bin" simulate --protocol tcp --device-column --metrics power \
    --devices "$devices" --rate "$rate" --seed "$i" \
    --target "127.0.0.1:$((base + i))" >"$dir/$(printf 'gw-%03d' "$i")/simulate.log" 2>&1 &
  sims+=($!)
done

echo "$n gateways running against [$urls]; logs and state in $dir"
echo "health: curl -s 127.0.0.1:$((base + 1000))/health   (gateway i: port $((base + 1000))+i)"
wait "${pids[@]}"
