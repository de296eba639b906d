# Readings to the gateway's default MQTT adapter: one SenML pack per batch
# on sensors/<device> (the default config's "sensors/{device}" topic reads
# SenML by its shape), each reading with its own time, QoS 2 so that a
# drop between the broker's receipt and its acknowledgement never counts a
# reading twice (mqtt.py explains the resume). The node's status is
# sensors/status/<device>: a retained "online", and "offline" as the Last
# Will, which the broker publishes when the node vanishes without a clean
# DISCONNECT (battery, crash, out of range).
import mqtt
import wire
from node import take_dropped


class MqttUplink:
    def __init__(
        self,
        device,
        server,
        port=1883,
        client_id=None,
        per_message=4,
        keep_connected=False,
        keepalive=60,
        timeout_s=5.0,
        user=None,
        password=None,
        topic=None,
        status_topic=None,
    ):
        self.device = device
        self.server = server
        self.port = port
        self.client_id = client_id or "node-" + device.replace(":", "")
        self.per_message = per_message
        self.keep_connected = keep_connected
        self.keepalive = keepalive
        self.timeout_s = timeout_s
        self.user = user
        self.password = password
        self.topic = topic or "sensors/" + device
        self.status_topic = status_topic or "sensors/status/" + device
        self.client = None  # kept between wakes only when keep_connected

    def pending(self, st):
        return bool(st.get("mqtt", {}).get("pending"))

    def _client(self, m):
        c = mqtt.MQTTClient(
            self.client_id,
            self.server,
            self.port,
            keepalive=self.keepalive,
            clean_session=False,
            will=(self.status_topic, "offline", True, 1),
            user=self.user,
            password=self.password,
            timeout_s=self.timeout_s,
            pending=m.get("pending"),
            next_pid=m.get("pid", 1),
        )
        return c

    def flush(self, st, save):
        m = st.setdefault("mqtt", {})
        c = self.client if self.keep_connected else None

        def keep():
            m["pending"] = c.pending
            m["pid"] = c.next_pid
            save()

        try:
            if c is None or c.sock is None:
                c = self._client(m)
                c.on_progress = keep
                # Resumes the message in flight, if the broker kept it.
                c.connect()
                keep()
            if not m.get("online"):
                c.stage(self.status_topic, "online", 1, True)
                keep()
                c.send_pending()
                m["online"] = True
                keep()
            q = st.get("q", [])
            while q:
                chunk = q[: self.per_message]
                records = []
                for t, values in chunk:
                    for metric, v in values.items():
                        records.append((metric, v, t))
                dropped = take_dropped(st)
                if dropped:
                    records.append(("dropped_readings", dropped["dropped_readings"], chunk[-1][0]))
                c.stage(self.topic, wire.senml_pack(records), 2)
                # The readings now live in `pending` only: saved together, so
                # a reset resends the same message, never a second copy.
                del q[: len(chunk)]
                keep()
                c.send_pending()
                keep()
            if self.keep_connected:
                self.client = c
            else:
                c.disconnect()
        except OSError:
            # Unclean: the broker publishes the Will ("offline"), so the
            # next session must announce "online" again.
            m["online"] = False
            if c is not None:
                m["pending"] = c.pending
                m["pid"] = c.next_pid
                c.close()
            self.client = None
            raise
