#!/usr/bin/env bash
# Builds the Debian packages into target/debian/:
#   packaging/build-deb.sh amd64|arm64|armhf|all
# amd64 builds natively. arm64 (Raspberry Pi 3/4/5, 64-bit OS) cross-builds
# with rustup's aarch64-unknown-linux-gnu target and Debian's
# gcc-aarch64-linux-gnu; armhf (32-bit Raspberry Pi OS: Pi Zero 2 W, Pi 2/3
# with 512 MB-1 GB) with armv7-unknown-linux-gnueabihf and
# gcc-arm-linux-gnueabihf. When a target or linker is missing it says so
# and skips. The C libraries (OpenSSL, libdbus) are built from source for
# every target, so a package depends on nothing but libc.
# Packages never include the `demo` feature (its embedded broker).
set -euo pipefail
cd "$(dirname "$0")/.."
# CI and scripts/test.sh link Debian's libssl for speed; a package never
# does (it would depend on the build machine's libssl-dev for its target).
# The exceptions are CI's own packages, which are run on the CI machine
# (installed, or under qemu) and never published:
# BUILD_DEB_SYSTEM_OPENSSL=1 (packaging/ci-check.sh) spares each the
# 250-330 CPU-s of OpenSSL's C; a cross target then links the libssl-dev
# of its Debian architecture (multiarch). Every package built without it
# compiles and ships its own.
if [ "${BUILD_DEB_SYSTEM_OPENSSL:-0}" = 1 ]; then
  export OPENSSL_NO_VENDOR=1
else
  unset OPENSSL_NO_VENDOR
fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target_dir/debian"
mkdir -p "$out"

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "build-deb: cargo-deb is missing; install it with: cargo install --locked cargo-deb" >&2
  exit 1
fi

build() {
  local arch="$1" triple="$2"
  if [ -n "${BUILD_DEB_PREBUILT:-}" ]; then
    # CI's amd64 package (packaging/ci-check.sh) takes the binary the
    # performance table's build made, with the packages' features, instead
    # of compiling the whole tree a second time: what that check proves
    # (the files, scripts, user, unit and purge, and a run) is the
    # package's, not the code generation's.
    echo "== packaging $BUILD_DEB_PREBUILT as the .deb for $arch ($triple)"
    mkdir -p "$target_dir/$triple/release"
    cp "$BUILD_DEB_PREBUILT" "$target_dir/$triple/release/edge-gateway"
    cargo deb -p edge-gateway --locked --no-default-features --features all-protocols \
      --target "$triple" --no-strip --no-build ${BUILD_DEB_FAST:+--fast} --output "$out"
    return
  fi
  echo "== building edge-gateway .deb for $arch ($triple)"
  # BUILD_DEB_CARGO_ARGS: more arguments for cargo build (CI's lighter
  # profile, packaging/ci-check.sh), split on spaces. BUILD_DEB_FAST=1:
  # cargo-deb's faster compression (CI's packages are never published).
  # shellcheck disable=SC2086
  cargo deb -p edge-gateway --locked --no-default-features --features all-protocols \
    --target "$triple" --no-strip ${BUILD_DEB_FAST:+--fast} --output "$out" ${BUILD_DEB_CARGO_ARGS:+-- $BUILD_DEB_CARGO_ARGS}
}

amd64() {
  build amd64 x86_64-unknown-linux-gnu
}

# One cross target: Debian architecture, Rust triple, the GNU tool prefix
# and the Debian packages of its cross gcc. Exit 0 after a skip, so `all`
# and CI go on; the message says what to install.
cross() {
  local arch="$1" triple="$2" gnu="$3" packages="$4"
  if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    if ! rustup target add "$triple"; then
      echo "build-deb: SKIPPED $arch: the Rust standard library for $triple is not installed and 'rustup target add $triple' failed (no access to static.rust-lang.org?)." >&2
      return 0
    fi
  fi
  if ! command -v "$gnu-gcc" >/dev/null 2>&1; then
    echo "build-deb: SKIPPED $arch: no cross linker; install it with: apt-get install $packages" >&2
    return 0
  fi
  # C compiler for ring's assembly and the vendored C libraries: the Debian
  # cross gcc. It drives the link too, through link-hot-first (hot code laid
  # out together) with rustup's lld, GNU ld cannot order symbols. Through a
  # launcher of this target's own: the host's links (build scripts) go
  # through link-hot-first as well, and must keep the host's cc.
  local var="${triple//-/_}" host launcher
  host=$(rustc -vV | sed -n 's/^host: //p')
  launcher="$target_dir/link-hot-first-$triple"
  mkdir -p "$target_dir"
  cat >"$launcher" <<LAUNCHER
#!/bin/sh
export HOT_FIRST_CC=$gnu-gcc
export HOT_FIRST_GCC_LD="$(rustc --print sysroot)/lib/rustlib/$host/bin/gcc-ld"
exec "$PWD/packaging/link-hot-first" "\$@"
LAUNCHER
  chmod +x "$launcher"
  (
    export "CARGO_TARGET_${var^^}_LINKER=$launcher" "CC_$var=$gnu-gcc" "AR_$var=$gnu-ar"
    if [ "${BUILD_DEB_SYSTEM_OPENSSL:-0}" = 1 ]; then
      # That architecture's openssl.pc only, never the host's.
      export PKG_CONFIG_ALLOW_CROSS=1 "PKG_CONFIG_LIBDIR_$var=/usr/lib/$gnu/pkgconfig"
    fi
    build "$arch" "$triple"
  )
}

arm64() {
  cross arm64 aarch64-unknown-linux-gnu aarch64-linux-gnu \
    "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
}

# ARMv7 with hardware float: what Raspberry Pi OS (32-bit) runs on every Pi
# from the Pi 2 on. (The Pi 1 and Zero 1 are ARMv6: not supported.)
armhf() {
  cross armhf armv7-unknown-linux-gnueabihf arm-linux-gnueabihf \
    "gcc-arm-linux-gnueabihf libc6-dev-armhf-cross"
}

case "${1:-}" in
  amd64) amd64 ;;
  arm64) arm64 ;;
  armhf) armhf ;;
  # One target after another: each is a full release build.
  all) amd64; arm64; armhf ;;
  *) echo "usage: $0 amd64|arm64|armhf|all" >&2; exit 2 ;;
esac
ls -l "$out"/*.deb
