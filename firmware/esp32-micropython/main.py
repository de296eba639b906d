# Reference ESP32 sensor node (MicroPython) for the edge gateway: the
# seed course's mains-powered BME680 node, kept as the smallest example.
# For a battery node (deep sleep, batching, QoS 2, a queue that survives
# failed sends) use firmware/nodes/esp32-bme680-mqtt instead.
#
# Publishes to the building's local broker, which the gateway subscribes to
# with its default configuration:
#   sensors/<device>          one JSON object per sample:
#                             {"temperature":21.3,"pressure":1013.2,...}
#   sensors/status/<device>   retained "online"; Last Will "offline"
# (The seed published each value on sensors/data/<device>/<metric> AND the
# same sample as CSV on esp32/<device>/csv, which the default config does
# not read; enabling that topic would have counted every reading twice. One
# message per sample also keeps the four values of a sample together.)
# Edit the constants below, copy to the board with `mpremote cp main.py :`.
import json
import random
import time

import machine
import network
import ubinascii
from umqtt.simple import MQTTClient

WIFI_SSID = "building-iot"
WIFI_PASSWORD = "change-me"
BROKER = "192.168.1.10"  # the Raspberry Pi running Mosquitto and edge-gateway
PERIOD_S = 10
MAX_BACKOFF_S = 60

# The MAC is the device id: stable, unique, and what the registry in
# gateway.toml ([[device]] id = "a2:b2:...") names.
DEVICE = ":".join("%02x" % b for b in network.WLAN(network.STA_IF).config("mac"))
STATUS = "sensors/status/%s" % DEVICE
TOPIC = "sensors/%s" % DEVICE


def connect_wifi():
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(WIFI_SSID, WIFI_PASSWORD)
        for _ in range(30):
            if wlan.isconnected():
                break
            time.sleep(1)
    return wlan.isconnected()


def read_sensor():
    # Replace with the BME680 driver of your board; values must be finite
    # numbers (the gateway drops NaN and counts it).
    import bme680

    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
    s = bme680.BME680_I2C(i2c)
    return s.temperature, s.pressure, s.humidity, s.gas


def session(connected):
    """One broker session; raises on the first network error. Calls
    connected() once the broker accepted it."""
    client = MQTTClient(ubinascii.hexlify(machine.unique_id()), BROKER, keepalive=60)
    client.set_last_will(STATUS, "offline", retain=True, qos=1)
    client.connect()
    client.publish(STATUS, "online", retain=True, qos=1)
    connected()
    while True:
        t, p, h, g = read_sensor()
        sample = {"temperature": round(t, 2), "pressure": round(p, 2), "humidity": round(h, 2), "gas": int(g)}
        client.publish(TOPIC, json.dumps(sample), qos=1)
        time.sleep(PERIOD_S)


def main():
    failures = [0]

    def connected():
        failures[0] = 0

    while True:
        try:
            if connect_wifi():
                session(connected)
        except OSError as e:
            print("link lost:", e)
        # Reconnect with exponential backoff and jitter, so that every node
        # of the building does not return in the same second.
        failures[0] += 1
        step = min(MAX_BACKOFF_S, 2 ** min(failures[0], 6))
        time.sleep(step / 2 + random.getrandbits(8) / 256 * step / 2)


main()
