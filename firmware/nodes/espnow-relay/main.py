# ESP32 ESP-NOW relay (the "broker" board), powered by the Pi's USB
# port: every frame heard from a client becomes "<client mac>,<frame>\n" on
# USB serial (115200 baud), read by the gateway's serial_line adapter.
# Stays on, never sleeps; clients need no pairing beyond this board's MAC.
import sys

import espnow
import network

from relay import Relay


def main():
    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    sta.disconnect()  # ESP-NOW only: no access point
    # Clients send to this MAC; print it once at boot for their config.py.
    # The gateway counts this one line as a bad line; nothing else is printed.
    print("relay-mac " + ":".join("%02x" % b for b in sta.config("mac")))
    esp = espnow.ESPNow()
    esp.active(True)
    relay = Relay(esp, sys.stdout.write)
    while True:
        relay.step()


if __name__ == "__main__":
    main()
