"""The parts of MicroPython's `machine` the nodes use, for CPython.

RTC memory lives in this module, so it survives a simulated deep sleep
(the test "reboots" the node by running its main again) exactly as RTC
slow memory survives on an ESP32, and nothing else does.
"""

_rtc_memory = b""
_unique_id = b"\x24\x0a\xc4\x12\x34\x56"
sleeps = []  # (kind, ms) of every sleep asked for, for the tests


class DeepSleep(Exception):
    """Raised by deepsleep(): on a board the CPU stops here and the next
    wake starts main.py from the top."""

    def __init__(self, ms):
        Exception.__init__(self, ms)
        self.ms = ms


class RTC:
    def memory(self, data=None):
        global _rtc_memory
        if data is None:
            return _rtc_memory
        if len(data) > 2048:  # ESP32 port: MICROPY_HW_RTC_USER_MEM_MAX
            raise ValueError("RTC memory is 2048 bytes")
        _rtc_memory = bytes(data)


def deepsleep(ms=0):
    sleeps.append(("deep", ms))
    raise DeepSleep(ms)


def lightsleep(ms=0):
    sleeps.append(("light", ms))


def unique_id():
    return _unique_id


def reset_cause():
    return DEEPSLEEP_RESET if _rtc_memory else PWRON_RESET


PWRON_RESET = 1
DEEPSLEEP_RESET = 4


def power_cycle():
    """Test helper: what a battery swap does (RTC memory lost)."""
    global _rtc_memory
    _rtc_memory = b""
    del sleeps[:]
