"""battery_life.py computes; it does not repeat the seed course's figures."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import battery_life as bl  # noqa: E402


class SeedProfiles(unittest.TestCase):
    def test_seed_wifi_profile_gives_044_ma_and_078_years_not_the_printed_0366_and_09(self):
        avg, years = bl.SEED_WIFI.average_ma(), bl.SEED_WIFI.years()
        self.assertEqual(round(avg, 2), 0.44)
        self.assertEqual(round(years, 2), 0.78)
        printed_ma, printed_years = bl.SEED_PRINTED["wifi"]
        self.assertGreater(abs(avg - printed_ma), 0.05)
        self.assertGreater(abs(years - printed_years), 0.1)

    def test_seed_lora_profile_gives_0095_ma_and_36_years_not_the_printed_103(self):
        avg, years = bl.SEED_LORA.average_ma(), bl.SEED_LORA.years()
        self.assertEqual(round(avg, 3), 0.095)
        self.assertEqual(round(years, 1), 3.6)
        self.assertGreater(abs(years - bl.SEED_PRINTED["lora"][1]), 5)


class Airtime(unittest.TestCase):
    def test_published_airtimes(self):
        # Semtech LoRa calculator / TTN airtime calculator: a 10-byte
        # application payload (23-byte PHY) at 125 kHz, CR 4/5, 8 preamble
        # symbols, explicit header, CRC on.
        self.assertAlmostEqual(bl.lora_airtime_s(23, 7), 0.061696, places=6)
        self.assertAlmostEqual(bl.lora_airtime_s(23, 12), 1.482752, places=6)
        # SF11/12 turn on low data rate optimisation; SF10 does not.
        self.assertAlmostEqual(bl.lora_airtime_s(23, 10), 0.370688, places=6)

    def test_airtime_grows_with_spreading_factor_and_payload(self):
        for sf in range(7, 12):
            self.assertLess(bl.lora_airtime_s(18, sf), bl.lora_airtime_s(18, sf + 1))
        self.assertLess(bl.lora_airtime_s(18, 7), bl.lora_airtime_s(60, 7))
        with self.assertRaises(ValueError):
            bl.lora_airtime_s(18, 13)


class Profiles(unittest.TestCase):
    def test_average_is_charge_over_interval(self):
        p = bl.Profile("x", [("on", 100.0, 1.0)], 0.0, 100, 1000)
        self.assertAlmostEqual(p.average_ma(), 1.0)
        self.assertAlmostEqual(p.hours(), 1000.0)
        with self.assertRaises(ValueError):
            bl.Profile("x", [("on", 1.0, 10.0)], 0.0, 5, 1000)

    def test_batching_and_lower_sf_last_longer(self):
        self.assertGreater(bl.wifi_profile(batch=6).years(), 3 * bl.wifi_profile(batch=1).years())
        self.assertGreater(bl.lora_profile(sf=7).years(), bl.lora_profile(sf=12).years())

    def test_cli_prints_every_profile(self):
        out = subprocess.run(
            [sys.executable, bl.__file__], capture_output=True, text=True, timeout=20, check=True
        ).stdout
        self.assertIn("average 0.4400 mA", out)
        self.assertIn("0.78 years", out)
        self.assertIn("3.60 years", out)
        self.assertEqual(out.count("average"), len(bl.default_profiles()))


if __name__ == "__main__":
    unittest.main()
