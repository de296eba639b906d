"""MicroPython's `time` extras on CPython's `time`: ticks_ms, ticks_add,
ticks_diff, sleep_ms. Ticks wrap like a board's (2**30 ms, about 12 days),
so code that subtracts ticks instead of using ticks_diff fails here too."""
import time

_PERIOD = 1 << 30


def install():
    if hasattr(time, "ticks_ms"):
        return
    time.ticks_ms = lambda: int(time.monotonic() * 1000) % _PERIOD
    time.ticks_add = lambda t, d: (t + d) % _PERIOD
    time.ticks_diff = lambda a, b: ((a - b + _PERIOD // 2) % _PERIOD) - _PERIOD // 2
    time.sleep_ms = lambda ms: time.sleep(ms / 1000)
