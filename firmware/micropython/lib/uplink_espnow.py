# Readings to an ESP-NOW relay: one CSV line per reading, sent
# to the relay's MAC; the relay prints "<client mac>,<line>" on its USB
# serial port for the gateway's `serial_line` adapter. ESP-NOW acknowledges
# each frame at the link layer: a reading leaves the queue only when the
# relay's radio acknowledged it. (That is one hop: a relay that resets
# before printing loses the line; the relay keeps no queue.)
import wire

# An ESP-NOW frame carries at most 250 bytes.
MAX_FRAME = 250


class EspNowUplink:
    def __init__(self, relay_mac, columns, esp=None):
        self.relay_mac = relay_mac
        self.columns = columns
        self.esp = esp

    def pending(self, st):
        return False

    def _esp(self):
        if self.esp is None:
            import espnow
            import network

            sta = network.WLAN(network.STA_IF)
            sta.active(True)  # ESP-NOW needs the radio, not an access point
            self.esp = espnow.ESPNow()
            self.esp.active(True)
            self.esp.add_peer(self.relay_mac)
        return self.esp

    def line(self, entry):
        t, values = entry
        row = dict(values)
        row["ts"] = None if t is None else int(round(t * 1000))
        return wire.csv_line(row, self.columns)

    def flush(self, st, save):
        q = st.get("q", [])
        esp = self._esp()
        while q:
            msg = self.line(q[0]).encode()
            if len(msg) > MAX_FRAME:
                raise ValueError("line of %d bytes exceeds an ESP-NOW frame" % len(msg))
            # sync=True: wait for the relay's link-layer acknowledgement.
            if not esp.send(self.relay_mac, msg, True):
                raise OSError("relay did not acknowledge")
            del q[0]
            save()
