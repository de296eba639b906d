# The ESP-NOW relay's one job : each frame a client sends becomes
# one line "<client mac>,<frame>" on USB serial, for the gateway's
# `serial_line` adapter (columns = ["mac", "ts", ...]), which names each
# client through the [[device]] registry by its MAC.
#
# Anything printed on the USB port is read by the gateway, so the relay
# prints nothing else: a frame that would not make exactly one clean line
# (a newline, a control byte, not ASCII) is dropped and counted here
# rather than split into two lines or glued to the next one there.


def mac_text(mac):
    return ":".join("%02x" % b for b in mac)


def relay_line(mac, frame):
    """The serial line for one ESP-NOW frame, or None to drop it."""
    if len(mac) != 6 or not frame:
        return None
    for b in frame:
        if b < 0x20 or b > 0x7E:  # printable ASCII only: no CR/LF, no NUL
            return None
    return mac_text(mac) + "," + frame.decode()


class Relay:
    def __init__(self, esp, write):
        self.esp = esp
        self.write = write
        self.forwarded = 0
        self.dropped = 0

    def step(self, timeout_ms=1000):
        """Forwards at most one frame; False when none arrived in time."""
        mac, frame = self.esp.recv(timeout_ms)
        if mac is None:
            return False
        line = relay_line(mac, frame)
        if line is None:
            self.dropped += 1
        else:
            self.write(line + "\n")
            self.forwarded += 1
        return True
