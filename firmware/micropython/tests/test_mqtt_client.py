"""mqtt.py against a real Mosquitto: Last Will on an unclean drop and not on
a clean DISCONNECT, a QoS 2 message resumed after a reset between PUBREC
and PUBCOMP delivered once, and a broker that lost the session."""
import unittest

import support
import gateway
import mqtt


class Reset(Exception):
    """The board resets here (a brown-out in the middle of a send)."""


class Client(unittest.TestCase):
    def setUp(self):
        self.broker = support.Mosquitto()
        self.addCleanup(self.broker.close)
        self.sub = gateway.Subscriber(self.broker.port, "t/#")
        self.addCleanup(self.sub.close)
        # The subscription is in place once a retained probe comes back.
        gateway.publish(self.broker.port, "t/probe", "x", retain=True)
        self.sub.collect(lambda m: ("t/probe", "x") in m)

    def client(self, **kw):
        args = dict(
            client_id="node-test",
            server="127.0.0.1",
            port=self.broker.port,
            will=("t/status", "offline", True, 1),
            timeout_s=5,
        )
        args.update(kw)
        return mqtt.MQTTClient(**args)

    def until_marker(self):
        gateway.publish(self.broker.port, "t/marker", "end")
        return self.sub.collect(lambda m: ("t/marker", "end") in m)

    def test_last_will_on_an_unclean_drop_only(self):
        c = self.client()
        self.assertFalse(c.connect())
        c.publish("t/status", "online", qos=1, retain=True)
        c.disconnect()  # clean: no Will
        c.connect()
        c.close()  # a vanished node: the Will
        got = self.until_marker()
        statuses = [p for t, p in got if t == "t/status"]
        self.assertEqual(statuses, ["online", "offline"])

    def test_qos2_resumed_after_a_reset_between_pubrec_and_pubcomp_is_delivered_once(self):
        saved = {}
        c = self.client()
        self.assertFalse(c.connect())

        def reset_after_pubrec():
            saved["pending"] = list(c.pending)
            raise Reset()

        c.on_progress = reset_after_pubrec
        with self.assertRaises(Reset):
            c.publish("t/data", "reading-1", qos=2)
        c.close()
        self.assertEqual(saved["pending"][1], "pubrel")
        # After the reset: a new client from the saved state.
        c2 = self.client(pending=saved["pending"], next_pid=c.next_pid)
        self.assertTrue(c2.connect(), "the broker kept the session")
        self.assertIsNone(c2.pending)
        c2.publish("t/data", "reading-2", qos=2)
        c2.disconnect()
        data = [p for t, p in self.until_marker() if t == "t/data"]
        self.assertEqual(data, ["reading-1", "reading-2"])

    def test_qos2_resumed_before_pubrec_is_delivered_once(self):
        c = self.client()
        c.connect()
        c.stage("t/data", "reading-1", 2)
        saved = list(c.pending)
        # Sent, then the board reset before reading PUBREC.
        c._send_publish("t/data", b"reading-1", 2, False, saved[0], False)
        c.close()
        c2 = self.client(pending=saved, next_pid=c.next_pid)
        self.assertTrue(c2.connect())
        c2.disconnect()
        data = [p for t, p in self.until_marker() if t == "t/data"]
        self.assertEqual(data, ["reading-1"])

    def test_a_message_in_flight_is_sent_again_when_the_broker_lost_the_session(self):
        c = self.client(client_id="node-lost-session")
        c.connect()
        c.stage("t/data", "reading-1", 2)
        saved = list(c.pending)
        c.close()
        # Same client id, but a clean session wipes what the broker kept.
        wiper = self.client(client_id="node-lost-session", clean_session=True)
        wiper.connect()
        wiper.disconnect()
        c2 = self.client(client_id="node-lost-session", pending=saved)
        self.assertFalse(c2.connect())
        c2.disconnect()
        data = [p for t, p in self.until_marker() if t == "t/data"]
        self.assertEqual(data, ["reading-1"])


if __name__ == "__main__":
    unittest.main()
