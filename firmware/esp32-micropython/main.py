# Reference ESP32 sensor node (MicroPython) for the edge gateway.
#
# Publishes to the building's local broker, which the gateway subscribes to:
#   sensors/data/<device>/<metric>   one plain number per metric
#   esp32/<device>/csv               temperature,pressure,humidity,gas
#   sensors/status/<device>          retained "online"; Last Will "offline"
# Edit the constants below, copy to the board with `mpremote cp main.py :`.
import time

import machine
import network
import ubinascii
from umqtt.simple import MQTTClient

WIFI_SSID = "building-iot"
WIFI_PASSWORD = "change-me"
BROKER = "192.168.1.10"  # the Raspberry Pi running Mosquitto and edge-gateway
PERIOD_S = 10

# The MAC is the device id: stable, unique, and what the registry in
# gateway.toml ([[device]] id = "a2:b2:...") names.
DEVICE = ":".join("%02x" % b for b in network.WLAN(network.STA_IF).config("mac"))


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


def main():
    while not connect_wifi():
        time.sleep(5)
    status = "sensors/status/%s" % DEVICE
    client = MQTTClient(ubinascii.hexlify(machine.unique_id()), BROKER, keepalive=60)
    client.set_last_will(status, "offline", retain=True, qos=1)
    client.connect()
    client.publish(status, "online", retain=True, qos=1)
    while True:
        t, p, h, g = read_sensor()
        for metric, value in (("temperature", t), ("pressure", p), ("humidity", h), ("gas", g)):
            client.publish("sensors/data/%s/%s" % (DEVICE, metric), "%.2f" % value, qos=1)
        client.publish("esp32/%s/csv" % DEVICE, "%.2f,%.2f,%.2f,%d" % (t, p, h, g), qos=1)
        time.sleep(PERIOD_S)


main()
