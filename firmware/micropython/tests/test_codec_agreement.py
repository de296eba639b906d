"""firmware/codec (Rust, no_std) and wire.py make the same bytes for the
same readings, and refuse the same values: the crate's `encode` example
against frame_cases' random readings. With test_lmic_frames (C) this holds
the three encoders of the project to one another byte for byte, beyond the
gateway's decoders, which accept anything within a resolution step."""
import os
import shutil
import subprocess
import unittest

import frame_cases
import support

CODEC = os.path.join(support.FIRMWARE, "codec")


class RustAndPythonAgree(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("cargo"):
            raise unittest.SkipTest("no cargo: install Rust (rustup) to compare firmware/codec")
        subprocess.run(
            ["cargo", "build", "-q", "--example", "encode", "--manifest-path", os.path.join(CODEC, "Cargo.toml")],
            check=True,
            timeout=600,
        )
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(CODEC, "target")
        cls.exe = os.path.join(target, "debug", "examples", "encode")

    def test_random_readings_make_the_same_bytes(self):
        lines, want = frame_cases.cases(seed=5)
        out = subprocess.run(
            [self.exe], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60, check=True
        )
        got = out.stdout.split("\n")[: len(lines)]
        self.assertEqual(len(got), len(lines))
        for line, g, w in zip(lines, got, want):
            self.assertEqual(frame_cases.normalise(g), w, line[:80])


if __name__ == "__main__":
    unittest.main()
