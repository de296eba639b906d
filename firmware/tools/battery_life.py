#!/usr/bin/env python3
"""Battery life of a sensor node: average current over one wake cycle, and
how long a battery lasts at that average.

    python3 firmware/tools/battery_life.py              # every profile
    python3 firmware/tools/battery_life.py --lora-sf 9 --payload 17 --interval 300

A node's cycle is a list of phases, (name, current in mA, seconds), followed
by sleep for the rest of the interval. The average current is the charge of
one cycle divided by its length; the lifetime is the usable capacity divided
by that average. Radio phases come from the physics, not from guesses: LoRa
time on air from the Semtech SX127x formula (spreading factor, bandwidth,
payload size), BLE advertising from the packet length and the three
advertising channels.

The seed course printed 0.366 mA / 0.9 years for its Wi-Fi node and 10.3
years for its LoRa node; its own inputs give 0.44 mA / 0.78 years and
0.095 mA / 3.6 years (SEED_WIFI, SEED_LORA below; tests/test_battery_life.py
checks both). Every figure printed here is computed.
"""
import argparse
import math

HOURS_PER_YEAR = 24 * 365.25


class Profile:
    """One wake cycle: `phases` [(name, mA, s)], then `sleep_ma` until
    `interval_s` has passed."""

    def __init__(self, name, phases, sleep_ma, interval_s, capacity_mah, usable=1.0):
        awake = sum(s for _, _, s in phases)
        if awake > interval_s:
            raise ValueError("%s: %.3f s awake in a %.3f s interval" % (name, awake, interval_s))
        if not 0 < usable <= 1:
            raise ValueError("usable fraction must be in (0, 1]")
        self.name = name
        self.phases = list(phases)
        self.sleep_ma = sleep_ma
        self.interval_s = interval_s
        self.capacity_mah = capacity_mah
        self.usable = usable

    def awake_s(self):
        return sum(s for _, _, s in self.phases)

    def charge_mas(self):
        """Charge per cycle in mA*s, sleep included."""
        active = sum(ma * s for _, ma, s in self.phases)
        return active + self.sleep_ma * (self.interval_s - self.awake_s())

    def average_ma(self):
        return self.charge_mas() / self.interval_s

    def hours(self):
        return self.capacity_mah * self.usable / self.average_ma()

    def years(self):
        return self.hours() / HOURS_PER_YEAR

    def asleep_fraction(self):
        return 1 - self.awake_s() / self.interval_s

    def report(self):
        lines = ["%s: every %g s, %.4f %% asleep" % (self.name, self.interval_s, 100 * self.asleep_fraction())]
        for name, ma, s in self.phases:
            lines.append("  %-28s %8.3f mA x %9.4f s = %8.3f mAs" % (name, ma, s, ma * s))
        sleep_s = self.interval_s - self.awake_s()
        lines.append("  %-28s %8.4f mA x %9.1f s = %8.3f mAs" % ("sleep", self.sleep_ma, sleep_s, self.sleep_ma * sleep_s))
        lines.append(
            "  average %.4f mA -> %.0f h = %.2f years on %g mAh%s"
            % (
                self.average_ma(),
                self.hours(),
                self.years(),
                self.capacity_mah,
                "" if self.usable == 1 else " (%.0f %% usable)" % (100 * self.usable),
            )
        )
        return "\n".join(lines)


# --- LoRa -------------------------------------------------------------------

# LoRaWAN 1.0.x MAC overhead on every uplink: MHDR 1 + DevAddr 4 + FCtrl 1 +
# FCnt 2 + FPort 1 + MIC 4 = 13 bytes (no FOpts).
LORAWAN_OVERHEAD = 13


def lora_airtime_s(phy_bytes, sf, bw_hz=125000, coding_rate=1, preamble=8, explicit_header=True, crc=True):
    """Time on air of one LoRa frame (Semtech AN1200.13 / SX1276 datasheet
    4.1.1.7). coding_rate 1..4 means 4/5..4/8. Low data rate optimisation is
    on when a symbol lasts 16 ms or more (SF11 and SF12 at 125 kHz)."""
    if not 6 <= sf <= 12:
        raise ValueError("spreading factor 6..12")
    t_sym = (2 ** sf) / bw_hz
    de = 1 if t_sym >= 0.016 else 0
    ih = 0 if explicit_header else 1
    num = 8 * phy_bytes - 4 * sf + 28 + 16 * (1 if crc else 0) - 20 * ih
    payload_symbols = 8 + max(math.ceil(num / (4 * (sf - 2 * de))) * (coding_rate + 4), 0)
    return (preamble + 4.25) * t_sym + payload_symbols * t_sym


def lora_profile(
    sf=7,
    payload=5,
    interval_s=600,
    capacity_mah=2600,
    tx_ma=120.0,  # SX1276 at +20 dBm (PA_BOOST); about 29 mA at +14 dBm
    rx_ma=11.5,  # SX1276 receive, 125 kHz
    mcu_ma=6.0,  # a Cortex-M0+ (RP2040 dormant-to-run) or ATmega + sensor
    wake_s=0.05,  # boot, sensor read, frame build
    rx_symbols=8,  # an empty Class A window closes after this many symbols
    rx2_sf=12,  # EU868 RX2: DR0, SF12
    sleep_ma=0.005,  # radio sleep + MCU deep sleep + regulator quiescent
):
    """A Class A LoRaWAN node: wake, transmit, two empty receive windows
    (RX1 at the uplink's SF, RX2 at SF12), back to sleep. The MCU idles
    at sleep current during the 1 s and 2 s window delays."""
    airtime = lora_airtime_s(payload + LORAWAN_OVERHEAD, sf)
    rx1 = rx_symbols * (2 ** sf) / 125000
    rx2 = rx_symbols * (2 ** rx2_sf) / 125000
    return Profile(
        "LoRaWAN SF%d, %d-byte payload (%.1f ms on air)" % (sf, payload, 1000 * airtime),
        [
            ("wake + sensor", mcu_ma, wake_s),
            ("transmit", tx_ma + mcu_ma, airtime),
            ("RX1 window", rx_ma + mcu_ma, rx1),
            ("RX2 window", rx_ma + mcu_ma, rx2),
        ],
        sleep_ma,
        interval_s,
        capacity_mah,
    )


# --- Wi-Fi ------------------------------------------------------------------


def wifi_profile(
    interval_s=300,
    capacity_mah=3000,
    boot_s=0.25,  # ROM + MicroPython start from deep sleep
    boot_ma=40.0,
    associate_s=0.9,  # static IP and a known channel/BSSID; DHCP adds ~1 s
    associate_ma=120.0,
    send_s=0.15,  # TCP + MQTT connect, one QoS 2 publish, disconnect
    send_ma=140.0,
    sleep_ma=0.010,  # ESP32 deep sleep, RTC memory kept
    batch=1,
    name=None,
):
    """An ESP32 that wakes every `interval_s` to sample, and connects to
    Wi-Fi every `batch`-th wake to send what it kept in RTC memory."""
    phases = [("boot + sensor", boot_ma, boot_s)]
    # Association and the send happen once per batch: spread over the wakes.
    phases.append(("Wi-Fi associate (1/%d)" % batch, associate_ma, associate_s / batch))
    phases.append(("MQTT send (1/%d)" % batch, send_ma, send_s / batch))
    return Profile(
        name or "ESP32 Wi-Fi, every %d s, batch of %d" % (interval_s, batch),
        phases,
        sleep_ma,
        interval_s,
        capacity_mah,
    )


# --- BLE --------------------------------------------------------------------

BLE_CHANNELS = 3  # advertising channels 37, 38, 39


def ble_adv_packet_s(adv_data_bytes):
    """One legacy advertising PDU on air at 1 Mbit/s: preamble 1 + access
    address 4 + header 2 + AdvA 6 + data + CRC 3 bytes, 8 us per byte."""
    return (1 + 4 + 2 + 6 + adv_data_bytes + 3) * 8e-6


def ble_profile(
    adv_bytes=18,  # Flags + BTHome service data with temperature/humidity/battery
    interval_s=60,
    adverts=5,  # advertising events per wake (scanners miss some)
    event_gap_s=0.1,  # advertising interval inside the burst
    tx_ma=8.0,  # nRF52 at 0 dBm; an ESP32 is nearer 100 mA
    event_overhead_s=0.0012,  # radio ramp-up and channel hops per event
    event_ma=4.0,
    mcu_ma=3.0,
    wake_s=0.02,
    sleep_ma=0.002,
    capacity_mah=230,  # CR2032
    name=None,
):
    """A BTHome advertiser: every `interval_s`, `adverts` advertising events
    of one packet on each of the three channels, then sleep."""
    on_air = BLE_CHANNELS * ble_adv_packet_s(adv_bytes)
    return Profile(
        name or "BLE BTHome, %d adverts every %d s" % (adverts, interval_s),
        [
            ("wake + sensor", mcu_ma, wake_s),
            ("advertise (on air)", tx_ma, adverts * on_air),
            ("advertise (ramp, hops)", event_ma, adverts * event_overhead_s),
            ("idle between events", mcu_ma * 0.1, (adverts - 1) * event_gap_s),
        ],
        sleep_ma,
        interval_s,
        capacity_mah,
    )


# --- The seed course's two profiles, recomputed ---------------------------

# Its Wi-Fi node: 3000 mAh, a wake every 5 minutes, 10 uA asleep.
SEED_WIFI = Profile(
    "seed course Wi-Fi node",
    [("boot + sensor", 30.0, 0.3), ("Wi-Fi connect + send", 120.0, 1.0)],
    0.010,
    300,
    3000,
)
# Its LoRa node: 3000 mAh, a wake every 10 minutes, 5 uA asleep.
SEED_LORA = Profile(
    "seed course LoRa node",
    [("transmit", 120.0, 0.4), ("receive windows", 12.0, 0.5)],
    0.005,
    600,
    3000,
)
# What the seed printed for them, which its inputs do not give.
SEED_PRINTED = {"wifi": (0.366, 0.9), "lora": (None, 10.3)}


def default_profiles():
    out = [SEED_WIFI, SEED_LORA]
    out.append(wifi_profile(interval_s=300))
    out.append(wifi_profile(interval_s=300, batch=6))
    for sf in (7, 9, 12):
        out.append(lora_profile(sf=sf, payload=5))
    out.append(ble_profile())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lora-sf", type=int, help="only a LoRaWAN node at this spreading factor")
    p.add_argument("--payload", type=int, default=5, help="LoRaWAN application payload, bytes")
    p.add_argument("--interval", type=float, help="seconds between wakes")
    p.add_argument("--capacity", type=float, help="battery capacity, mAh")
    args = p.parse_args(argv)
    if args.lora_sf:
        kw = {"sf": args.lora_sf, "payload": args.payload}
        if args.interval:
            kw["interval_s"] = args.interval
        if args.capacity:
            kw["capacity_mah"] = args.capacity
        profiles = [lora_profile(**kw)]
    else:
        profiles = default_profiles()
    for prof in profiles:
        print(prof.report())
        print()


if __name__ == "__main__":
    main()
