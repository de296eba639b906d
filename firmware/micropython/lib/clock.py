# Wall-clock time for readings, whatever the port's epoch.
#
# MicroPython's time.time() counts from 2000-01-01 on some ports and from
# 1970 on others (time.gmtime(0) tells which); the gateway wants Unix time.
# An RTC that was never set (no NTP yet) reads a year long past: such a
# time is worse than none, so unix_time() returns None and the reading is
# stamped by the gateway on arrival instead.
import time

_EPOCH_2000 = 946684800
_OFFSET = _EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0
# Earlier than this, the RTC was not set: 2024-01-01T00:00:00Z.
_SANE = 1704067200


def unix_time():
    """Seconds since 1970 (float, ms resolution where the port has it), or
    None when the clock was never set."""
    if hasattr(time, "time_ns"):
        t = time.time_ns() / 1e9 + _OFFSET
    else:
        t = time.time() + _OFFSET
    return t if t >= _SANE else None


def hour_utc(t):
    """The hour of the day (0-23, UTC) of a Unix time, for time-of-day
    factors; local offsets are the config's business."""
    return int(t // 3600) % 24


def sync_ntp(host="pool.ntp.org"):
    """Sets the RTC from NTP (MicroPython only); False when unreachable."""
    try:
        import ntptime

        ntptime.host = host
        ntptime.settime()
        return True
    except (ImportError, OSError):
        return False
