"""MicroPython's `time` extras on CPython's `time`: ticks_ms, ticks_add,
ticks_diff, sleep_ms; and a wall clock that a simulated sleep moves on.

Ticks wrap like a board's (2**30 ms, about 12 days), so code that
subtracts ticks instead of using ticks_diff fails here too. machine's
deepsleep()/lightsleep() call advance(): the node's clock (time.time,
time.time_ns) then reads as it would after the sleep, without the test
sleeping. Nothing else in the test process reads those two functions.
"""
import time

_PERIOD = 1 << 30
_slept_ns = 0
_real_time_ns = time.time_ns


def advance(ms):
    global _slept_ns
    _slept_ns += int(ms * 1_000_000)


def reset():
    global _slept_ns
    _slept_ns = 0


def install():
    if getattr(time, "_mpy_installed", False):
        return
    time._mpy_installed = True
    time.ticks_ms = lambda: (int(time.monotonic() * 1000) + _slept_ns // 1_000_000) % _PERIOD
    time.ticks_add = lambda t, d: (t + d) % _PERIOD
    time.ticks_diff = lambda a, b: ((a - b + _PERIOD // 2) % _PERIOD) - _PERIOD // 2
    time.sleep_ms = lambda ms: advance(ms)
    time.time_ns = lambda: _real_time_ns() + _slept_ns
    time.time = lambda: time.time_ns() / 1e9
