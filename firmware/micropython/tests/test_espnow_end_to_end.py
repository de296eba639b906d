"""ESP-NOW end to end: two ESP-NOW client nodes (their own main loops),
the relay's own code writing to a real pseudo-terminal (socat), the real
gateway's `serial_line` adapter on the other end naming each client by its
MAC through `[[device]]`, and a real Mosquitto upstream.

Only the ESP-NOW air between clients and relay is stood in for: it loses
some frames outright and, worse, loses the acknowledgement of others that
did arrive, so the client sends them again. Every reading a client sent
must reach the upstream exactly once."""
import os
import random
import shutil
import subprocess
import tempfile
import time
import unittest

import gateway
import machine
import mpy_time
import relay
import support
from test_other_nodes import load

CLIENTS = {"kitchen": "24:0a:c4:12:34:56", "bedroom": "24:0a:c4:ab:cd:ef"}
RELAY_MAC = "24:0a:c4:00:00:01"

SERIAL_CONFIG = """
[[adapter]]
type = "serial_line"
name = "espnow"
path = "{port}"
baud = 115200
format = "csv"
columns = ["mac", "ts", "temperature", "humidity", "battery"]
max_backoff = "200ms"

[[device]]
id = "{kitchen}"
name = "Kitchen"
room = "kitchen"

[[device]]
id = "{bedroom}"
name = "Bedroom"
room = "bedroom"
"""


class Air:
    """ESP-NOW between the clients and the relay. `fate` says what happens
    to each frame: delivered and acked, lost, or delivered with its ack lost."""

    def __init__(self, fate):
        self.fate = fate
        self.in_flight = []  # (client mac, frame) heard by the relay
        self.delivered = 0

    def client(self, mac):
        air = self

        class Radio:
            def send(self, peer, msg, sync=True):
                assert bytes(peer) == bytes.fromhex(RELAY_MAC.replace(":", ""))
                what = air.fate()
                if what != "lost":
                    air.in_flight.append((bytes.fromhex(mac.replace(":", "")), bytes(msg)))
                    air.delivered += 1
                return what == "ok"

        return Radio()

    def recv(self, timeout_ms):
        if not self.in_flight:
            return None, None
        return self.in_flight.pop(0)


class PtyPair:
    """socat linking two pseudo-terminals: `port` for the gateway, `board`
    for the relay's USB side."""

    def __init__(self, directory):
        if shutil.which("socat") is None:
            raise AssertionError("socat is required (apt-get install socat; scripts/test.sh installs it)")
        self.port = os.path.join(directory, "ttyRELAY")
        self.board = os.path.join(directory, "ttyBOARD")
        self.proc = subprocess.Popen(
            ["socat", "pty,raw,echo=0,link=" + self.port, "pty,raw,echo=0,link=" + self.board],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # socat gives no signal when its links exist; poll, bounded.
        deadline = time.monotonic() + support.WAIT_S
        while not (os.path.exists(self.port) and os.path.exists(self.board)):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("socat made no pseudo-terminal links")
            support.select_pause(0.02)

    def close(self):
        self.proc.terminate()
        self.proc.wait()


class RelayToGateway(unittest.TestCase):
    def test_every_reading_of_two_clients_arrives_once_named_by_mac(self):
        tmp = tempfile.TemporaryDirectory(prefix="fw-espnow-")
        self.addCleanup(tmp.cleanup)
        pty = PtyPair(tmp.name)
        self.addCleanup(pty.close)
        broker = support.Mosquitto()
        self.addCleanup(broker.close)
        metrics = support.free_port()
        cfg = gateway.config("gw-fw-espnow", broker.port, metrics) + SERIAL_CONFIG.format(
            port=pty.port, **CLIENTS
        )
        up = gateway.Subscriber(broker.port, "building/hq/#")
        self.addCleanup(up.close)
        gw = gateway.Gateway(cfg)
        self.addCleanup(gw.close)
        gw.wait_for_log("Serial port open.")

        board = open(pty.board, "wb", buffering=0)
        self.addCleanup(board.close)
        # What the relay prints at boot: the gateway counts it as a bad line.
        board.write(b"relay-mac " + RELAY_MAC.encode() + b"\n")

        rng = random.Random(0x0E5B)
        fates = ["ok"] * 8 + ["lost", "ack-lost"]
        air = Air(lambda: rng.choice(fates))
        printed = []

        def usb(line):
            printed.append(line)
            board.write(line.encode())

        the_relay = relay.Relay(air, usb)

        mpy_time.reset()
        sent = {mac: [] for mac in CLIENTS.values()}
        rtc = {mac: b"" for mac in CLIENTS.values()}
        temperature = {mac: 20.0 for mac in CLIENTS.values()}
        for wake in range(60):
            mac = list(CLIENTS.values())[wake % 2]
            # Each board has its own RTC memory; the stub has one.
            machine._rtc_memory = rtc[mac]
            temperature[mac] = round(temperature[mac] + rng.choice((-1, 1)) * rng.uniform(0.3, 1.0), 2)
            values = {"temperature": temperature[mac], "humidity": round(rng.uniform(35, 60), 1), "battery": 3.3}
            main = load("espnow-client", RELAY_MAC=RELAY_MAC, MIN_INTERVAL_S=30, START_INTERVAL_S=60, MAX_INTERVAL_S=120)
            node = main.build(sensor=lambda: (dict(values), 3.3), esp=air.client(mac))
            node.log = lambda message: None  # the lost acks are on purpose
            decide = node.policy.decide

            def recording(st, vals, *args, mac=mac):
                send, interval = decide(st, vals, *args)
                if send:
                    sent[mac].append(vals)
                return send, interval

            node.policy.decide = recording
            with self.assertRaises(machine.DeepSleep):
                main.main(node)
            rtc[mac] = machine._rtc_memory
            while the_relay.step():
                pass
        # Retries of what the air lost, until both queues are empty.
        for _ in range(40):
            if all(b'"q": []' in rtc[m] or b'"q":[]' in rtc[m] for m in rtc):
                break
            for mac in CLIENTS.values():
                machine._rtc_memory = rtc[mac]
                main = load("espnow-client", RELAY_MAC=RELAY_MAC, MIN_INTERVAL_S=30, START_INTERVAL_S=60, MAX_INTERVAL_S=120)
                node = main.build(sensor=lambda: ({"temperature": None, "humidity": None, "battery": 3.3}, 3.3), esp=air.client(mac))
                node.log = lambda message: None
                with self.assertRaises(machine.DeepSleep):
                    main.main(node)
                rtc[mac] = machine._rtc_memory
                while the_relay.step():
                    pass
        for mac in CLIENTS.values():
            self.assertRegex(rtc[mac].decode(), r'"q": ?\[\]', "readings left on %s" % mac)

        n = sum(len(v) for v in sent.values())
        self.assertGreater(air.delivered, n, "no acknowledgement was lost: the test proves nothing")
        # Every field the relay printed is a reading for the adapter, copies
        # included; once all are in, the copies have been judged too.
        fields = sum(1 for line in printed for f in line.strip().split(",")[2:] if f)
        gateway.wait_metric(metrics, 'edge_gateway_adapter_readings_total{adapter="espnow"}', fields)
        self.assertEqual(gw.stop(), 0)
        gateway.publish(broker.port, "building/hq/test/marker", "end")
        got = up.collect(lambda m: ("building/hq/test/marker", "end") in m)
        for room, mac in CLIENTS.items():
            aggs = gateway.aggregates(got, mac)
            self.assertTrue(aggs, "no aggregates for %s" % mac)
            self.assertTrue(all(a.get("name") == room.capitalize() for a in aggs), aggs[:1])
            for metric in ("temperature", "humidity"):
                want = [v[metric] for v in sent[mac] if v.get(metric) is not None]
                count = sum(a["metrics"][metric]["count"] for a in aggs if metric in a["metrics"])
                total = sum(a["metrics"][metric]["avg"] * a["metrics"][metric]["count"] for a in aggs if metric in a["metrics"])
                self.assertEqual(count, len(want), "%s %s" % (mac, metric))
                self.assertAlmostEqual(total, sum(want), places=6)


if __name__ == "__main__":
    unittest.main()
