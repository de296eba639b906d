# A node's state across deep sleep and resets: the readings not yet
# delivered, the duty-cycle memory, the message in flight.
#
# ESP32: RTC slow memory (machine.RTC().memory(), 2048 bytes), which keeps
# its content through deep sleep but not through a power loss, and costs no
# flash wear. Boards without it (RP2040: deep sleep is a reset) use a file,
# written to a temporary name and renamed, so a reset mid-write leaves the
# old state rather than half a new one.
import json

RTC_BYTES = 2048  # ESP32 port: MICROPY_HW_RTC_USER_MEM_MAX


class RtcState:
    def __init__(self, rtc=None):
        if rtc is None:
            import machine

            rtc = machine.RTC()
        self.rtc = rtc
        self.limit = RTC_BYTES

    def load(self):
        raw = self.rtc.memory()
        if not raw:
            return {}
        try:
            return json.loads(bytes(raw).decode())
        except (ValueError, UnicodeError):
            # A power glitch during a write, or an older firmware's layout:
            # start afresh rather than crash-loop.
            return {}

    def save(self, state):
        self.rtc.memory(encode(state, self.limit))


class FileState:
    def __init__(self, path="state.json", limit=16384):
        self.path = path
        self.limit = limit

    def load(self):
        try:
            with open(self.path) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return {}

    def save(self, state):
        import os

        data = encode(state, self.limit)
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self.path)


def _dumps(obj):
    # Compact where the port allows (RTC memory is small); see wire._dumps.
    try:
        return json.dumps(obj, separators=(",", ":"))
    except TypeError:
        return json.dumps(obj)


def encode(state, limit):
    """JSON of `state` in at most `limit` bytes: when the queue does not
    fit, its oldest readings go first, counted in state["dropped"]."""
    while True:
        data = _dumps(state).encode()
        q = state.get("q")
        if len(data) <= limit or not q:
            if len(data) > limit:
                raise ValueError("state is %d bytes without readings, limit %d" % (len(data), limit))
            return data
        # Drop enough at once to fit, not one per round of serialising.
        per = max(1, len(data) // (len(q) + 1))
        n = min(len(q), (len(data) - limit) // per + 1)
        del q[:n]
        state["dropped"] = state.get("dropped", 0) + n


class RamState:
    """For mains-powered nodes that never deep sleep: the state lives in
    RAM, survives failed sends and reconnects, not a reset, and costs no
    flash wear (a write per wake would be 1440 a day at one a minute)."""

    def __init__(self):
        self.state = {}

    def load(self):
        return self.state

    def save(self, state):
        self.state = state
