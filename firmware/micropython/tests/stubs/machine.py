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
    # The RTC keeps counting while the CPU is off: the wall clock moves on.
    import mpy_time

    mpy_time.advance(ms)
    raise DeepSleep(ms)


def lightsleep(ms=0):
    sleeps.append(("light", ms))
    import mpy_time

    mpy_time.advance(ms)


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


class Pin:
    def __init__(self, pin, *args, **kwargs):
        self.pin = pin


class I2C:
    def __init__(self, bus, scl=None, sda=None, freq=400000):
        self.bus = bus


class ADC:
    """Reads `battery_uv` (a test sets it): the divided battery voltage."""

    battery_uv = 2_050_000

    def __init__(self, pin):
        self.pin = pin

    def read_uv(self):
        return ADC.battery_uv
