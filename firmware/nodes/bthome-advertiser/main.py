# BTHome v2 advertiser (MicroPython `bluetooth`), for the gateway's BLE
# adapter (issue #14) or Home Assistant: each wake reads the sensor,
# advertises temperature, humidity and battery for ADVERTISE_MS, then deep
# sleeps. The BTHome packet id (kept in RTC memory) changes with every new
# reading, so a receiver that hears the same burst many times counts it once.
import time

import machine

import config
import wire
from state import RtcState


def battery_pct(volts):
    span = config.BATTERY_FULL_V - config.BATTERY_EMPTY_V
    return max(0, min(100, round(100 * (volts - config.BATTERY_EMPTY_V) / span)))


def read_sensor():
    import bme280

    i2c = machine.I2C(0, scl=machine.Pin(config.SCL), sda=machine.Pin(config.SDA))
    t, _, h = bme280.BME280(i2c=i2c).read_compensated_data()
    adc = machine.ADC(machine.Pin(config.BATTERY_ADC_PIN))
    return t, h, adc.read_uv() / 1e6 * config.BATTERY_DIVIDER


def advertisement(packet_id, temperature, humidity, volts):
    """Flags + name + BTHome service data, objects in ascending id order."""
    return wire.bthome_advertisement(
        [
            ("packet_id", packet_id),
            ("battery", battery_pct(volts)),
            ("temperature", round(temperature, 2)),
            ("humidity", round(humidity, 2)),
        ],
        name=config.NAME,
    )


def main():
    store = RtcState()
    st = store.load()
    st["pid"] = (st.get("pid", 0) + 1) % 256
    store.save(st)
    try:
        adv = advertisement(st["pid"], *read_sensor())
    except (OSError, ValueError) as e:
        # No reading, no advert: the receiver's silence rule notices.
        print("no advert:", e)
        adv = None
    if adv:
        import bluetooth

        ble = bluetooth.BLE()
        ble.active(True)
        ble.gap_advertise(config.ADV_INTERVAL_US, adv_data=adv, connectable=False)
        # Not lightsleep: the radio must keep advertising meanwhile.
        time.sleep_ms(config.ADVERTISE_MS)
        ble.gap_advertise(None)
        ble.active(False)
    machine.deepsleep(config.INTERVAL_S * 1000)


if __name__ == "__main__":
    main()
