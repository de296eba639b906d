# When to send and how long to sleep: the seed course's adaptive sensor,
# with its flaws fixed.
#
# - Send on change: a reading is sent when a metric moved by at least its
#   threshold since the last value *sent* (not the last sample, so a slow
#   drift of 0.05 per wake still crosses a 0.2 threshold and is sent).
# - Heartbeat: at least one reading every `heartbeat_s` even when nothing
#   changes, so that at the gateway silence means a dead node and a
#   "silence" rule can say so. Sleep never overshoots the next heartbeat.
# - Adaptive interval: it shrinks at once on change (a moving value is
#   followed closely), grows after `stable_after` unchanged readings, is
#   stretched on a low battery and by time-of-day factors (an office at
#   night), and is always bounded by [min_s, max_s]; max_s never exceeds
#   the heartbeat. Unbounded growth would make a stable room look dead.
#
# All state is a plain dict the node keeps in RTC memory.


class Policy:
    def __init__(
        self,
        thresholds,
        min_s=30,
        max_s=900,
        start_s=120,
        heartbeat_s=3600,
        stable_after=3,
        growth=1.5,
        shrink=0.5,
        battery_low_v=3.5,
        battery_critical_v=3.3,
        battery_max_factor=4.0,
        hour_factors=None,
    ):
        if not 0 < min_s <= start_s <= max_s:
            raise ValueError("need 0 < min_s <= start_s <= max_s")
        if max_s > heartbeat_s:
            raise ValueError("max_s above heartbeat_s would miss heartbeats")
        if not (growth > 1 and 0 < shrink < 1):
            raise ValueError("need growth > 1 and 0 < shrink < 1")
        if battery_critical_v >= battery_low_v:
            raise ValueError("need battery_critical_v < battery_low_v")
        if hour_factors is not None and len(hour_factors) != 24:
            raise ValueError("hour_factors: one factor per hour, 24 of them")
        self.thresholds = thresholds
        self.min_s = min_s
        self.max_s = max_s
        self.start_s = start_s
        self.heartbeat_s = heartbeat_s
        self.stable_after = stable_after
        self.growth = growth
        self.shrink = shrink
        self.battery_low_v = battery_low_v
        self.battery_critical_v = battery_critical_v
        self.battery_max_factor = battery_max_factor
        self.hour_factors = hour_factors

    def changed(self, st, values):
        last = st.get("last")
        if not last:
            return True
        for metric, threshold in self.thresholds.items():
            v = values.get(metric)
            if v is None:
                continue
            before = last.get(metric)
            # The epsilon keeps 20.2 - 20.0 (0.19999999999999929 in binary
            # floating point) a change of 0.2.
            if before is None or abs(v - before) >= threshold - 1e-9:
                return True
        return False

    def battery_factor(self, battery_v):
        if battery_v is None or battery_v >= self.battery_low_v:
            return 1.0
        if battery_v <= self.battery_critical_v:
            return self.battery_max_factor
        span = self.battery_low_v - self.battery_critical_v
        return 1.0 + (self.battery_max_factor - 1.0) * (self.battery_low_v - battery_v) / span

    def hour_factor(self, hour):
        if self.hour_factors is None or hour is None:
            return 1.0
        return self.hour_factors[int(hour) % 24]

    def decide(self, st, values, now, battery_v=None, hour=None):
        """(send this reading?, seconds until the next wake). Updates `st`."""
        changed = self.changed(st, values)
        last_t = st.get("last_t")
        heartbeat = last_t is None or now - last_t >= self.heartbeat_s
        send = changed or heartbeat
        base = st.get("base", self.start_s)
        if changed:
            base = max(self.min_s, base * self.shrink)
            st["stable"] = 0
        else:
            st["stable"] = st.get("stable", 0) + 1
            if st["stable"] >= self.stable_after:
                base = min(self.max_s, base * self.growth)
        st["base"] = base
        if send:
            st["last"] = dict((m, v) for m, v in values.items() if v is not None)
            st["last_t"] = now
            last_t = now
        interval = base * self.battery_factor(battery_v) * self.hour_factor(hour)
        interval = max(self.min_s, min(self.max_s, interval))
        # Wake in time for the next heartbeat, but never below min_s.
        until_heartbeat = last_t + self.heartbeat_s - now
        interval = max(self.min_s, min(interval, until_heartbeat))
        return send, interval
