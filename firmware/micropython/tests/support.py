"""What the CPython tests share: paths, the MicroPython stand-ins, the real
gateway binary and a real Mosquitto on a free loopback port.

Importing this module puts `lib/` and `tests/stubs/` on sys.path and adds
MicroPython's `time` extras (ticks_ms, sleep_ms, ...) to CPython's `time`,
so the library imports `machine`, `network` and `time` exactly as on a board.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIRMWARE = os.path.dirname(os.path.dirname(HERE))
REPO = os.path.dirname(FIRMWARE)
LIB = os.path.join(FIRMWARE, "micropython", "lib")
STUBS = os.path.join(HERE, "stubs")
# The repository's copies of the published vectors (tests/data/vectors).
VECTORS = os.path.join(REPO, "tests", "data", "vectors")

for p in (STUBS, LIB):
    if p not in sys.path:
        sys.path.insert(0, p)

import mpy_time  # noqa: E402  (installs ticks_ms & co. into `time`)

mpy_time.install()

# Every wait is bounded; a test that waits longer has failed.
WAIT_S = 20.0


def gateway_binary():
    """The gateway built by `cargo build -p edge-gateway` (or EDGE_GATEWAY_BIN)."""
    path = os.environ.get("EDGE_GATEWAY_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"), "debug", "edge-gateway"
    )
    if not os.access(path, os.X_OK):
        raise AssertionError(
            "no gateway binary at %s: run `cargo build -p edge-gateway` "
            "(scripts/test-firmware.sh does) or set EDGE_GATEWAY_BIN" % path
        )
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, deadline):
    """True once 127.0.0.1:port accepts a connection, False at the deadline."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            # Nothing to wait on but the listener itself: poll with a short
            # select-based pause, bounded by the deadline.
            select_pause(0.02)
    return False


def select_pause(seconds):
    import select

    select.select([], [], [], seconds)


class Mosquitto:
    """A real Mosquitto on a free loopback port, killed on close."""

    def __init__(self):
        if not shutil.which("mosquitto"):
            raise AssertionError("mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients")
        self.dir = tempfile.TemporaryDirectory(prefix="fw-mosquitto-")
        for _ in range(5):
            self.port = free_port()
            conf = os.path.join(self.dir.name, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % self.port)
            self.proc = subprocess.Popen(
                ["mosquitto", "-c", conf],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if wait_for_port(self.port, time.monotonic() + 10):
                return
            self.proc.kill()
            self.proc.wait()
        raise AssertionError("mosquitto did not start")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()
