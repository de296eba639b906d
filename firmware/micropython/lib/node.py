# One wake of a battery node: sample, decide, queue, maybe send, and say
# how long to sleep. Everything it must remember lives in the state dict
# that `store` keeps across deep sleep (RTC memory):
#
#   q        readings not yet handed to the network: [[t, {metric: v}], ...]
#   duty     the send-on-change / adaptive-interval memory (duty.Policy)
#   failures consecutive failed sends, for the backoff
#   retry_at when the next send may be tried (Unix seconds)
#   dropped  readings dropped because the queue was full (also sent, as
#            the metric `dropped_readings`, so the loss is visible upstream)
#   ...      whatever the uplink keeps (MQTT: the message in flight)
#
# Batching: readings are sent when `batch` of them are queued, when the
# oldest is `max_batch_age_s` old (at most the heartbeat, so that silence
# still means failure), or at once when a send failed earlier and its retry
# is due. A failed send keeps every reading; the next attempt waits for the
# backoff, and the node sleeps no longer than that.
import clock

# The shortest sleep: a wake costs a boot (about 10 mAs on an ESP32), so a
# retry sooner than this saves nothing; and deepsleep(0) means "forever"
# on some ports.
MIN_SLEEP_S = 1.0


class Node:
    def __init__(
        self,
        sensor,
        uplink,
        store,
        policy,
        backoff,
        batch=1,
        max_batch_age_s=900,
        max_queue=48,
        now=clock.unix_time,
        log=print,
    ):
        if batch < 1 or max_queue < batch:
            raise ValueError("need 1 <= batch <= max_queue")
        if max_batch_age_s > policy.heartbeat_s:
            raise ValueError("max_batch_age_s above the heartbeat would hide a dead node")
        self.sensor = sensor
        self.uplink = uplink
        self.store = store
        self.policy = policy
        self.backoff = backoff
        self.batch = batch
        self.max_batch_age_s = max_batch_age_s
        self.max_queue = max_queue
        self.now = now
        self.log = log

    def wake(self):
        """One cycle; returns the seconds to sleep before the next."""
        st = self.store.load()
        t = self.now()
        values, battery_v = self.sensor()
        # Without a set clock, time-based rules run on a wake counter.
        tick = t if t is not None else st.get("wakes", 0) * self.policy.min_s
        st["wakes"] = st.get("wakes", 0) + 1
        hour = clock.hour_utc(t) if t is not None else None
        send, sleep_s = self.policy.decide(st.setdefault("duty", {}), values, tick, battery_v, hour)
        q = st.setdefault("q", [])
        # A reading with no usable value (the sensor failed) is not queued:
        # an empty message would say "alive" for a node whose sensor is dead;
        # its silence lets the gateway's silence rule say what is wrong.
        if send and any(v is not None for v in values.values()):
            q.append([None if t is None else round(t, 3), values])
            if len(q) > self.max_queue:
                n = len(q) - self.max_queue
                del q[:n]
                st["dropped"] = st.get("dropped", 0) + n
        if self.due(st, tick, t is None):
            try:
                self.uplink.flush(st, lambda: self.store.save(st))
                st["failures"] = 0
                st.pop("retry_at", None)
            except OSError as e:
                st["failures"] = st.get("failures", 0) + 1
                delay = self.backoff.delay(st["failures"])
                st["retry_at"] = tick + delay
                self.log("send failed (%s); %d queued, retry in %.1f s" % (e, len(q), delay))
        if "retry_at" in st:
            sleep_s = max(MIN_SLEEP_S, min(sleep_s, st["retry_at"] - tick))
        self.store.save(st)
        return sleep_s

    def due(self, st, tick, no_clock):
        if "retry_at" in st:
            return tick >= st["retry_at"]
        if self.uplink.pending(st):
            return True
        q = st.get("q")
        if not q:
            return False
        if no_clock or len(q) >= self.batch:
            return True
        oldest = q[0][0]
        return oldest is not None and tick - oldest >= self.max_batch_age_s


def take_dropped(st):
    """The drop count to report with the next message, as a reading."""
    n = st.pop("dropped", 0)
    return {"dropped_readings": n} if n else None
