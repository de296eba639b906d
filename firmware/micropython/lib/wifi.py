# Wi-Fi only while sending: the radio is the node's largest load (about
# 120 mA against 10 uA asleep), so a batching node associates once per
# batch, not once per reading.
import time

import network


def connect(ssid, password, timeout_s=10.0, wlan=None):
    """Associates, waiting at most timeout_s; True when connected."""
    wlan = wlan or network.WLAN(network.STA_IF)
    wlan.active(True)
    if wlan.isconnected():
        return True
    wlan.connect(ssid, password)
    start = time.ticks_ms()
    while not wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), start) > timeout_s * 1000:
            return False
        time.sleep_ms(50)
    return True


def mac(wlan=None):
    """The station MAC as aa:bb:cc:dd:ee:ff: the node's device id."""
    wlan = wlan or network.WLAN(network.STA_IF)
    return ":".join("%02x" % b for b in wlan.config("mac"))


class WithWifi:
    """Wraps an uplink: associate before flush, radio off after (unless
    the uplink keeps its connection).

    With `ntp_host`, the RTC is set from NTP at every association: an
    ESP32 without a 32 kHz crystal keeps time in deep sleep on a 150 kHz RC
    oscillator that drifts by up to 5 %, minutes over a night, and the
    gateway refuses readings stamped too far in its future (max_future, 1
    minute by default). One UDP round trip per association is cheap beside
    the association itself."""

    def __init__(self, uplink, ssid, password, timeout_s=10.0, ntp_host="pool.ntp.org"):
        self.uplink = uplink
        self.ssid = ssid
        self.password = password
        self.timeout_s = timeout_s
        self.ntp_host = ntp_host
        self.wlan = network.WLAN(network.STA_IF)

    def pending(self, st):
        return self.uplink.pending(st)

    def flush(self, st, save):
        if not connect(self.ssid, self.password, self.timeout_s, self.wlan):
            self.wlan.active(False)
            raise OSError("Wi-Fi %r not reachable" % self.ssid)
        if self.ntp_host:
            import clock

            clock.sync_ntp(self.ntp_host)
        try:
            self.uplink.flush(st, save)
        finally:
            if not getattr(self.uplink, "keep_connected", False):
                self.wlan.active(False)
