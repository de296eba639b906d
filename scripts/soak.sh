#!/usr/bin/env bash
# The durability soak: the outage + kill -9 scenario of
# crates/edge-gateway/tests/durability/outage_restarts.rs, many times, with random kill
# points (timed kills, kills while a checkpoint is held before its fsync,
# while the outbox drains after the outage, and while closed windows wait
# before their outbox append), plus, at random, a state directory that fills
# up across two kills (a tmpfs mounted for the run: run as root, or that
# fault is left out and the run says so) and a wall clock stepping back ten
# minutes or an hour. Prints one line per run and the totals: readings lost
# and readings counted twice after de-duplication by id, upstream and in the
# dashboard's history. Then the wrong-clock cases of issue 51: readings
# with their own time over tcp_line (ack) and MQTT while the clock is a day
# ahead, 10 minutes back, 10 minutes ahead until NTP, or unset, each
# checked exact upstream (tests/durability/own_time_soak.rs); the same
# lines over tcp_line on a state directory full from the start, the clock
# back 10 minutes and three kill -9 (tests/durability/own_time_full_disk.rs,
# needs root for its tmpfs); and restarts
# with the clock 31 days to a year ahead (libfaketime) and back, each
# checked for every window in the dashboard's history
# (tests/durability/clock_ahead_restart.rs).
#
#   bash scripts/soak.sh            # 50 runs (about 20 minutes)
#   bash scripts/soak.sh 200        # more
#   EDGE_SOAK_SEED=1234 bash scripts/soak.sh 5   # replay a run's seed
#   EDGE_GATEWAY_BIN=/usr/bin/edge-gateway bash scripts/soak.sh   # another build
#
# Needs mosquitto, mosquitto-clients and faketime (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-50}"
if ! command -v mosquitto >/dev/null 2>&1 || ! command -v mosquitto_pub >/dev/null 2>&1 \
  || ! command -v faketime >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto mosquitto-clients faketime
fi
EDGE_SOAK_RUNS="$runs" exec cargo test --release --locked -p edge-gateway \
  --test durability soak -- --ignored --nocapture
