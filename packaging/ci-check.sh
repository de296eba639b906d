#!/usr/bin/env bash
# CI, after the tests: build the amd64 .deb, install it with dpkg, check
# what it installed, run the installed binary with the installed config
# against a test Mosquitto, scrape /metrics and /health, then purge it and
# check that purge removed everything. Then the arm64 and armhf (32-bit
# Raspberry Pi OS) builds: their packages' contents, and their binaries
# under qemu (--version, validate, a run answering /health).
# Needs root (dpkg -i); as any other user it says so and skips.
# SKIP_ARM64=1 leaves out both ARM cross-builds (about 4 min each from scratch).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "ci-check: SKIPPED the package test: dpkg -i needs root (CI runs as root)."
  exit 0
fi

fail() { echo "ci-check: FAILED: $*" >&2; exit 1; }
ok() { echo "ci-check: ok: $*"; }

need=()
command -v adduser >/dev/null 2>&1 || need+=(adduser)
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
/usr/bin/python3 -c 'import seccomp' >/dev/null 2>&1 || need+=(python3-seccomp)
if [ "${SKIP_ARM64:-0}" != 1 ]; then
  command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
  command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || need+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
  { command -v qemu-aarch64 && command -v qemu-arm; } >/dev/null 2>&1 || need+=(qemu-user)
fi
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
if [ "${SKIP_ARM64:-0}" != 1 ]; then
  installed=$(rustup target list --installed)
  for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
fi
# The arm64 and armhf packages' checks link Debian's libssl of their
# architecture (multiarch) instead of compiling OpenSSL's C for each, 250
# to 330 CPU-s apiece of a run that is short of cores (it ran 43 minutes
# of its 35 on a slower machine, 2026-12-02). What the packages ship, the
# vendored OpenSSL, is what packaging/build-deb.sh builds without
# BUILD_DEB_SYSTEM_OPENSSL; CI no longer compiles it. Best effort: without
# the library, that architecture builds its own as before, and a failed
# install takes the architecture back out, so that no later `apt-get
# update` fetches its lists.
if [ "${SKIP_ARM64:-0}" != 1 ]; then
  for arch in arm64 armhf; do
    dpkg -s "libssl-dev:$arch" >/dev/null 2>&1 && continue
    added=false
    dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch" && added=true; }
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "libssl-dev:$arch"; }; then
      echo "ci-check: no libssl-dev:$arch from Debian; the $arch package compiles its own OpenSSL"
      if $added; then
        dpkg --remove-architecture "$arch" || true
        apt-get update -qq || true
      fi
    fi
  done
fi
# `--deps`: only what the packages need installed (apt, rustup), so CI can
# do it before this script runs beside the tests, whose own apt-get and
# rustup calls would otherwise race these for their locks.
[ "${1:-}" = "--deps" ] && exit 0

command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
# In CI each target's build goes once its package is checked: the three
# builds hold about 2 GB, and a run ran out of disk with them all kept.
drop_build() { # Rust triple
  [ "${CI:-}" = true ] || return 0
  rm -rf "${target_dir:?}/$1"
  echo "ci-check: dropped the $1 build (CI), its package kept"
}
# CI checks what the packages install and that their binaries run, not the
# code generation: opt-level 0 without LTO over 16 units instead of the
# release profile's "s" with fat LTO over one unit. Measured for the amd64
# package (the vendored OpenSSL included, `/usr/bin/time` user+sys): 864
# CPU-s at opt-level 1, 716 at opt-level 0. What changes behaviour
# (panic = "abort", no debug assertions, no overflow checks) stays as
# released; `packaging/build-deb.sh` alone builds with the full profile.
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${CARGO_PROFILE_RELEASE_OPT_LEVEL:-0}"
export CARGO_PROFILE_RELEASE_LTO="${CARGO_PROFILE_RELEASE_LTO:-off}"
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS="${CARGO_PROFILE_RELEASE_CODEGEN_UNITS:-16}"
# Never published: the faster compression (a 39 MB binary: 4 s against 30).
export BUILD_DEB_FAST="${BUILD_DEB_FAST:-1}"
# The workspace's hot crates ask for opt-level 3 by name (Cargo.toml), which
# no environment variable overrides.
if [ -z "${BUILD_DEB_CARGO_ARGS+set}" ]; then
  BUILD_DEB_CARGO_ARGS=""
  for hot in adapters aggregator pipeline gateway-core; do
    BUILD_DEB_CARGO_ARGS+=" --config profile.release.package.$hot.opt-level=$CARGO_PROFILE_RELEASE_OPT_LEVEL"
  done
  export BUILD_DEB_CARGO_ARGS
fi
# Each part's CPU-seconds (scripts/cpu-seconds.sh), so CI's log shows where
# its minutes go.
# shellcheck source=scripts/cpu-seconds.sh
. scripts/cpu-seconds.sh
cpu_raw=$(mktemp)
cpu_mark "$cpu_raw"
start=$(date +%s) cpu_start=$(cpu_marked "$cpu_raw")
# Linked to Debian's libssl (packaging/build-deb.sh says why): this package
# proves what is installed, its scripts, user, unit and purge. The arm64
# and armhf packages below are checked to need no libdbus of the system.
# CI_CHECK_AMD64_BINARY: a binary already built with the packages'
# features (CI's performance-table build: release code generation, LTO
# off, unwinding) to package instead of compiling the tree once more.
if [ -n "${CI_CHECK_AMD64_BINARY:-}" ] && [ -x "$CI_CHECK_AMD64_BINARY" ]; then
  BUILD_DEB_PREBUILT="$CI_CHECK_AMD64_BINARY" BUILD_DEB_SYSTEM_OPENSSL=1 bash packaging/build-deb.sh amd64
else
  BUILD_DEB_SYSTEM_OPENSSL=1 bash packaging/build-deb.sh amd64
fi
cpu_mark "$cpu_raw"
echo "ci-check: amd64 package built in $(( $(date +%s) - start )) s, $(( $(cpu_marked "$cpu_raw") - cpu_start )) CPU-s"
deb=$(ls -t "$target_dir"/debian/edge-gateway_*_amd64.deb | head -n 1)
ls -l "$deb"

work=$(mktemp -d)
broker_pid="" gw_pid=""
cleanup() {
  [ -n "$gw_pid" ] && kill -KILL "$gw_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  dpkg --purge edge-gateway >/dev/null 2>&1 || true
  rm -rf "$work" "$cpu_raw"
}
trap cleanup EXIT

# A leftover from an aborted run would hide what this install does.
dpkg --purge edge-gateway >/dev/null 2>&1 || true
dpkg -i "$deb"
# What follows runs the installed binary, not the build.
drop_build x86_64-unknown-linux-gnu

# -- installed files, modes, owners, user
check_stat() {
  local got
  got=$(stat -c '%a %U:%G' "$1")
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
  ok "$1 $got"
}
check_stat /usr/bin/edge-gateway "755 root:root"
check_stat /etc/edge-gateway/gateway.toml "640 root:edge-gateway"
check_stat /usr/share/dbus-1/system.d/edge-gateway.conf "644 root:root"
unit=$(dpkg -L edge-gateway | grep '/systemd/system/edge-gateway.service$') || fail "no systemd unit in the package"
check_stat "$unit" "644 root:root"
getent passwd edge-gateway >/dev/null || fail "no edge-gateway user"
uid=$(id -u edge-gateway)
[ "$uid" -lt 1000 ] || fail "edge-gateway is not a system user (uid $uid)"
case "$(getent passwd edge-gateway | cut -d: -f7)" in
  */nologin|*/false) ok "user edge-gateway (uid $uid, no login shell)" ;;
  *) fail "edge-gateway has a login shell" ;;
esac
dpkg-query -W -f='${Conffiles}\n' edge-gateway | grep -q '/etc/edge-gateway/gateway.toml' \
  || fail "gateway.toml is not a conffile"
ok "conffile /etc/edge-gateway/gateway.toml"
grep -q '^state_dir = "/var/lib/edge-gateway"$' /etc/edge-gateway/gateway.toml \
  || fail "the packaged config does not keep state in /var/lib/edge-gateway"
dpkg-query -W -f='${Recommends}\n' edge-gateway | grep -q mosquitto || fail "no Recommends: mosquitto"
/usr/bin/edge-gateway demo --help >/dev/null 2>&1 && fail "the package contains the demo (embedded broker)"
ok "no demo subcommand"

# -- the unit
systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
ok "systemd-analyze verify"
# The documented drop-in for a serial_line adapter, as shipped.
cmp -s /usr/share/doc/edge-gateway/examples/serial-port.conf packaging/debian/serial-port.conf \
  || fail "the package does not ship packaging/debian/serial-port.conf"
bash packaging/check-serial-dropin.sh /usr/bin/edge-gateway

# -- the installed binary with the installed config, as the service user
runuser -u edge-gateway -- /usr/bin/edge-gateway --version
runuser -u edge-gateway -- /usr/bin/edge-gateway validate -c /etc/edge-gateway/gateway.toml
ok "validate -c /etc/edge-gateway/gateway.toml"

# -- conf.d: created by the package, read by the service user
check_stat /etc/edge-gateway/conf.d "750 root:edge-gateway"
printf '[aggregation]\nwindoww = "5m"\n' >/etc/edge-gateway/conf.d/20-site.toml
chown root:edge-gateway /etc/edge-gateway/conf.d/20-site.toml
chmod 640 /etc/edge-gateway/conf.d/20-site.toml
code=0
out=$(runuser -u edge-gateway -- /usr/bin/edge-gateway validate -c /etc/edge-gateway/gateway.toml 2>&1) || code=$?
rm -f /etc/edge-gateway/conf.d/20-site.toml
[ "$code" -eq 78 ] || fail "a drop-in with an unknown key: exit $code, expected 78: $out"
grep -q '^conf.d/20-site.toml: aggregation.windoww: unknown key' <<<"$out" \
  || fail "the drop-in's problem does not name its file and key: $out"
ok "conf.d drop-in read, its unknown key named"

# A port nothing answers on (pure bash: a fresh Debian has no python3),
# below the kernel's ephemeral range: the tests beside this in CI bind
# port 0 and open client connections, both of which take ports from that
# range, where a port nothing listens on may still be bound.
read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || ephemeral_low=32768
[ "${ephemeral_low:-0}" -gt 21000 ] || ephemeral_low=60000
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % (ephemeral_low - 20000) ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
# A test broker on a free port, listening before anything connects: a
# port found free was once taken by a test running beside this in CI
# before Mosquitto bound it, and the gateway under qemu-arm waited 30 s
# on "connection refused". Sets broker_port and broker_pid.
start_broker() { # name (of its config and log)
  local attempt
  for attempt in 1 2 3 4 5; do
    broker_port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$broker_port" >"$work/$1.conf"
    mosquitto -c "$work/$1.conf" >"$work/$1.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 1 50); do
      # Ours, not another listener that took the port: still running.
      (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && kill -0 "$broker_pid" 2>/dev/null && return 0
      kill -0 "$broker_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    echo "ci-check: test broker attempt $attempt on port $broker_port failed: $(tail -n 3 "$work/$1.log")"
  done
  broker_pid=""
  fail "no test broker started in 5 attempts"
}
start_broker mosquitto
mqtt_port=$broker_port
metrics_port=""

# The installed config, pointed at the test broker and a metrics port the
# kernel picks (read back from the log: a port found free beforehand was
# taken by a test running beside this in CI before the gateway bound it);
# state in /var/lib/edge-gateway as systemd's StateDirectory= would make it.
sed -e "s#127.0.0.1:1883#127.0.0.1:$mqtt_port#" \
    -e "s#^bind = \"127.0.0.1:9898\"#bind = \"127.0.0.1:0\"#" \
    /etc/edge-gateway/gateway.toml >"$work/gateway.toml"
chmod 644 "$work/gateway.toml"
chmod 755 "$work"
install -d -o edge-gateway -g edge-gateway -m 750 /var/lib/edge-gateway
# Each run logs to its own file, created before the run starts: `>` in a
# background command truncates in the child, after this shell may already
# have read the previous run's log and taken its (dead) metrics port, which
# timed out arm64's /health wait once on CI.
gw_log="$work/gateway-amd64.log"
: >"$gw_log"
# setpriv execs the gateway itself (runuser would stay in between and turn
# our SIGTERM into its own session teardown). unit-sandbox.py applies the
# installed unit's SystemCallFilter= and MemoryDenyWriteExecute= as systemd
# would, then execs the gateway too: without it no test would meet a
# dependency calling something the unit denies, which fails only on a Pi.
install -m 755 packaging/unit-sandbox.py "$work/unit-sandbox.py"
setpriv --reuid=edge-gateway --regid=edge-gateway --init-groups \
  /usr/bin/python3 "$work/unit-sandbox.py" "$unit" \
  /usr/bin/edge-gateway run -c "$work/gateway.toml" >"$gw_log" 2>&1 &
gw_pid=$!

http_get() { # port path -> "CODE\nBODY"
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  local resp
  resp=$(cat <&3)
  exec 3<&-
  printf '%s\n' "$resp" | head -n 1 | cut -d' ' -f2
  printf '%s\n' "${resp#*$'\r\n\r\n'}"
}
wait_for() { # description command...
  local what="$1"; shift
  for _ in $(seq 1 300); do
    if "$@" 2>/dev/null; then return 0; fi
    kill -0 "$gw_pid" 2>/dev/null || { cat "$gw_log"; fail "gateway exited while waiting for $what"; }
    sleep 0.1
  done
  cat "$gw_log"
  fail "timed out waiting for $what"
}
health_is() { [ "$(http_get "$metrics_port" /health | head -n 1)" = "$1" ]; }
# Where the metrics endpoint listens, from the gateway's log.
logged_metrics_port() {
  local line
  line=$(grep -o 'Metrics endpoint listening.*bind=127\.0\.0\.1:[0-9]*' "$gw_log" | head -n 1) || return 1
  metrics_port=${line##*:}
  [ -n "$metrics_port" ]
}
wait_for "the metrics endpoint" logged_metrics_port
wait_for "/health 200" health_is 200
ok "/health: $(http_get "$metrics_port" /health | tail -n +2)"

# /health 200 includes the MQTT adapter's subscription; the log says so too.
grep -q "Subscribed." "$gw_log" || fail "/health 200 before the adapter subscribed"
mosquitto_pub -p "$mqtt_port" -t sensors/data/ci-1/temperature -m 21.5 -q 1
# Read whole, then grep: `grep -q` closing the pipe early fails under pipefail.
metrics_has() { local m; m=$(http_get "$metrics_port" /metrics) && grep -qF "$1" <<<"$m"; }
wait_for "a reading counted" metrics_has 'edge_gateway_adapter_readings_total{adapter="local-sensors"} 1'
for line in 'edge_gateway_upstream_connected 1' 'process_resident_memory_bytes ' 'edge_gateway_build_info'; do
  metrics_has "$line" || fail "/metrics has no $line"
done
scrape=$(http_get "$metrics_port" /metrics)
ok "/metrics scraped ($(grep -c '^edge_gateway_' <<<"$scrape") edge_gateway series)"

kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
wait_for "/health 503 without the broker" health_is 503
ok "/health 503 without the broker"

kill -TERM "$gw_pid"
code=0
wait "$gw_pid" || code=$?
gw_pid=""
[ "$code" -eq 0 ] || { cat "$gw_log"; fail "gateway exited with $code after SIGTERM"; }
ok "SIGTERM: clean exit"
ok "that run was under the unit's SystemCallFilter= and MemoryDenyWriteExecute= (unit-sandbox.py)"

# -- reinstalling is idempotent and keeps a local config edit
echo "# local edit by ci-check" >>/etc/edge-gateway/gateway.toml
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$deb" >/dev/null
grep -q '^# local edit by ci-check$' /etc/edge-gateway/gateway.toml || fail "reinstall replaced the edited config"
check_stat /etc/edge-gateway/gateway.toml "640 root:edge-gateway"
check_stat /usr/share/dbus-1/system.d/edge-gateway.conf "644 root:root"
[ "$(id -u edge-gateway)" = "$uid" ] || fail "reinstall changed the user"
ok "reinstall: same user, edited config kept"

# -- remove keeps user, config and state; purge removes them
dpkg --remove edge-gateway >/dev/null
[ ! -e /usr/bin/edge-gateway ] || fail "binary left after remove"
[ -e /etc/edge-gateway/gateway.toml ] || fail "remove deleted the config"
[ -d /var/lib/edge-gateway ] || fail "remove deleted the state"
getent passwd edge-gateway >/dev/null || fail "remove deleted the user"
ok "remove kept config, state and user"
dpkg --purge edge-gateway
[ ! -e /usr/bin/edge-gateway ] || fail "binary left after purge"
[ ! -e /etc/edge-gateway/gateway.toml ] || fail "config left after purge"
[ ! -e /var/lib/edge-gateway ] || fail "state left after purge"
getent passwd edge-gateway >/dev/null && fail "user left after purge"
ok "purge removed binary, config, state and user"

# -- arm64 and armhf: cross-built, checked, run under qemu
if [ "${SKIP_ARM64:-0}" = 1 ]; then
  echo "ci-check: SKIPPED arm64 and armhf (SKIP_ARM64=1)"
  exit 0
fi
# arch, Rust triple, qemu, the cross libc's root.
cross_check() {
  local arch="$1" triple="$2" qemu="$3" cross_root="$4" root
  local start cpu_start bin deb system_openssl=0
  # Debian's libssl of the architecture when the deps step installed it
  # (above).
  dpkg -s "libssl-dev:$arch" >/dev/null 2>&1 && system_openssl=1
  cpu_mark "$cpu_raw"
  start=$(date +%s) cpu_start=$(cpu_marked "$cpu_raw")
  BUILD_DEB_SYSTEM_OPENSSL=$system_openssl bash packaging/build-deb.sh "$arch"
  bin="$target_dir/$triple/release/edge-gateway"
  if [ ! -x "$bin" ]; then
    echo "ci-check: SKIPPED $arch run: no $arch build (see the message above)"
    return 0
  fi
  # The cross libc's root, or the host's where that architecture's own
  # libc is installed (packaging/qemu-root says why).
  root=$(packaging/qemu-root "$bin" "$cross_root")
  cpu_mark "$cpu_raw"
  echo "ci-check: $arch package built in $(( $(date +%s) - start )) s, $(( $(cpu_marked "$cpu_raw") - cpu_start )) CPU-s"
  deb=$(ls -t "$target_dir"/debian/edge-gateway_*_"$arch".deb | head -n 1)
  [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || fail "$deb is not Architecture: $arch"
  local contents
  contents=$(dpkg-deb -c "$deb")
  for f in ./usr/bin/edge-gateway ./etc/edge-gateway/gateway.toml \
    ./usr/share/dbus-1/system.d/edge-gateway.conf ./etc/edge-gateway/conf.d/README; do
    grep -qF " $f" <<<"$contents" || fail "$arch package has no $f"
  done
  grep -q 'edge-gateway.service$' <<<"$contents" || fail "$arch package has no systemd unit"
  # Extracted rather than piped through tar: tar stops at the archive's end
  # marker, dpkg-deb then dies of SIGPIPE, and pipefail called that a
  # missing postinst (it failed armhf once while arm64 passed).
  local control="$work/control-$arch"
  dpkg-deb -e "$deb" "$control"
  [ -f "$control/postinst" ] || fail "$arch package has no postinst"
  ok "$arch package contents"
  # As released: OpenSSL and libdbus built in, nothing but libc needed
  # (CI's cross builds link Debian's OpenSSL, see above: libdbus only).
  local needed carried='libssl|libcrypto|libdbus'
  [ "$system_openssl" = 1 ] && carried='libdbus'
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  if grep -qE "$carried" <<<"$needed"; then
    fail "$arch binary needs a system library it should carry: $needed"
  fi
  ok "$arch binary needs only $needed$([ "$system_openssl" = 1 ] && echo " (OpenSSL: Debian's $arch libssl, CI only)")"
  "$qemu" -L "$root" "$bin" --version
  "$qemu" -L "$root" "$bin" validate -c gateway.toml
  ok "$arch binary runs under $qemu (--version, validate)"

  # A short run with the shipped config against a test broker: /health 200.
  start_broker "mosquitto-$arch"
  sed -e "s#127.0.0.1:1883#127.0.0.1:$broker_port#" \
      -e "s#^bind = \"127.0.0.1:9898\"#bind = \"127.0.0.1:0\"#" \
      -e "s#^state_dir = .*#state_dir = \"$work/state-$arch\"#" \
      gateway.toml >"$work/gateway-$arch.toml"
  gw_log="$work/gateway-$arch.log"
  : >"$gw_log"
  "$qemu" -L "$root" "$bin" run -c "$work/gateway-$arch.toml" >"$gw_log" 2>&1 &
  gw_pid=$!
  metrics_port=""
  wait_for "$arch's metrics endpoint under $qemu" logged_metrics_port
  wait_for "$arch /health 200 under $qemu" health_is 200
  ok "$arch under $qemu: /health $(http_get "$metrics_port" /health | tail -n +2)"
  kill -TERM "$gw_pid"
  local code=0
  wait "$gw_pid" || code=$?
  gw_pid=""
  [ "$code" -eq 0 ] || { cat "$gw_log"; fail "$arch gateway exited with $code after SIGTERM"; }
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
  ok "$arch under $qemu: SIGTERM, clean exit"
  drop_build "$triple"
}
# One after the other: each is a full build on CI's 2 cores.
cross_check arm64 aarch64-unknown-linux-gnu qemu-aarch64 /usr/aarch64-linux-gnu
cross_check armhf armv7-unknown-linux-gnueabihf qemu-arm /usr/arm-linux-gnueabihf
