"""The LoRaWAN sketch's C encoders (nodes/lorawan-lmic/seed_frames.h),
compiled with the host's C compiler, give wire.py's bytes for random
readings and refuse the same values."""
import os
import random
import shutil
import subprocess
import tempfile
import unittest

import support
import wire

HEADER_DIR = os.path.join(support.FIRMWARE, "nodes", "lorawan-lmic")


class LmicFrames(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if not cc:
            raise unittest.SkipTest("no C compiler: apt-get install -y gcc")
        cls.dir = tempfile.TemporaryDirectory(prefix="fw-lmic-")
        cls.exe = os.path.join(cls.dir.name, "harness")
        subprocess.run(
            [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-I", HEADER_DIR,
             os.path.join(support.HERE, "lmic_harness.c"), "-o", cls.exe],
            check=True,
            timeout=60,
        )

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def run_harness(self, lines):
        out = subprocess.run(
            [self.exe], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30, check=True
        )
        return out.stdout.split("\n")[: len(lines)]

    def expected(self, fn, *args):
        try:
            return fn(*args).hex()
        except ValueError:
            return "err"

    def test_random_readings_match_wire_py(self):
        rng = random.Random(4)
        lines, want = [], []
        for _ in range(3000):
            # Some out of range on purpose: both must refuse them.
            t, h, b = rng.uniform(-45, 110), rng.uniform(-5, 260), rng.uniform(-0.5, 5)
            lines.append("c %r %r %r" % (t, h, b))
            want.append(self.expected(wire.seed_compact, t, h, b))
            bp = rng.uniform(-5, 130)
            lines.append("p %r %r %r" % (t, h, bp))
            want.append(self.expected(wire.seed_bitpacked, t, h, bp))
        for _ in range(200):
            base = rng.randrange(0, 2**32)
            readings = [(rng.randrange(0, 65536), rng.uniform(-1e6, 1e6)) for _ in range(rng.randrange(0, 20))]
            lines.append("b %d %d %s" % (base, len(readings), " ".join("%d %r" % r for r in readings)))
            want.append(self.expected(wire.seed_batch, base, readings))
        got = self.run_harness(lines)
        for line, g, w in zip(lines, got, want):
            self.assertEqual(g if not g.startswith("err") else "err", w, line[:80])

    def test_edges_and_non_finite(self):
        cases = [
            ("c 21.25 40 3.3", "00d528014a"),  # half away from zero
            ("c -21.25 40 3.3", "ff2b28014a"),
            ("c 21.3 40 3.3", "00d528014a"),  # 212.99999999999997
            ("c nan 40 3.3", "err -1"),
            ("c inf 40 3.3", "err -1"),
            ("c 3276.75 40 3.3", "err -2"),
            ("p -20 127 127", "00fffc"),
            ("p 107.75 0 0", "err -2"),
            ("b 1795146752 2 0 21.5 60 -1", "026affc4000000000000d7003cfffffff6"),
        ]
        got = self.run_harness([c for c, _ in cases])
        self.assertEqual(got, [w for _, w in cases])


if __name__ == "__main__":
    unittest.main()
