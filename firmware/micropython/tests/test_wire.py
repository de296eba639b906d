"""wire.py against the gateway: published vectors encode to their bytes, and
random readings come back from the real `edge-gateway decode --codec ...`
with the values sent, within each format's resolution."""
import json
import os
import random
import subprocess
import unittest

import support
import wire


def vectors(name):
    with open(os.path.join(support.VECTORS, name)) as f:
        return json.load(f)


def decode(codec, payload):
    """`edge-gateway decode --codec codec HEX`: [(metric, value, time or None)]."""
    out = subprocess.run(
        [support.gateway_binary(), "decode", "--codec", codec, payload.hex()],
        capture_output=True,
        text=True,
        timeout=support.WAIT_S,
    )
    if out.returncode != 0:
        raise AssertionError("decode %s %s: %s" % (codec, payload.hex(), out.stderr))
    rows = []
    for line in out.stdout.splitlines():
        metric, _, rest = line.partition(" = ")
        value, _, when = rest.partition(" @ ")
        rows.append((metric, float(value), when or None))
    return rows


def epoch_of(rfc3339):
    import calendar
    import time as _t

    return calendar.timegm(_t.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


class Frames(unittest.TestCase):
    def test_documented_seed_frames(self):
        # docs/lorawan.md and the gateway's own decoder tests.
        self.assertEqual(wire.compact_i16(21.5, 40, 3.3).hex(), "00d728014a")
        self.assertEqual(wire.compact_i16(-10.0, 255, 655.35).hex(), "ff9cffffff")
        self.assertEqual(wire.bitpacked(21.5, 40, 85).hex(), "535154")
        self.assertEqual(wire.bitpacked(-20, 127, 127).hex(), "00fffc")
        self.assertEqual(
            wire.batch(1795146752, [(0, 21.5), (60, -1.0)]).hex(),
            "026affc4000000000000d7003cfffffff6",
        )
        self.assertEqual(wire.batch(1, []).hex(), "0000000001")

    def test_rounding_is_half_away_from_zero_not_truncation(self):
        # 21.3 * 10 == 212.99999999999997: int() would send 21.2.
        self.assertEqual(wire.compact_i16(21.3, 40, 3.3)[:2], b"\x00\xd5")
        self.assertEqual(wire.compact_i16(21.25, 40, 3.3)[:2], b"\x00\xd5")
        self.assertEqual(wire.compact_i16(-21.25, 40, 3.3)[:2], (-213).to_bytes(2, "big", signed=True))
        self.assertEqual(wire.compact_i16(21.5, 40, 3.305)[3:], (331).to_bytes(2, "big"))

    def test_values_that_do_not_fit_are_refused_not_clamped(self):
        cases = [
            (wire.compact_i16, (21.5, 256, 3.3), "humidity"),
            (wire.compact_i16, (3276.8, 40, 3.3), "temperature"),
            (wire.compact_i16, (float("nan"), 40, 3.3), "temperature"),
            (wire.compact_i16, (21.5, 40, -0.01), "battery"),
            (wire.bitpacked, (-20.3, 40, 85), "temperature"),
            (wire.bitpacked, (20, 128, 85), "humidity"),
            (wire.bitpacked, (float("inf"), 40, 85), "temperature"),
            (wire.batch, (1, [(65536, 1.0)]), "delta"),
            (wire.batch, (1, [(0, float("nan"))]), "value"),
            (wire.batch, (-1, []), "base time"),
        ]
        for fn, args, field in cases:
            with self.assertRaises(ValueError, msg=repr(args)) as e:
                fn(*args)
            self.assertIn(field, str(e.exception))
        with self.assertRaises(ValueError):
            wire.batch(0, [(0, 1.0)] * 256)
        with self.assertRaises(ValueError):
            wire.cayenne_lpp([(1, "accelerometer", 1.0)])
        with self.assertRaises(ValueError):
            wire.cayenne_lpp([(1, "thermometer", 1.0)])

    def test_batch_capacity_by_payload_size(self):
        self.assertEqual(wire.batch_capacity(51), 7)  # EU868 DR0-2
        self.assertEqual(wire.batch_capacity(242), 39)  # EU868 DR5+
        self.assertEqual(wire.batch_capacity(4), 0)
        self.assertEqual(wire.batch_capacity(10_000), 255)


class PublishedVectors(unittest.TestCase):
    def test_cayenne_lpp_vectors_are_what_wire_encodes(self):
        doc = vectors("cayenne_lpp.json")
        self.assertGreaterEqual(len(doc["vectors"]), 3)
        for v in doc["vectors"]:
            channels = [(e["channel"], e["type"], e["value"]) for e in v["expected"]]
            self.assertEqual(wire.cayenne_lpp(channels).hex(), v["payload_hex"], v["id"])

    def test_bthome_v2_vectors_are_what_wire_encodes(self):
        doc = {v["id"]: v for v in vectors("bthome_v2.json")["vectors"]}
        # Objects in their on-air order (the published examples are not all
        # ascending: the battery of triple-temp... comes last).
        rows = {
            "temp-humidity": [("temperature", 25.06), ("humidity", 50.55)],
            "packetid-temp-hum-battery": [
                ("packet_id", 9),
                ("battery", 93),
                ("temperature", 23.97),
                ("humidity", 63.27),
            ],
            "triple-temp-double-hum-battery": [
                ("temperature", 25.06),
                ("temperature", 25.11),
                ("temperature", 22.55),
                ("humidity", 63.27),
                ("humidity", 60.71),
                ("battery", 93),
            ],
            "pressure": [("pressure", 1008.83)],
            "co2": [("co2", 1250)],
            "temperature-sint8": [("temperature_coarse", -22)],
            "binary-window-open": [("window", 1)],
        }
        for vid, objects in rows.items():
            self.assertEqual(wire.bthome_v2(objects).hex(), doc[vid]["service_data_hex"], vid)
        full = doc["bthome-io-format-example-full-adv"]
        adv = wire.bthome_advertisement([("temperature", 25.0), ("humidity", 50.55)], name="DIY-sensor")
        self.assertEqual(adv.hex(), full["adv_payload_hex"].lower())


class GatewayDecodesWhatWireEncodes(unittest.TestCase):
    """Random readings through the gateway's own decoder CLI."""

    N = 150

    def setUp(self):
        self.rng = random.Random(0x5EED)

    def check(self, got, sent, step, what):
        self.assertLessEqual(abs(got - sent), step / 2 + 1e-9, "%s: sent %r, decoded %r" % (what, sent, got))

    def test_compact_i16(self):
        for _ in range(self.N):
            t, h, b = self.rng.uniform(-40, 85), self.rng.uniform(0, 100), self.rng.uniform(2.5, 4.2)
            got = {m: v for m, v, _ in decode("compact_i16", wire.compact_i16(t, h, b))}
            self.check(got["temperature"], t, 0.1, "temperature")
            self.check(got["humidity"], h, 1, "humidity")
            self.check(got["battery"], b, 0.01, "battery")

    def test_bitpacked(self):
        for _ in range(self.N):
            t, h, b = self.rng.uniform(-20, 107.5), self.rng.uniform(0, 100), self.rng.uniform(0, 100)
            got = {m: v for m, v, _ in decode("bitpacked", wire.bitpacked(t, h, b))}
            self.check(got["temperature"], t, 0.5, "temperature")
            self.check(got["humidity"], h, 1, "humidity")
            self.check(got["battery"], b, 1, "battery")

    def test_batch(self):
        for _ in range(self.N // 3):
            base = self.rng.randrange(1_600_000_000, 2_000_000_000)
            readings = [
                (self.rng.randrange(0, 65536), self.rng.uniform(-1e5, 1e5))
                for _ in range(self.rng.randrange(0, 40))
            ]
            got = decode("batch", wire.batch(base, readings))
            self.assertEqual(len(got), len(readings))
            for (delta, sent), (metric, value, when) in zip(readings, got):
                self.assertEqual(metric, "value")
                self.check(value, sent, 0.1, "value")
                self.assertEqual(epoch_of(when), base + delta)

    def test_cayenne_lpp(self):
        ranges = {
            "digital_in": (0, 255, 1),
            "analog_in": (-327, 327, 0.01),
            "luminosity": (0, 65535, 1),
            "temperature": (-3276, 3276, 0.1),
            "relative_humidity": (0, 127.5, 0.5),
            "accelerometer": (-32, 32, 0.001),
            "barometric_pressure": (0, 6553, 0.1),
            "voltage": (0, 655, 0.01),
            "current": (0, 65, 0.001),
            "altitude": (-32768, 32767, 1),
            "distance": (0, 4e6, 0.001),
            "gyrometer": (-327, 327, 0.01),
            "gps": (-90, 90, 0.0001),
            "concentration": (0, 65535, 1),
            "unix_time": (0, 4e9, 1),
            "colour": (0, 255, 1),
        }
        parts = {
            "accelerometer": ("x", "y", "z"),
            "gyrometer": ("x", "y", "z"),
            "gps": ("latitude", "longitude", "altitude"),
            "colour": ("r", "g", "b"),
        }
        names = sorted(ranges)
        for _ in range(self.N // 3):
            channels, sent = [], []
            for ch in range(self.rng.randrange(1, 8)):
                name = self.rng.choice(names)
                lo, hi, step = ranges[name]
                if name in parts:
                    vals = [self.rng.uniform(lo, hi) for _ in range(3)]
                    channels.append((ch, name, vals))
                    for i, (p, v) in enumerate(zip(parts[name], vals)):
                        sent.append(("%s_%d_%s" % (name, ch, p), v, 0.01 if name == "gps" and i == 2 else step))
                else:
                    v = self.rng.uniform(lo, hi)
                    channels.append((ch, name, v))
                    sent.append(("%s_%d" % (name, ch), v, step))
            got = decode("cayenne_lpp", wire.cayenne_lpp(channels))
            self.assertEqual([m for m, _, _ in got], [m for m, _, _ in sent])
            for (m, v, step), (_, value, _) in zip(sent, got):
                self.check(value, v, step, m)

    def test_bthome_v2(self):
        # (wire's name, lowest, highest, resolution, the gateway's name)
        objects = [
            ("battery", 0, 100, 1, "battery"),
            ("temperature", -40, 85, 0.01, "temperature"),
            ("humidity", 0, 100, 0.01, "humidity"),
            ("pressure", 300, 1100, 0.01, "pressure"),
            ("illuminance", 0, 100000, 0.01, "illuminance"),
            ("voltage", 0, 3.6, 0.001, "voltage"),
            ("co2", 400, 5000, 1, "co2"),
        ]
        for i in range(self.N // 3):
            sent = [(name, self.rng.uniform(lo, hi), step, ours) for name, lo, hi, step, ours in objects]
            payload = wire.bthome_v2([("packet_id", i % 256)] + [(n, v) for n, v, _, _ in sent])
            out = subprocess.run(
                [support.gateway_binary(), "decode", "--ble", payload.hex(), "--mac", "54:48:E6:8F:80:A5"],
                capture_output=True,
                text=True,
                timeout=support.WAIT_S,
            )
            self.assertEqual(out.returncode, 0, out.stderr)
            got = json.loads(out.stdout)
            self.assertEqual(got["format"], "bthome")
            self.assertNotIn("stopped", got, "the decoder stopped early: %s" % payload.hex())
            self.assertEqual(sorted(got["values"]), sorted(ours for _, _, _, ours in sent))
            for name, v, step, ours in sent:
                self.check(got["values"][ours], v, step, name)


class TextForms(unittest.TestCase):
    def test_csv_json_senml(self):
        cols = ["ts", "temperature", "pressure", "humidity", "gas"]
        line = wire.csv_line(
            {"ts": 1795255200000, "temperature": 21.3, "pressure": None, "humidity": float("nan"), "gas": 12000},
            cols,
        )
        self.assertEqual(line, "1795255200000,21.3,,,12000")
        self.assertEqual(
            json.loads(wire.json_object({"temperature": 21.5, "bad": float("inf")}, ts=1795255200000)),
            {"temperature": 21.5, "ts": 1795255200000},
        )
        pack = wire.senml_pack(
            [
                ("temperature", 21.5, 1795255200.5),
                ("humidity", 40, 1795255200.5),
                ("temperature", 21.7, 1795255260.5),
                ("gas", None, 1795255260.5),
            ]
        )
        self.assertEqual(
            pack,
            '[{"bt":1795255200.5,"n":"temperature","v":21.5},{"n":"humidity","v":40},'
            '{"bt":1795255260.5,"n":"temperature","v":21.7}]',
        )
        self.assertEqual(wire.senml_pack([]), "[]")
        self.assertEqual(
            json.loads(wire.senml_pack([("t", 1.0, None)], base_name="urn:dev:mac:240ac4123456:")),
            [{"bn": "urn:dev:mac:240ac4123456:", "n": "t", "v": 1.0}],
        )
        # Booleans are numbers to the gateway.
        self.assertEqual(wire.number(True), "1")
        self.assertEqual(wire.number(2.5), "2.5")


if __name__ == "__main__":
    unittest.main()
