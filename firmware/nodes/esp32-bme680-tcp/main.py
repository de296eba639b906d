# ESP32 + BME680, battery powered, CSV lines over TCP to the
# gateway's `tcp_line` adapter with acknowledgements.
#
# Each wake: read the BME680, decide (send on change, heartbeat), keep the
# reading in RTC memory; every BATCH readings connect Wi-Fi and TCP, send
# every queued line, and drop each line from the queue only when the
# gateway's "ok N" covers it. Unacknowledged lines survive a drop, a
# gateway crash and deep sleep, and are resent on the next connection.
import machine

import config
from backoff import Backoff
from duty import Policy
from node import Node
from state import RtcState
from uplink_line import LineUplink
from wifi import WithWifi


def read_sensor():
    """({metric: value}, battery volts); None values on a failed read."""
    import bme680

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
    return values, round(adc.read_uv() / 1e6 * config.BATTERY_DIVIDER, 3)


def build(sensor=read_sensor):
    uplink = LineUplink(config.GATEWAY, config.PORT, config.COLUMNS)
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
        # No message in flight to keep: 2 KB of RTC memory hold about 18
        # readings (about 90 bytes each) with the duty-cycle memory.
        max_queue=18,
    )


def main(node=None):
    sleep_s = (node or build()).wake()
    machine.deepsleep(max(1000, int(sleep_s * 1000) + 1))


if __name__ == "__main__":
    main()
