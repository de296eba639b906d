# ESP32 + BME680, battery powered, over MQTT to the gateway's default
# adapter (on the topics the default gateway.toml reads).
#
# Each wake: read the BME680, decide (send on change, heartbeat), keep the
# reading in RTC memory, and every BATCH readings connect Wi-Fi and send
# them as one SenML pack on sensors/<mac> with QoS 2; then deep sleep for
# the adaptive interval. A failed send keeps the readings and retries with
# backoff and jitter. Status: retained "online" on sensors/status/<mac>,
# "offline" as the Last Will.
import machine

import config
from backoff import Backoff
from duty import Policy
from node import Node
from state import RtcState
from uplink_mqtt import MqttUplink
from wifi import WithWifi, mac


def read_sensor():
    """({metric: value}, battery volts). A failed sensor read gives None
    values: the reading is skipped, the node keeps running."""
    import bme680  # the driver for your board, e.g. micropython-bme680

    values = {"temperature": None, "pressure": None, "humidity": None, "gas": None}
    try:
        i2c = machine.I2C(0, scl=machine.Pin(config.SCL), sda=machine.Pin(config.SDA))
        s = bme680.BME680_I2C(i2c)
        values = {
            "temperature": round(s.temperature, 2),
            "pressure": round(s.pressure, 2),
            "humidity": round(s.humidity, 2),
            "gas": int(s.gas),
        }
    except OSError as e:
        print("BME680 read failed:", e)
    adc = machine.ADC(machine.Pin(config.BATTERY_ADC_PIN))
    battery_v = round(adc.read_uv() / 1e6 * config.BATTERY_DIVIDER, 3)
    return values, battery_v


def build(sensor=read_sensor):
    device = mac()
    uplink = MqttUplink(device, config.BROKER, config.PORT)
    return Node(
        sensor,
        WithWifi(uplink, config.WIFI_SSID, config.WIFI_PASSWORD, ntp_host=config.NTP_HOST),
        RtcState(),
        Policy(
            config.THRESHOLDS,
            min_s=config.MIN_INTERVAL_S,
            max_s=config.MAX_INTERVAL_S,
            start_s=config.START_INTERVAL_S,
            heartbeat_s=config.HEARTBEAT_S,
            hour_factors=config.HOUR_FACTORS,
        ),
        Backoff(base_s=5, cap_s=config.MAX_INTERVAL_S),
        batch=config.BATCH,
        max_batch_age_s=config.MAX_BATCH_AGE_S,
        # RTC memory is 2 KB: a SenML message in flight (about 530 bytes for
        # 4 readings) and 10 queued readings (about 90 bytes each) fit, with
        # room for the duty-cycle memory (tests/test_node.py checks). About
        # 10 wakes of outage at the shortest interval; beyond that the
        # oldest readings go, counted as `dropped_readings`.
        max_queue=10,
    )


def main(node=None):
    sleep_s = (node or build()).wake()
    # Rounded up: a retry due in 0.4 ms must not become deepsleep(0).
    machine.deepsleep(max(1000, int(sleep_s * 1000) + 1))


if __name__ == "__main__":
    main()
