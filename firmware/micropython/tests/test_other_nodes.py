"""The ESP-NOW client and relay, the BTHome advertiser and the Pico W fridge
node: their own logic, with the radios stood in for (ESP-NOW, BLE) or real
(MQTT: a real Mosquitto)."""
import importlib.util
import os
import sys
import types
import unittest

import support
import gateway
import machine
import relay
from uplink_espnow import EspNowUplink

NODES = os.path.join(support.FIRMWARE, "nodes")


def load(node, name="main", **overrides):
    cfg = types.ModuleType("config")
    with open(os.path.join(NODES, node, "config.py")) as f:
        exec(f.read(), cfg.__dict__)
    cfg.__dict__.update(overrides)
    sys.modules["config"] = cfg
    spec = importlib.util.spec_from_file_location("%s_%s" % (node.replace("-", "_"), name), os.path.join(NODES, node, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Radio:
    """ESP-NOW's outbound edge: send() returns whether the peer acked."""

    def __init__(self, acks):
        self.acks = list(acks)
        self.frames = []

    def send(self, mac, msg, sync=True):
        self.frames.append((bytes(mac), bytes(msg)))
        return self.acks.pop(0)


class EspNow(unittest.TestCase):
    def test_a_reading_leaves_the_queue_only_when_the_relay_acknowledged_it(self):
        radio = Radio([True, False, True, True])
        up = EspNowUplink(b"\x24\x0a\xc4\x00\x00\x01", ["ts", "temperature", "humidity", "battery"], radio)
        st = {"q": [[1795255200.5, {"temperature": 21.5, "humidity": 40, "battery": 3.3}], [1795255260.0, {"temperature": None, "humidity": 41, "battery": 3.3}]]}
        with self.assertRaises(OSError):
            up.flush(st, lambda: None)
        self.assertEqual(len(st["q"]), 1)
        up.flush(st, lambda: None)
        self.assertEqual(st["q"], [])
        self.assertEqual(
            [m for _, m in radio.frames],
            [b"1795255200500,21.5,40,3.3", b"1795255260000,,41,3.3", b"1795255260000,,41,3.3"],
        )

    def test_the_relay_prints_one_clean_line_per_frame_with_the_client_mac(self):
        out = []

        class Air:
            frames = [
                (b"\x24\x0a\xc4\x12\x34\x56", b"1795255200500,21.5,40,3.3"),
                (b"\x24\x0a\xc4\x12\x34\x56", b"21.5\n99,1,2,3"),  # would be two lines
                (b"\x24\x0a\xc4\x12\x34\x56", b"\xff\xfe"),
                (None, None),
            ]

            def recv(self, timeout_ms):
                return self.frames.pop(0)

        r = relay.Relay(Air(), out.append)
        while r.step():
            pass
        self.assertEqual(out, ["24:0a:c4:12:34:56,1795255200500,21.5,40,3.3\n"])
        self.assertEqual((r.forwarded, r.dropped), (1, 2))

    def test_the_client_node_wakes_sends_and_sleeps(self):
        machine.power_cycle()
        main = load("espnow-client")
        radio = Radio([True] * 4)
        node = main.build(sensor=lambda: ({"temperature": 21.5, "humidity": 40.0, "battery": 3.3}, 3.3), esp=radio)
        with self.assertRaises(machine.DeepSleep):
            main.main(node)
        self.assertEqual(len(radio.frames), 1)
        self.assertEqual(radio.frames[0][0], bytes.fromhex("240ac4000001"))


class BtHome(unittest.TestCase):
    def test_the_advertisement_fits_and_carries_the_packet_id(self):
        main = load("bthome-advertiser")
        adv = main.advertisement(7, 21.456, 40.0, 3.9)
        self.assertLessEqual(len(adv), 31)
        # Service data: 0x40, packet id 7, battery 67 %, 21.46 C, 40.00 %.
        self.assertTrue(adv.endswith(bytes.fromhex("d2fc4000070143026208" + "03a00f")), adv.hex())
        self.assertEqual(main.battery_pct(5.0), 100)
        self.assertEqual(main.battery_pct(3.0), 0)


class Fridge(unittest.TestCase):
    def test_stays_connected_announces_online_and_sends_each_change(self):
        broker = support.Mosquitto()
        self.addCleanup(broker.close)
        sub = gateway.Subscriber(broker.port, "sensors/#")
        self.addCleanup(sub.close)
        gateway.publish(broker.port, "sensors/probe", "x", retain=True)
        sub.collect(lambda m: ("sensors/probe", "x") in m)
        main = load("pico-w-fridge", BROKER="127.0.0.1", PORT=broker.port)
        temps = [4.0, 4.1, 4.5]
        node = main.build(sensor=lambda: ({"temperature": temps.pop(0)}, None))
        for _ in range(3):
            node.wake()
        client = node.uplink.uplink.client
        self.assertIsNotNone(client.sock, "the connection is kept between wakes")
        got = sub.collect(lambda m: sum(1 for t, _ in m if t.startswith("sensors/24")) >= 2)
        self.assertIn(("sensors/status/24:0a:c4:12:34:56", "online"), got)
        data = [p for t, p in got if t == "sensors/24:0a:c4:12:34:56"]
        self.assertEqual(len(data), 2)  # 4.1 is not a change of 0.3
        self.assertIn('"v":4.5', data[1])
        client.close()  # the Pico loses power: the Will
        got = sub.collect(lambda m: ("sensors/status/24:0a:c4:12:34:56", "offline") in m)


if __name__ == "__main__":
    unittest.main()
