# ESP32 ESP-NOW sensor client: wakes, reads an SHT31/BME280-class
# sensor, sends one CSV line to the relay when the value changed (or the
# heartbeat is due), and deep sleeps. Unacknowledged readings stay in RTC
# memory and are retried with backoff.
import machine

import config
from backoff import Backoff
from duty import Policy
from node import Node
from state import RtcState
from uplink_espnow import EspNowUplink


def relay_mac():
    return bytes(int(x, 16) for x in config.RELAY_MAC.split(":"))


def read_sensor():
    """({metric: value}, battery volts). Replace with your sensor's driver."""
    import bme280  # e.g. micropython-bme280

    values = {"temperature": None, "humidity": None}
    try:
        i2c = machine.I2C(0, scl=machine.Pin(config.SCL), sda=machine.Pin(config.SDA))
        s = bme280.BME280(i2c=i2c)
        t, _, h = s.read_compensated_data()
        values = {"temperature": round(t, 2), "humidity": round(h, 2)}
    except OSError as e:
        print("sensor read failed:", e)
    adc = machine.ADC(machine.Pin(config.BATTERY_ADC_PIN))
    battery_v = round(adc.read_uv() / 1e6 * config.BATTERY_DIVIDER, 3)
    values["battery"] = battery_v
    return values, battery_v


def build(sensor=read_sensor, esp=None):
    return Node(
        sensor,
        EspNowUplink(relay_mac(), config.COLUMNS, esp),
        RtcState(),
        Policy(
            config.THRESHOLDS,
            min_s=config.MIN_INTERVAL_S,
            max_s=config.MAX_INTERVAL_S,
            start_s=config.START_INTERVAL_S,
            heartbeat_s=config.HEARTBEAT_S,
        ),
        Backoff(base_s=5, cap_s=config.MAX_INTERVAL_S),
        batch=config.BATCH,
        max_queue=16,
    )


def main(node=None):
    sleep_s = (node or build()).wake()
    machine.deepsleep(max(1000, int(sleep_s * 1000) + 1))


if __name__ == "__main__":
    main()
