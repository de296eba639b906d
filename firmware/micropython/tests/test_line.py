"""The TCP-with-ack node (esp32-bme680-tcp): lines leave the queue only when
acknowledged, refused lines are dropped and counted, and the node's main
loop loses and doubles nothing across cuts: against a peer speaking the
`tcp_line` contract (issue #17), and against the real gateway's `tcp_line`
adapter."""
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import types
import unittest

import support
import bme680
import gateway
import line_peer
import machine
import mpy_time
from uplink_line import LineUplink

NODE_DIR = os.path.join(support.FIRMWARE, "nodes", "esp32-bme680-tcp")
COLUMNS = ["ts", "temperature", "pressure", "humidity", "gas"]


def entry(i):
    return [1795255200.0 + i, {"temperature": 20 + i / 10, "pressure": 1000 + i, "humidity": 40 + i, "gas": 1000 * i}]


class Uplink(unittest.TestCase):
    def setUp(self):
        self.peer = line_peer.FakeLineGateway(COLUMNS)
        self.addCleanup(self.peer.close)
        self.uplink = LineUplink("127.0.0.1", self.peer.port, COLUMNS, timeout_s=5)
        self.saves = 0

    def save(self):
        self.saves += 1

    def test_unacknowledged_lines_stay_and_are_resent_numbered_afresh(self):
        st = {"q": [entry(i) for i in range(4)]}
        self.peer.crash_after = 2  # lines 3 and 4 never become durable
        with self.assertRaises(OSError):
            self.uplink.flush(st, self.save)
        self.assertEqual([e[0] for e in st["q"]], [entry(2)[0], entry(3)[0]])
        self.assertGreater(self.saves, 0, "acknowledged lines must leave the saved state at once")
        self.uplink.flush(st, self.save)
        self.assertEqual(st["q"], [])
        self.assertEqual(len(self.peer.journal), 4)
        self.assertEqual(self.peer.journal[0], "1795255200000,20.0,1000,40,0")
        self.assertEqual(self.peer.connections, 2)

    def test_a_refused_line_is_dropped_and_counted(self):
        st = {"q": [entry(0), entry(1)]}
        # A node configured with one column too many: every line refused.
        odd = LineUplink("127.0.0.1", self.peer.port, COLUMNS + ["extra"])
        odd.flush(st, self.save)
        self.assertEqual(st["q"], [])
        self.assertEqual(st["refused"], 2)
        self.assertEqual(len(self.peer.refused), 2)


def load_node(port):
    cfg = types.ModuleType("config")
    with open(os.path.join(NODE_DIR, "config.py")) as f:
        exec(f.read(), cfg.__dict__)
    cfg.GATEWAY = "127.0.0.1"
    cfg.PORT = port
    cfg.MIN_INTERVAL_S = 2
    cfg.START_INTERVAL_S = 4
    cfg.MAX_INTERVAL_S = 60
    sys.modules["config"] = cfg
    spec = importlib.util.spec_from_file_location("tcp_node_main", os.path.join(NODE_DIR, "main.py"))
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    return main


def run_node(test, port, proxy, wakes=48):
    """The node's main loop for `wakes` wakes, a cut inside a line at wake
    10 and at wake 30, then stable readings until its queue is empty.
    Returns the readings it decided to send."""
    random.seed(0x5EED)
    machine.power_cycle()
    mpy_time.reset()
    main = load_node(port)
    sent = []
    rng = random.Random(17)
    t, p, h, g = 21.0, 1013.0, 45.0, 120000

    def wake(reading):
        bme680.readings.append(reading)
        node = main.build()
        decide = node.policy.decide

        def recording(st, values, *args):
            send, interval = decide(st, values, *args)
            if send:
                sent.append(values)
            return send, interval

        node.policy.decide = recording
        with test.assertRaises(machine.DeepSleep):
            main.main(node)

    for i in range(wakes):
        if i in (10, 30):
            proxy.cut_at = 2  # inside the second line of the next connection
        t = round(t + rng.choice((-1, 1)) * rng.uniform(0.3, 1.0), 2)
        p = round(p + rng.uniform(-2, 2), 2)
        h = round(min(95, max(5, h + rng.choice((-1, 1)) * rng.uniform(1.2, 3))), 2)
        g += rng.choice((-1, 1)) * 6000
        wake((t, p, h, g))
    for _ in range(40):
        st = json.loads(machine.RTC().memory())
        if not st.get("q") and "retry_at" not in st:
            break
        wake((t, p, h, g))
    st = json.loads(machine.RTC().memory())
    test.assertEqual(st.get("q"), [], "lines left on the node")
    test.assertEqual(proxy.cuts, 2, "the cuts did not happen")
    return sent


class NodeLoopAgainstTheContract(unittest.TestCase):
    def test_no_line_lost_or_doubled_across_cuts_inside_a_line(self):
        peer = line_peer.FakeLineGateway(COLUMNS)
        self.addCleanup(peer.close)
        proxy = line_peer.LineProxy(peer.port)
        self.addCleanup(proxy.close)
        sent = run_node(self, proxy.port, proxy)
        self.assertEqual(len(sent), 48)
        got = [float(line.split(",")[1]) for line in peer.journal]
        self.assertEqual(got, [v["temperature"] for v in sent])


TCP_LINE_CONFIG = """
[[adapter]]
type = "tcp_line"
name = "bme680-tcp"
bind = "127.0.0.1:{port}"
format = "csv"
columns = ["ts", "temperature", "pressure", "humidity", "gas"]
device = "bme680-lab"
ack = true
"""


def gateway_refuses_tcp_line(config_text):
    """The gateway's own verdict on a tcp_line adapter (edge-gateway validate)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "gateway.toml")
        with open(path, "w") as f:
            f.write(config_text.replace("@STATE_DIR@", os.path.join(d, "state")))
        out = subprocess.run(
            [support.gateway_binary(), "validate", "-c", path],
            capture_output=True,
            text=True,
            timeout=support.WAIT_S,
        )
    if out.returncode == 0:
        return None
    return (out.stdout + out.stderr).strip()


class NodeLoopAgainstTheGateway(unittest.TestCase):
    """The real `tcp_line` adapter, `ack = true`, with the node's own main loop."""

    def test_no_line_lost_or_doubled_across_cuts_inside_a_line(self):
        broker = support.Mosquitto()
        self.addCleanup(broker.close)
        line_port, metrics = support.free_port(), support.free_port()
        cfg = gateway.config("gw-fw-tcp", broker.port, metrics) + TCP_LINE_CONFIG.format(port=line_port)
        # A gateway that refused the adapter would make this test pass
        # vacuously: it must accept it.
        self.assertIsNone(gateway_refuses_tcp_line(cfg))
        up = gateway.Subscriber(broker.port, "building/hq/#")
        self.addCleanup(up.close)
        gw = gateway.Gateway(cfg)
        self.addCleanup(gw.close)
        self.assertTrue(support.wait_for_port(line_port, time.monotonic() + support.WAIT_S))
        proxy = line_peer.LineProxy(line_port)
        self.addCleanup(proxy.close)
        sent = run_node(self, proxy.port, proxy)
        n = len(sent)
        gateway.wait_metric(metrics, 'edge_gateway_adapter_readings_total{adapter="bme680-tcp"}', 4 * n)
        self.assertEqual(gw.stop(), 0)
        gateway.publish(broker.port, "building/hq/test/marker", "end")
        got = up.collect(lambda m: ("building/hq/test/marker", "end") in m)
        aggs = gateway.aggregates(got, "bme680-lab")
        for metric in ("temperature", "pressure", "humidity", "gas"):
            count = sum(a["metrics"][metric]["count"] for a in aggs if metric in a["metrics"])
            self.assertEqual(count, n, metric)


TIMELESS_COLUMNS = ["temperature", "pressure", "humidity", "gas"]
TIMELESS_CONFIG = """
[[adapter]]
type = "tcp_line"
name = "bme680-timeless"
bind = "127.0.0.1:{port}"
format = "csv"
columns = ["temperature", "pressure", "humidity", "gas"]
device = "bme680-timeless"
ack = true
"""
TIMELESS_ADAPTER = '{adapter="bme680-timeless"}'


class FullTmpfs:
    """A small tmpfs filled to the last byte: a state directory on an SD
    card with no space left. Mounting needs root."""

    def __init__(self, at):
        self.at = at
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", at], check=True)
        self.filler = os.path.join(at, "filler")
        with open(self.filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    def free(self):
        os.remove(self.filler)

    def close(self):
        subprocess.run(["umount", "-l", self.at], check=False)


class HeldTimelessLineAgainstTheGateway(unittest.TestCase):
    """The node's uplink with lines that carry no time (no `ts` column: the
    gateway stamps their arrival) against the real gateway, whose state
    directory is full: it holds each line unanswered, the node gives up
    after its timeout, closes, and sends its queue again on its next wake
    with a new reading that happens to be equal. Each reading counted once."""

    def test_lines_resent_while_held_are_counted_once_and_an_equal_new_one_too(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs as a full state directory needs root")
        broker = support.Mosquitto()
        self.addCleanup(broker.close)
        state = tempfile.mkdtemp(prefix="fw-full-state-")
        self.addCleanup(os.rmdir, state)
        disk = FullTmpfs(state)
        self.addCleanup(disk.close)
        line_port, metrics = support.free_port(), support.free_port()
        cfg = gateway.config("gw-fw-timeless", broker.port, metrics) + TIMELESS_CONFIG.format(port=line_port)
        # Journaled (acknowledged only once on disk), unlike `config`'s
        # default, which keeps nothing on disk and answers at once; windows
        # short enough to close while the test watches.
        for default, here in (
            ('checkpoint_interval = "0s"', 'checkpoint_interval = "1s"'),
            ('window = "1h"', 'window = "1s"'),
            ('grace = "1h"', 'grace = "2s"'),
        ):
            self.assertIn(default, cfg)
            cfg = cfg.replace(default, here)
        cfg = cfg.replace("@STATE_DIR@", state)
        up = gateway.Subscriber(broker.port, "building/hq/#")
        self.addCleanup(up.close)
        gw = gateway.Gateway(cfg)
        self.addCleanup(gw.close)
        self.assertTrue(support.wait_for_port(line_port, time.monotonic() + support.WAIT_S))

        # The reference node waits 5 s for an `ok`; less here.
        uplink = LineUplink("127.0.0.1", line_port, TIMELESS_COLUMNS, timeout_s=1.5)
        values = {"temperature": 21.5, "pressure": 1013.0, "humidity": 45.0, "gas": 12000}
        st = {"q": [[None, dict(values)]]}
        # First wake: held, no `ok` in time, the socket closed.
        with self.assertRaises(OSError):
            uplink.flush(st, lambda: None)
        self.assertEqual(len(st["q"]), 1)
        gateway.wait_metric(metrics, "edge_gateway_line_unanswered_lines" + TIMELESS_ADAPTER, 1)
        # Second wake: the queue again, with a new equal reading; still held.
        st["q"].append([None, dict(values)])
        with self.assertRaises(OSError):
            uplink.flush(st, lambda: None)
        self.assertEqual(len(st["q"]), 2)
        gateway.wait_metric(metrics, "edge_gateway_line_unanswered_lines" + TIMELESS_ADAPTER, 2)
        # Space again; third wake: both answered, nothing left to send.
        disk.free()
        uplink.flush(st, lambda: None)
        self.assertEqual(st["q"], [])
        # Every `ok` came after what it covers was counted: two readings of
        # four values, however many times they were sent.
        taken = gateway.metric_value(metrics, "edge_gateway_aggregator_readings_total")
        self.assertEqual(taken, 2 * len(TIMELESS_COLUMNS))
        dups = gateway.metric_value(metrics, "edge_gateway_ingress_duplicates_total")
        self.assertEqual(dups, 3, "the first line resent twice, the second once")

        def counts(got):
            aggs = gateway.aggregates(got, "bme680-timeless")
            return [sum(a["metrics"][m]["count"] for a in aggs if m in a["metrics"]) for m in TIMELESS_COLUMNS]

        got = up.collect(lambda m: min(counts(m)) >= 2, timeout=30)
        # Whatever else is on its way: a copy must not add to the count.
        gateway.publish(broker.port, "building/hq/test/marker", "end")
        got += up.collect(lambda m: ("building/hq/test/marker", "end") in m)
        self.assertEqual(gw.stop(), 0)
        self.assertEqual(counts(got), [2] * len(TIMELESS_COLUMNS))


if __name__ == "__main__":
    unittest.main()
