# Raspberry Pi Pico W fridge thermometer, USB powered, always
# connected over MQTT to the gateway's default adapter.
#
# A DS18B20 probe in the fridge, read every 30 s to 5 min (faster while the
# temperature moves: a door left open), sent on sensors/<mac> when it moved
# by 0.3 C or at least every 15 min. Status on sensors/status/<mac>: a
# retained "online" once connected, and "offline" as the Last Will, which
# the broker publishes when the Pico loses power or Wi-Fi. Give it a tag in
# the gateway's [[device]] registry (tags = ["fridge"]) and a threshold rule.
import time

import config
from backoff import Backoff
from duty import Policy
from node import Node
from state import RamState
from uplink_mqtt import MqttUplink
from wifi import WithWifi, mac


def make_sensor():
    import ds18x20
    import machine
    import onewire

    bus = ds18x20.DS18X20(onewire.OneWire(machine.Pin(config.ONEWIRE_PIN)))
    roms = bus.scan()

    def read():
        try:
            if not roms:
                raise OSError("no DS18B20 on the bus")
            bus.convert_temp()
            time.sleep_ms(750)  # 12-bit conversion time
            return {"temperature": round(bus.read_temp(roms[0]), 2)}, None
        except OSError as e:
            print("DS18B20 read failed:", e)
            return {"temperature": None}, None

    return read


def build(sensor=None):
    uplink = MqttUplink(
        mac(),
        config.BROKER,
        config.PORT,
        per_message=4,
        keep_connected=True,
        # Longer than the longest silence (the heartbeat), so a quiet
        # fridge is not declared offline by its own Last Will.
        keepalive=config.HEARTBEAT_S + 60,
    )
    return Node(
        sensor or make_sensor(),
        WithWifi(uplink, config.WIFI_SSID, config.WIFI_PASSWORD, ntp_host=config.NTP_HOST),
        # USB powered, never in deep sleep: RAM keeps the queue across
        # failed sends; flash is not written every minute.
        RamState(),
        Policy(
            config.THRESHOLDS,
            min_s=config.MIN_INTERVAL_S,
            max_s=config.MAX_INTERVAL_S,
            start_s=config.START_INTERVAL_S,
            heartbeat_s=config.HEARTBEAT_S,
        ),
        Backoff(base_s=2, cap_s=config.MAX_INTERVAL_S),
        batch=1,
        max_batch_age_s=0,
        max_queue=500,
    )


def main():
    node = build()
    while True:
        time.sleep(node.wake())


if __name__ == "__main__":
    main()
