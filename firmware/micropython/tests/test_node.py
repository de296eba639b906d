"""Duty cycling, backoff, the state kept across deep sleep, and one wake of
a node: the pure parts of the library, no network."""
import json
import os
import unittest

import support
import duty
import machine
import state
import wire
from backoff import Backoff
from node import MIN_SLEEP_S, Node

TH = {"temperature": 0.2}


def policy(**kw):
    args = dict(min_s=30, max_s=900, start_s=120, heartbeat_s=3600)
    args.update(kw)
    return duty.Policy(TH, **args)


class Policy(unittest.TestCase):
    def run_series(self, p, temps, dt=None, battery=None, hour=None):
        st, now, out = {}, 1_800_000_000.0, []
        for t in temps:
            send, interval = p.decide(st, {"temperature": t}, now, battery, hour)
            out.append((send, interval))
            now += interval if dt is None else dt
        return out

    def test_first_reading_and_changes_are_sent_stable_ones_are_not(self):
        out = self.run_series(policy(), [20.0, 20.1, 20.15, 20.3, 20.3])
        self.assertEqual([s for s, _ in out], [True, False, False, True, False])

    def test_a_slow_drift_is_sent_once_it_crosses_the_threshold(self):
        # 0.05 per wake: compared with the last value *sent*, the fourth
        # step (0.2 away) is sent; a sample-to-sample comparison never would.
        out = self.run_series(policy(), [20.0, 20.05, 20.1, 20.15, 20.2, 20.25])
        self.assertEqual([s for s, _ in out], [True, False, False, False, True, False])

    def test_interval_grows_when_stable_bounded_and_shrinks_on_change(self):
        p = policy()
        out = self.run_series(p, [20.0] * 30)
        intervals = [i for _, i in out]
        self.assertEqual(max(intervals), 900)
        # Growing until the cap; later, a sleep shortened to meet the hourly
        # heartbeat is the only exception.
        growth = intervals[: intervals.index(900) + 1]
        self.assertTrue(all(a <= b for a, b in zip(growth, growth[1:])), intervals)
        self.assertTrue(all(30 <= i <= 900 for i in intervals), intervals)
        st = {"last": {"temperature": 20.0}, "last_t": 0, "base": 900, "stable": 9}
        send, interval = p.decide(st, {"temperature": 25.0}, 10)
        self.assertTrue(send)
        self.assertEqual(interval, 450)
        for _ in range(10):
            st["last"]["temperature"] += 1
            _, interval = p.decide(st, {"temperature": st["last"]["temperature"] + 1}, 10)
        self.assertEqual(interval, 30)

    def test_heartbeat_sends_when_nothing_changes_and_sleep_never_overshoots_it(self):
        p = policy(heartbeat_s=1000, max_s=900)
        out = self.run_series(p, [20.0] * 40)
        now, last_sent, gaps = 1_800_000_000.0, None, []
        for send, interval in out:
            if send:
                if last_sent is not None:
                    gaps.append(now - last_sent)
                last_sent = now
            now += interval
        self.assertTrue(gaps, "no heartbeat")
        self.assertTrue(all(g <= 1000 for g in gaps), gaps)

    def test_low_battery_and_night_stretch_the_interval_within_bounds(self):
        p = policy(hour_factors=[2.0] * 6 + [1.0] * 18)
        st = {"last": {"temperature": 20.0}, "last_t": 0, "base": 120, "stable": 0}
        self.assertEqual(p.decide(dict(st), {"temperature": 20.0}, 1, 4.0, 12)[1], 120)
        self.assertEqual(p.decide(dict(st), {"temperature": 20.0}, 1, 4.0, 3)[1], 240)
        self.assertEqual(p.decide(dict(st), {"temperature": 20.0}, 1, 3.4, 12)[1], 120 * 2.5)
        self.assertEqual(p.decide(dict(st), {"temperature": 20.0}, 1, 3.0, 3)[1], 900)

    def test_configurations_that_would_hide_a_dead_node_are_refused(self):
        with self.assertRaises(ValueError):
            policy(max_s=7200, heartbeat_s=3600)
        with self.assertRaises(ValueError):
            policy(min_s=0)
        with self.assertRaises(ValueError):
            policy(hour_factors=[1.0] * 23)


class Backoffs(unittest.TestCase):
    def test_exponential_capped_with_jitter_never_near_zero(self):
        lo = Backoff(2, 60, rand=lambda: 0.0)
        hi = Backoff(2, 60, rand=lambda: 0.9999)
        self.assertEqual([lo.delay(n) for n in range(0, 8)], [0, 1, 2, 4, 8, 16, 30, 30])
        self.assertAlmostEqual(hi.delay(3), 8 * 0.99995, places=3)
        self.assertLessEqual(hi.delay(1000), 60)
        with self.assertRaises(ValueError):
            Backoff(0, 10)


class State(unittest.TestCase):
    def test_the_oldest_readings_go_first_when_rtc_memory_is_full_and_are_counted(self):
        st = {"q": [[1.0 * i, {"temperature": 20.0}] for i in range(200)]}
        data = state.encode(st, 2048)
        self.assertLessEqual(len(data), 2048)
        kept = json.loads(data)
        self.assertGreater(kept["dropped"], 0)
        self.assertEqual(kept["dropped"] + len(kept["q"]), 200)
        self.assertEqual(kept["q"][-1][0], 199.0)

    def test_the_bme680_nodes_worst_case_fits_rtc_memory(self):
        # A full queue (main.py: max_queue 10) of wide readings and a
        # 4-reading SenML message in flight, with every other key present.
        e = [1795255200.123, {"temperature": -12.34, "pressure": 1013.25, "humidity": 45.12, "gas": 1234567}]
        pack = wire.senml_pack([(m, v, e[0] + i) for i in range(4) for m, v in e[1].items()])
        st = {
            "q": [e] * 10,
            "duty": {"last": e[1], "last_t": e[0], "base": 123.456, "stable": 3},
            "wakes": 123456,
            "failures": 3,
            "retry_at": e[0],
            "dropped": 3,
            "mqtt": {"pending": [65535, "pubrel", "sensors/24:0a:c4:12:34:56", pack, 2, False], "pid": 1, "online": True},
        }
        data = state.encode(st, state.RTC_BYTES)
        self.assertEqual(len(json.loads(data)["q"]), 10, "readings dropped at the node's own limit")

    def test_rtc_and_file_state_round_trip(self):
        machine.power_cycle()
        rtc = state.RtcState()
        self.assertEqual(rtc.load(), {})
        rtc.save({"q": [[1, {"t": 2}]]})
        self.assertEqual(state.RtcState().load(), {"q": [[1, {"t": 2}]]})
        machine.RTC().memory(b"\xff garbage")
        self.assertEqual(rtc.load(), {})
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            f = state.FileState(os.path.join(d, "state.json"))
            self.assertEqual(f.load(), {})
            f.save({"a": 1})
            self.assertEqual(f.load(), {"a": 1})


class FakeUplink:
    """The node's outbound edge, recording what it was handed."""

    def __init__(self):
        self.fail = False
        self.sent = []

    def pending(self, st):
        return False

    def flush(self, st, save):
        if self.fail:
            raise OSError("unreachable")
        self.sent.append(list(st["q"]))
        dropped = st.pop("dropped", 0)
        if dropped:
            self.sent.append(("dropped", dropped))
        del st["q"][:]


class OneWake(unittest.TestCase):
    def setUp(self):
        machine.power_cycle()
        self.clock = [1_800_000_000.0]
        self.values = {"temperature": 20.0}
        self.uplink = FakeUplink()

    def node(self, **kw):
        args = dict(batch=3, max_batch_age_s=600, max_queue=5)
        args.update(kw)
        return Node(
            lambda: (dict(self.values), 4.0),
            self.uplink,
            state.RtcState(),
            policy(min_s=10, start_s=10, max_s=100, heartbeat_s=3600),
            Backoff(5, 60, rand=lambda: 0.0),
            now=lambda: self.clock[0],
            log=lambda *_: None,
            **args
        )

    def wake(self, temperature, **kw):
        self.values["temperature"] = temperature
        s = self.node(**kw).wake()
        self.clock[0] += s
        return s

    def test_readings_are_batched_across_wakes(self):
        for t in (20.0, 21.0):
            self.wake(t)
        self.assertEqual(self.uplink.sent, [])
        self.wake(22.0)
        self.assertEqual([[r[1]["temperature"] for r in batch] for batch in self.uplink.sent], [[20.0, 21.0, 22.0]])

    def test_a_failed_send_keeps_the_readings_and_backs_off(self):
        self.uplink.fail = True
        for t in (20.0, 21.0, 22.0):
            s = self.wake(t)
        st = json.loads(machine.RTC().memory())
        self.assertEqual(len(st["q"]), 3)
        self.assertEqual(st["failures"], 1)
        self.assertEqual(s, 2.5)  # the retry, sooner than the 10 s interval
        s = self.wake(23.0)  # not yet due: no attempt
        self.uplink.fail = False
        self.wake(24.0)
        self.assertEqual(len(self.uplink.sent[0]), 5)

    def test_a_full_queue_drops_the_oldest_and_says_so_upstream(self):
        self.uplink.fail = True
        for t in range(8):
            self.wake(20.0 + t)
        self.uplink.fail = False
        self.clock[0] += 100
        self.wake(30.0)
        batch, dropped = self.uplink.sent
        self.assertEqual([r[1]["temperature"] for r in batch], [24.0, 25.0, 26.0, 27.0, 30.0])
        self.assertEqual(dropped, ("dropped", 4))

    def test_a_failed_sensor_read_queues_nothing(self):
        self.values = {"temperature": None}
        self.node().wake()
        self.assertEqual(json.loads(machine.RTC().memory())["q"], [])

    def test_retries_never_ask_for_a_zero_sleep(self):
        self.uplink.fail = True
        for t in (20.0, 21.0, 22.0):
            self.wake(t)
        self.clock[0] = json.loads(machine.RTC().memory())["retry_at"] - 0.0004
        self.assertGreaterEqual(self.wake(23.0), MIN_SLEEP_S)


if __name__ == "__main__":
    unittest.main()
