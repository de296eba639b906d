"""The ESP32 + BME680 MQTT node's main loop, run under CPython against the
real gateway binary with the shipped default gateway.toml and a real
Mosquitto, through a proxy that breaks the
link twice at the worst moments (after the broker took a QoS 2 PUBLISH,
and after it took the PUBREL) and then refuses connections for a while.
Every reading the node decided to send arrives upstream exactly once: the
gateway's aggregates count each metric exactly, with the same average,
minimum and maximum, and the node's Last Will told the gateway it went
offline and came back.

The node deep-sleeps between wakes as on a board: machine.deepsleep()
raises, the test runs main again, and only RTC memory survives.
"""
import importlib.util
import json
import os
import random
import sys
import types
import unittest

import support  # noqa: F401  (paths and the MicroPython stand-ins)
import bme680
import gateway
import machine
import mpy_time
import mqtt_proxy

NODE_DIR = os.path.join(support.FIRMWARE, "nodes", "esp32-bme680-mqtt")
DEVICE = "24:0a:c4:12:34:56"  # the stand-in WLAN's MAC


def load_node(port):
    """The node's main.py with a config.py pointing at the proxy."""
    cfg = types.ModuleType("config")
    with open(os.path.join(NODE_DIR, "config.py")) as f:
        exec(f.read(), cfg.__dict__)
    cfg.BROKER = "127.0.0.1"
    cfg.PORT = port
    # Small thresholds and intervals: each scripted reading is a change.
    cfg.MIN_INTERVAL_S = 2
    cfg.START_INTERVAL_S = 4
    cfg.MAX_INTERVAL_S = 60
    sys.modules["config"] = cfg
    spec = importlib.util.spec_from_file_location("node_main", os.path.join(NODE_DIR, "main.py"))
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    return main


class MqttNodeAgainstTheGateway(unittest.TestCase):
    def setUp(self):
        # The backoff's jitter: random on a board, fixed here.
        random.seed(0x5EED)
        machine.power_cycle()
        mpy_time.reset()
        self.broker = support.Mosquitto()
        self.addCleanup(self.broker.close)
        self.metrics = support.free_port()
        self.up = gateway.Subscriber(self.broker.port, "building/hq/#")
        self.addCleanup(self.up.close)
        # The shipped gateway.toml: the node must need no gateway config.
        self.gw = gateway.Gateway(gateway.shipped_config("gw-fw-e2e", self.broker.port, self.metrics))
        self.addCleanup(self.gw.close)
        self.gw.wait_for_log("Subscribed")
        self.proxy = mqtt_proxy.Proxy(self.broker.port)
        self.addCleanup(self.proxy.close)
        # The node's own status topic, straight from the broker: each cut
        # waits for its Will before the node may reconnect (see Proxy).
        self.wills = gateway.Subscriber(self.broker.port, "sensors/status/#")
        self.addCleanup(self.wills.close)
        self.proxy.before_reconnect = lambda: self.wills.collect(
            lambda got: any(payload == "offline" for _, payload in got)
        )
        self.main = load_node(self.proxy.port)

    def wake(self, reading):
        """One wake of the board: main() from the top until deep sleep."""
        bme680.readings.append(reading)
        node = self.main.build()
        decide = node.policy.decide

        def recording(st, values, *args):
            send, interval = decide(st, values, *args)
            if send:
                self.sent.append(values)
            return send, interval

        node.policy.decide = recording
        with self.assertRaises(machine.DeepSleep) as sleep:
            self.main.main(node)
        return sleep.exception.ms

    def test_no_reading_lost_or_doubled_across_forced_disconnects(self):
        rng = random.Random(20)
        self.sent = []
        t, p, h, g = 21.0, 1013.0, 45.0, 120000
        for i in range(64):
            if i == 6:
                # The broker has the batch; the node never hears PUBREC.
                self.proxy.cut_after("publish", 1)
            if i == 22:
                # The broker released it; the node never hears PUBCOMP.
                self.proxy.cut_after("pubrel", 1)
            if i == 38:
                self.proxy.refuse()
            if i == 42:
                # Short enough for the node's queue (10): nothing dropped.
                self.proxy.accept()
            # Every reading moves past the thresholds, so every one is sent.
            t = round(t + rng.choice((-1, 1)) * rng.uniform(0.3, 1.0), 2)
            p = round(p + rng.uniform(-2, 2), 2)
            h = round(min(95, max(5, h + rng.choice((-1, 1)) * rng.uniform(1.2, 3))), 2)
            g = g + rng.choice((-1, 1)) * 6000
            self.wake((t, p, h, g))
        # Then a stable room: nothing new to send, and the batch age (not a
        # new reading) flushes what is left.
        for _ in range(40):
            state = json.loads(machine.RTC().memory())
            if not state.get("q") and not state.get("mqtt", {}).get("pending") and "retry_at" not in state:
                break
            self.wake((t, p, h, g))
        state = json.loads(machine.RTC().memory())
        self.assertEqual(state.get("q"), [], "readings left on the node")
        self.assertFalse(state["mqtt"].get("pending"), "a message left in flight")
        self.assertNotIn("dropped", state)

        # The disconnects really happened where the duplicates would be.
        self.assertTrue(self.proxy.cuts_done.is_set())
        self.assertGreater(self.proxy.counts["refused"], 0, "the node never met the refusal")
        n = len(self.sent)
        self.assertEqual(n, 64)

        series = 'edge_gateway_adapter_readings_total{adapter="local-sensors"}'
        self.assertEqual(gateway.wait_metric(self.metrics, series, 4 * n), 4 * n)
        self.assertEqual(self.gw.stop(), 0)
        # The broker delivers one subscriber's messages in order: once a
        # marker published after the gateway exited arrives, everything the
        # gateway sent has too.
        gateway.publish(self.broker.port, "building/hq/test/marker", "end")
        got = self.up.collect(lambda m: ("building/hq/test/marker", "end") in m)
        aggs = gateway.aggregates(got, DEVICE)
        for metric in ("temperature", "pressure", "humidity", "gas"):
            values = [v[metric] for v in self.sent]
            count = sum(a["metrics"][metric]["count"] for a in aggs if metric in a["metrics"])
            self.assertEqual(count, n, "%s: %d readings counted, %d sent" % (metric, count, n))
            total = sum(a["metrics"][metric]["avg"] * a["metrics"][metric]["count"] for a in aggs)
            self.assertAlmostEqual(total / n, sum(values) / n, places=6)
            self.assertEqual(min(a["metrics"][metric]["min"] for a in aggs), min(values))
            self.assertEqual(max(a["metrics"][metric]["max"] for a in aggs), max(values))
        # A reading the node had to drop would be reported, and is not.
        self.assertFalse([a for a in aggs if "dropped_readings" in a["metrics"]])
        # The Last Will reached the gateway at the cuts, and "online" after.
        states = [json.loads(p)["state"] for tpc, p in got if tpc == "building/hq/%s/status" % DEVICE]
        self.assertIn("offline", states)
        self.assertEqual(states[-1], "online")


if __name__ == "__main__":
    unittest.main()
