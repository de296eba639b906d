#!/usr/bin/env bash
# Builds the Debian packages into target/debian/:
#   packaging/build-deb.sh amd64|arm64|all
# amd64 builds natively. arm64 (Raspberry Pi 3/4/5, 64-bit OS) cross-builds
# with rustup's aarch64-unknown-linux-gnu target and Debian's
# gcc-aarch64-linux-gnu; when either is missing it says so and skips.
# Packages never include the `demo` feature (its embedded broker).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target_dir/debian"
mkdir -p "$out"

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "build-deb: cargo-deb is missing; install it with: cargo install --locked cargo-deb" >&2
  exit 1
fi

build() {
  local arch="$1" triple="$2"
  echo "== building edge-gateway .deb for $arch ($triple)"
  cargo deb -p edge-gateway --locked --no-default-features --features all-protocols \
    --target "$triple" --no-strip --output "$out"
}

amd64() {
  build amd64 x86_64-unknown-linux-gnu
}

# Exit 0 after a skip, so `all` and CI go on; the message says what to install.
arm64() {
  local triple=aarch64-unknown-linux-gnu
  if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    if ! rustup target add "$triple"; then
      echo "build-deb: SKIPPED arm64: the Rust standard library for $triple is not installed and 'rustup target add $triple' failed (no access to static.rust-lang.org?)." >&2
      return 0
    fi
  fi
  if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
    echo "build-deb: SKIPPED arm64: no cross linker; install it with: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2
    return 0
  fi
  # Linker for rustc, C compiler for ring's assembly, both the Debian cross gcc.
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
  AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    build arm64 "$triple"
}

case "${1:-}" in
  amd64) amd64 ;;
  arm64) arm64 ;;
  all) amd64; arm64 ;;
  *) echo "usage: $0 amd64|arm64|all" >&2; exit 2 ;;
esac
ls -l "$out"/*.deb
