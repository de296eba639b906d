"""The LoRaWAN sketch's C encoders (nodes/lorawan-lmic/seed_frames.h),
compiled with the host's C compiler, give wire.py's bytes for random
readings and refuse the same values."""
import os
import shutil
import subprocess
import tempfile
import unittest

import frame_cases
import support

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

    def test_random_readings_match_wire_py(self):
        lines, want = frame_cases.cases()
        got = self.run_harness(lines)
        for line, g, w in zip(lines, got, want):
            self.assertEqual(frame_cases.normalise(g), w, line[:80])

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
