//! The pipeline's defence against a wall clock that is wrong.
//!
//! A Raspberry Pi has no real-time clock: until NTP answers it runs in
//! 1970 (or at its last shutdown time). Readings stamped then would open
//! and close windows for 1970 and send them upstream as real data. While
//! the clock reads before [`EARLIEST_PLAUSIBLE_MS`] the pipeline holds the
//! messages it receives (bounded), closes no window and runs no timed
//! alert; once the clock is plausible, a reading the gateway stamped on
//! arrival is re-stamped from the monotonic clock: the synced wall time
//! minus how long ago it arrived. Readings that carry the sensor's own
//! time keep it.
//!
//! A large step of a clock that was already plausible (NTP correcting a
//! drift, an operator's `date -s`) is counted and logged. A step forward
//! closes the windows that are now due (they are forwarded, not lost). A
//! step back is followed by the window clock (the pipeline calls
//! `Aggregator::step_back`): readings stamped on the corrected clock go in
//! its windows instead of being refused as late; windows already sent stay
//! sent, and a window over a span already sent goes out as a rerun.
//!
//! Held readings are released with the corrected time they arrived at, and
//! the pipeline judges each as of then: the wait was the gateway's, so it
//! must not make them late.

use std::collections::VecDeque;
use std::time::Duration;

use gateway_core::clock::{is_plausible, EARLIEST_PLAUSIBLE_MS};
use gateway_core::telemetry::Counter;
use gateway_core::{Ingress, Reading, Telemetry, TimeSource, Timestamp};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::DROPPED_READINGS;

/// Readings held while the clock is implausible.
pub const HELD_READINGS: &str = "edge_gateway_clock_held_readings_total";
/// Steps of the wall clock against the monotonic one beyond [`STEP`].
pub const CLOCK_STEPS: &str = "edge_gateway_clock_steps_total";

/// Readings held at most while the clock is wrong: a few minutes of a
/// building's sensors until NTP answers, about 2 MB. Beyond it, readings
/// that cannot be resent (CoAP, LoRaWAN) are dropped and counted; MQTT
/// QoS 1 messages are held unacknowledged regardless, bounded by the local
/// broker's in-flight window, and the broker keeps the rest.
pub const MAX_HELD_READINGS: usize = 10_000;

/// A difference between wall and monotonic time beyond this, from one
/// look to the next, is a step (NTP slews smaller errors); the same
/// threshold retention judges the clock's stability by.
pub const STEP: Duration = gateway_core::clock::retention::STEP;

struct Held {
    at: Instant,
    message: Ingress,
}

pub struct ClockGuard {
    held: VecDeque<Held>,
    held_readings: usize,
    /// Wall and monotonic time at the last look, to detect steps.
    last: Option<(Timestamp, Instant)>,
    /// Whether the current implausible spell has been logged.
    logged: bool,
    /// How far the clock stepped back, seen and not yet followed by the
    /// pipeline.
    stepped_back_ms: Option<i64>,
    /// How far the clock stepped either way, not yet told to the rules.
    stepped_ms: Option<i64>,
    held_total: Counter,
    dropped: Counter,
    steps: Counter,
}

impl ClockGuard {
    pub fn new(telemetry: &Telemetry) -> Self {
        Self {
            held: VecDeque::new(),
            held_readings: 0,
            last: None,
            logged: false,
            stepped_back_ms: None,
            stepped_ms: None,
            held_total: telemetry.counter(HELD_READINGS, &[]),
            dropped: telemetry.counter(DROPPED_READINGS, &[("reason", "clock_unsynced")]),
            steps: telemetry.counter(CLOCK_STEPS, &[]),
        }
    }

    /// Whether `now` can be trusted; logs the first look at a wrong clock
    /// and every step.
    pub fn check(&mut self, now: Timestamp, mono: Instant) -> bool {
        if let Some((wall, at)) = self.last {
            let elapsed = i64::try_from(mono.duration_since(at).as_millis()).unwrap_or(i64::MAX);
            let step = now.as_millis().saturating_sub(wall.as_millis()) - elapsed;
            if step.unsigned_abs() > STEP.as_millis() as u64 {
                self.steps.inc();
                self.stepped_ms = Some(self.stepped_ms.unwrap_or(0).saturating_add(step));
                if step < 0 {
                    self.stepped_back_ms = Some(self.stepped_back_ms.unwrap_or(0) - step);
                    warn!(step_ms = step, from = %wall, to = %now, "The wall clock stepped back; windows follow it: readings go in the windows of the corrected time, windows already sent stay sent.");
                } else {
                    warn!(step_ms = step, from = %wall, to = %now, "The wall clock stepped forward; open windows are kept and the ones now due close.");
                }
            }
        }
        self.last = Some((now, mono));
        let plausible = is_plausible(now);
        if !plausible && !self.logged {
            self.logged = true;
            warn!(now = %now, earliest = EARLIEST_PLAUSIBLE_MS, "The wall clock is not set (before this release): holding readings and windows until it is (NTP).");
        }
        plausible
    }

    /// The steps either way seen since the last call, added up: what the
    /// silence rules must move by.
    pub fn take_step(&mut self) -> Option<i64> {
        self.stepped_ms.take()
    }

    /// Whether a backward step was seen (and logged and counted) since the
    /// last call.
    pub fn took_step_back(&mut self) -> bool {
        self.stepped_back_ms.take().is_some()
    }

    /// What the clock would read at `now` had it not stepped back since the
    /// step was last followed: the time readings taken before the step were
    /// stamped by, and must be judged by.
    pub fn before_step(&self, now: Timestamp) -> Timestamp {
        now.saturating_add_millis(self.stepped_back_ms.unwrap_or(0))
    }

    /// Whether messages wait for the clock.
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Keeps a message until the clock is plausible. A resendable (durable)
    /// message is always kept, its receipt pending; others are dropped
    /// and counted once [`MAX_HELD_READINGS`] are held.
    pub fn hold(&mut self, message: Ingress, at: Instant) {
        let n = match &message {
            Ingress::Readings(r) | Ingress::Durable { readings: r, .. } => r.len(),
            Ingress::Status(_) | Ingress::NewSession { .. } => 0,
        };
        let durable = matches!(message, Ingress::Durable { .. });
        if !durable && self.held_readings + n > MAX_HELD_READINGS {
            self.dropped.add(n as u64);
            return;
        }
        self.held_readings += n;
        self.held_total.add(n as u64);
        self.held.push_back(Held { at, message });
    }

    /// Every held message, in arrival order, with the wall time it arrived
    /// at (`now` less its age on the monotonic clock); the readings the
    /// gateway stamped are re-stamped at that time.
    pub fn release(&mut self, now: Timestamp, mono: Instant) -> Vec<(Ingress, Timestamp)> {
        self.logged = false;
        if self.held.is_empty() {
            return Vec::new();
        }
        info!(
            messages = self.held.len(),
            readings = self.held_readings,
            now = %now,
            "The wall clock is set: taking the readings held until now."
        );
        self.held_readings = 0;
        self.held
            .drain(..)
            .map(|h| {
                let age = i64::try_from(mono.duration_since(h.at).as_millis()).unwrap_or(0);
                let at = now.saturating_add_millis(-age);
                let message = match h.message {
                    Ingress::Readings(r) => Ingress::Readings(restamp(r, at)),
                    Ingress::Durable { readings, receipt } => Ingress::Durable {
                        readings: restamp(readings, at),
                        receipt,
                    },
                    other => other,
                };
                (message, at)
            })
            .collect()
    }

    /// Readings still held when the pipeline stops: resendable ones come
    /// back from their broker, the others are lost.
    pub fn held_readings(&self) -> usize {
        self.held_readings
    }
}

fn restamp(readings: Vec<Reading>, at: Timestamp) -> Vec<Reading> {
    readings
        .into_iter()
        .map(|r| match r.time_source() {
            TimeSource::Arrival => r.restamped(at),
            TimeSource::Event => r,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Until the pipeline follows a step back, readings taken before it are
    /// judged by the clock that stamped them: `before_step` gives that
    /// clock's time, summed over two steps, and `now` again once followed.
    #[tokio::test(start_paused = true)]
    async fn before_step_reads_the_clock_the_step_left_until_it_is_followed() {
        let mut guard = ClockGuard::new(&Telemetry::default());
        let t0 = Timestamp::from_millis(1_800_000_000_000).unwrap();
        let mono = Instant::now();
        assert!(guard.check(t0, mono));
        assert_eq!(guard.before_step(t0), t0, "no step yet");
        let back = t0.saturating_add_millis(-600_000);
        assert!(guard.check(back, mono));
        assert_eq!(guard.before_step(back), t0);
        let further = back.saturating_add_millis(-3_600_000);
        assert!(guard.check(further, mono));
        assert_eq!(guard.before_step(further), t0, "two steps add up");
        assert!(guard.took_step_back());
        assert_eq!(guard.before_step(further), further, "followed");
        assert!(!guard.took_step_back());
    }
}
