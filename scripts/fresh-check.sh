#!/usr/bin/env bash
# The README's two commands on a stranger's machine: a minimal Debian 12
# root (debootstrap), the host's Rust toolchain copied in, a clean clone of
# this repository with nothing beside it, and only build-essential, git and
# ca-certificates installed. Runs the demo for a bounded time (it must print
# its dashboard URL and an aggregate), then `bash scripts/test.sh`, and ends
# with a summary of both. Not part of CI: it needs root, the network (Debian
# mirror, crates.io, static.rust-lang.org) and a full build from scratch.
#
#   sudo bash scripts/fresh-check.sh [WORKDIR]      # default /var/tmp/edge-gateway-fresh
#
#   FRESH_REF=<commit>     what to clone (default HEAD of this checkout)
#   FRESH_DEMO_SECONDS=N   how long the demo runs once built (default 120)
#   FRESH_TEST_TIMEOUT=S   bound on scripts/test.sh (default 10800 s)
#   FRESH_REUSE_ROOT=1     check out FRESH_REF in the previous run's root
#                          instead of a new one (what test.sh installed stays)
#   FRESH_SKIP_DEMO=1      only scripts/test.sh
#   FRESH_BASE_ONLY=1      only (re)build the cached base root and stop
#   FRESH_REBUILD_BASE=1   debootstrap again even when a cached base exists
#   FRESH_SCCACHE=DIR      compile through the host's sccache binary with its
#                          cache DIR bind-mounted (a faster rustc, same result;
#                          a server of its own inside the root). Off by default.
#
# The base root (debootstrap + build-essential, git, ca-certificates) is
# kept in WORKDIR/base and copied afresh for every run, so nothing a
# previous run installed (mosquitto, chromium...) is there beforehand.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/edge-gateway-fresh}
ref=${FRESH_REF:-$(git -C "$repo" rev-parse HEAD)}
demo_seconds=${FRESH_DEMO_SECONDS:-120}

[ "$(id -u)" -eq 0 ] || { echo "fresh-check: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap

# The mirror apt already uses on this host.
mirror=$(grep -rhoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
    grep -oE 'https?://[^ ]+' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

base=$work/base
root=$work/root
mkdir -p "$work"

mounted=()
unmount_all() {
    local i
    # The root's own sccache server outlives the commands that started it.
    if [ -n "${FRESH_SCCACHE:-}" ] && [ -x "$root/usr/local/bin/sccache" ]; then
        chroot "$root" /usr/bin/env -i SCCACHE_SERVER_PORT=4299 /usr/local/bin/sccache --stop-server >/dev/null 2>&1 || true
    fi
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[i]}" 2>/dev/null || true
    done
    mounted=()
}
trap unmount_all EXIT
trap 'unmount_all; exit 130' INT TERM
# Never delete through a mount left by an interrupted run (/dev is bound in).
clear_root() {
    local r=$1
    awk -v r="$r/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m"; done
    if awk -v r="$r/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
        echo "fresh-check: mounts remain under $r; not deleting it" >&2
        exit 1
    fi
    rm -rf --one-file-system "$r"
}
mount_into() { # mount_into ROOT: what a chroot needs to build and run tests
    local r=$1
    mount -t proc proc "$r/proc" && mounted+=("$r/proc")
    mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys" && mounted+=("$r/sys")
    mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev" && mounted+=("$r/dev")
    mkdir -p "$r/dev/shm"
    mount -t tmpfs -o mode=1777 shm "$r/dev/shm" && mounted+=("$r/dev/shm")
    mount -t tmpfs -o mode=1777 tmp "$r/tmp" && mounted+=("$r/tmp")
    cp -L /etc/resolv.conf "$r/etc/resolv.conf"
}

if [ "${FRESH_REBUILD_BASE:-0}" = 1 ] || [ ! -e "$base/.fresh-check-base" ]; then
    echo "== debootstrap: Debian 12 minbase from $mirror"
    clear_root "$base"
    debootstrap --variant=minbase bookworm "$base" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -n 30 "$work/debootstrap.log"; exit 1; }
    # A chroot has no init: packages must not try to start services.
    printf '#!/bin/sh\nexit 101\n' >"$base/usr/sbin/policy-rc.d"
    chmod +x "$base/usr/sbin/policy-rc.d"
    mount_into "$base"
    chroot "$base" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential git ca-certificates' \
        >"$work/base-apt.log" 2>&1 || { tail -n 30 "$work/base-apt.log"; exit 1; }
    unmount_all
    chroot "$base" dpkg-query -W -f '${Package}\n' | sort >"$work/base-packages.txt"
    touch "$base/.fresh-check-base"
fi
echo "== base root: $(wc -l <"$work/base-packages.txt") packages (debootstrap minbase + build-essential, git, ca-certificates)"
[ "${FRESH_BASE_ONLY:-0}" = 1 ] && exit 0

if [ "${FRESH_REUSE_ROOT:-0}" = 1 ] && [ -d "$root/src/edge-gateway/.git" ]; then
    # A second look at a later commit in the same root: what the README's
    # commands installed and built there stays, nothing else is added.
    echo "== reusing $root: checking out $ref"
    git -C "$root/src/edge-gateway" fetch -q "$repo" "$ref"
    git -C "$root/src/edge-gateway" checkout -q FETCH_HEAD
else
echo "== fresh root from the base"
clear_root "$root"
cp -a "$base" "$root"
rm -f "$root/.fresh-check-base"

# The toolchain only: rustup, cargo and rustc of the host's default
# toolchain. No crate registry, no build cache, no cargo config.
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
toolchain=$(rustup show active-toolchain | cut -d' ' -f1)
mkdir -p "$root/root/.rustup/toolchains" "$root/root/.cargo"
cp -a "$rustup_home/settings.toml" "$root/root/.rustup/"
cp -a "$(readlink -f "$rustup_home/toolchains/$toolchain")" "$root/root/.rustup/toolchains/$toolchain"
cp -a "$cargo_home/bin" "$root/root/.cargo/"
sed -i "s/^default_toolchain = .*/default_toolchain = \"$toolchain\"/" "$root/root/.rustup/settings.toml"
sed -i '/^\[overrides\]/,$d' "$root/root/.rustup/settings.toml"

echo "== clean clone of $ref into /src/edge-gateway (nothing beside it)"
mkdir -p "$root/src"
git clone -q --no-local "$repo" "$root/src/edge-gateway"
git -C "$root/src/edge-gateway" checkout -q "$ref"
ls -A "$root/src"
fi

mount_into "$root"
root_env=(HOME=/root TERM=dumb LANG=C.UTF-8
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

# A network that inspects TLS (a proxy with its own root, added to this
# host's bundle) would fail every download in the root: its extra roots go
# in as local certificates, the way an administrator adds them.
host_bundle=/etc/ssl/certs/ca-certificates.crt
if [ -f "$host_bundle" ]; then
    python3 - "$host_bundle" "$root/etc/ssl/certs/ca-certificates.crt" "$root/usr/local/share/ca-certificates" <<'PY'
import os, re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
host = pem.findall(open(sys.argv[1]).read())
have = set(pem.findall(open(sys.argv[2]).read()))
extra = [c for c in host if c not in have]
for i, c in enumerate(extra):
    with open(os.path.join(sys.argv[3], "host-extra-%d.crt" % i), "w") as f:
        f.write(c + "\n")
print("   host CA roots added to the root:", len(extra))
PY
    chroot "$root" update-ca-certificates >/dev/null 2>&1
    # pip's own bundle does not know them either.
    root_env+=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi
if [ -n "${FRESH_SCCACHE:-}" ]; then
    cp "$(command -v sccache)" "$root/usr/local/bin/sccache"
    mkdir -p "$root/var/cache/sccache"
    mount --bind "$FRESH_SCCACHE" "$root/var/cache/sccache" && mounted+=("$root/var/cache/sccache")
    # Not the host's server (it would compile outside the root): one of its own.
    root_env+=(RUSTC_WRAPPER=/usr/local/bin/sccache SCCACHE_DIR=/var/cache/sccache SCCACHE_SERVER_PORT=4299)
    echo "   (rustc through sccache, cache $FRESH_SCCACHE)"
fi
in_root() {
    chroot "$root" /usr/bin/env -i "${root_env[@]}" bash -c "cd /src/edge-gateway && $1"
}

demo_result="not run (FRESH_SKIP_DEMO)"
aggregates=0
demo_log=$work/demo.log
if [ "${FRESH_SKIP_DEMO:-0}" != 1 ]; then
start=$(date +%s)
echo "== README command 1: cargo run -p edge-gateway -- demo (built, then run ${demo_seconds}s)"
demo_log=$work/demo.log
: >"$demo_log"
# Its own process group, so Ctrl-C reaches cargo and the gateway alike.
setsid chroot "$root" /usr/bin/env -i "${root_env[@]}" \
    bash -c "cd /src/edge-gateway && exec cargo run -p edge-gateway -- demo" >"$demo_log" 2>&1 &
demo_pid=$!
demo_result="FAILED"
while kill -0 "$demo_pid" 2>/dev/null; do
    if grep -q 'dashboard  http://' "$demo_log"; then
        break
    fi
    sleep 5
done
if grep -q 'dashboard  http://' "$demo_log"; then
    built=$(date +%s)
    while kill -0 "$demo_pid" 2>/dev/null && [ $(($(date +%s) - built)) -lt "$demo_seconds" ]; do
        sleep 5
    done
fi
# Ctrl-C, as the README says; the demo then forwards its open windows.
kill -INT -- "-$demo_pid" 2>/dev/null || true
wait "$demo_pid" 2>/dev/null || true
aggregates=$(grep -c ' avg .* n=[0-9]' "$demo_log" || true)
if grep -q 'dashboard  http://' "$demo_log" && [ "$aggregates" -gt 0 ]; then
    demo_result="ok"
fi
demo_minutes=$((($(date +%s) - start) / 60))
echo "demo: $demo_result ($aggregates aggregate lines; build and run took ${demo_minutes} min)"
grep -m1 'dashboard  http://' "$demo_log" || tail -n 30 "$demo_log"
grep -m3 ' avg .* n=[0-9]' "$demo_log" || true
fi

echo "== README command 2: bash scripts/test.sh"
test_log=$work/test.log
start=$(date +%s)
set +e
in_root "timeout ${FRESH_TEST_TIMEOUT:-10800} bash scripts/test.sh" >"$test_log" 2>&1
test_rc=$?
set -e
test_minutes=$((($(date +%s) - start) / 60))


echo
echo "== summary (logs: $demo_log, $test_log)"
echo "demo:      $demo_result, $aggregates aggregate lines"
echo "test.sh:   exit $test_rc after ${test_minutes} min"
awk '/^test result:/ { p += $4; f += $6; i += $8; n++ }
     END { printf "cargo:     %d test binaries, %d passed, %d failed, %d ignored\n", n, p, f, i }' \
    "$test_log"
grep -E '^(FAILED|failures:)|^    [a-z_:]+$|panicked at|^error' "$test_log" | head -n 40 || true
grep -iE 'skipp' "$test_log" | sort | uniq -c | head -n 20 || true
echo "last steps reached:"
grep -E '^== |^     Running ' "$test_log" | tail -n 3 || true
case $demo_result in ok | "not run"*) ;; *) exit 1 ;; esac
[ "$test_rc" -eq 0 ]
