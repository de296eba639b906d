#!/bin/bash
# Idle RSS of a gateway, as an outside harness sees it: started with one
# MQTT adapter and an upstream on a local Mosquitto, start-up's code
# released, one /metrics scrape, then smaps read. Prints RSS, anonymous
# memory and the resident pages of the executable itself (what
# packaging/hot-code.txt's layout decides).
#   bash scripts/rss-idle.sh GATEWAY [ROUNDS]
# KEEP=1 keeps each round's gateway log as /tmp/rss-idle-ROUND.log.
# Needs mosquitto, curl and python3.
set -u
BIN=$(readlink -f "$1"); ROUNDS=${2:-1}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for round in $(seq 1 "$ROUNDS"); do
  P=$(free_port); M=$(free_port); D=$(mktemp -d)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$P" >"$D/m.conf"
  mosquitto -c "$D/m.conf" >/dev/null 2>&1 & MP=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$P") 2>/dev/null && break; sleep 0.05; done
  kill -0 "$MP" 2>/dev/null || { echo "rss-idle: mosquitto did not start" >&2; exit 1; }
  cat >"$D/gw.toml" <<T
[gateway]
id = "gw-idle"
state_dir = "$D/state"
[upstream]
url = "mqtt://127.0.0.1:$P"
[metrics]
bind = "127.0.0.1:$M"
[[adapter]]
type = "mqtt"
name = "idle"
url = "mqtt://127.0.0.1:$P"
topics = ["sensors/{device}"]
T
  "$BIN" run --config "$D/gw.toml" >"$D/log" 2>&1 & GP=$!
  for _ in $(seq 1 150); do grep -q "start-up used" "$D/log" && grep -q "Subscribed" "$D/log" && break; sleep 0.2; done
  sleep 2
  curl -s "127.0.0.1:$M/metrics" >/dev/null
  sleep 1
  rss=$(awk '/^Rss:/ {print $2}' /proc/$GP/smaps_rollup)
  anon=$(awk '/^Anonymous:/ {print $2}' /proc/$GP/smaps_rollup)
  exe=$(awk -v bin="$BIN" '$6 == bin { inmap = 1; next } /^[0-9a-f]+-/ { inmap = 0 } inmap && /^Rss:/ { s += $2 } END { print s + 0 }' /proc/$GP/smaps)
  echo "round $round: rss ${rss} kB, anonymous ${anon} kB, executable ${exe} kB"
  kill $GP $MP 2>/dev/null; wait $GP $MP 2>/dev/null
  [ -n "${KEEP:-}" ] && cp "$D/log" "/tmp/rss-idle-$round.log"
  rm -rf "$D"
done
