"""MicroPython's `network.WLAN`, for CPython: always associated (the
loopback interface is the network), with a switch to simulate an access
point that is gone."""

STA_IF = 0
AP_IF = 1
available = True  # False: connect() never associates


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._connected = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)

    def connect(self, ssid=None, key=None):
        self._connected = available and self._active

    def disconnect(self):
        self._connected = False

    def isconnected(self):
        return self._connected and available

    def status(self):
        return 1010 if self.isconnected() else 1001

    def config(self, name):
        if name == "mac":
            return b"\x24\x0a\xc4\x12\x34\x56"
        raise ValueError(name)

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
