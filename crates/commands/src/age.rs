//! Whether a command is still fresh, and until when (pure).
//!
//! A command's age is judged once, on the wall clock as it was when the
//! command arrived: its `ts` (when its sender made it) may be at most
//! `max_age` old and at most `clock_tolerance` ahead. From then on only the
//! monotonic clock counts: the command must be written before its deadline,
//! what was left of its `max_age` when it arrived, so neither its wait in
//! the gateway (behind a Modbus write with no answer) nor a step of the
//! wall clock during that wait lets it run late.
//!
//! A command without `ts` cannot tell its age: it is refused unless
//! `require_ts = false`, and then its age counts from its arrival (a
//! retained one has none: it may have waited on the broker for days).

use std::time::Duration;

use gateway_core::config::CommandsConfig;
use gateway_core::Timestamp;
use tokio::time::Instant;

/// Where a command's age counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// Its sender's `ts`, and the gateway's wall clock when it arrived.
    At { ts: Timestamp, arrived: Timestamp },
    /// A cloud command without `ts`; `retained`: the broker kept it.
    Unstamped { retained: bool },
    /// Made in the gateway when it arrived (Home Assistant's controls).
    OnArrival,
}

impl Made {
    /// The `ts` the journal keeps for the id.
    pub fn ts(self) -> Option<Timestamp> {
        match self {
            Self::At { ts, .. } => Some(ts),
            Self::Unstamped { .. } | Self::OnArrival => None,
        }
    }
}

/// Why a command is not fresh: its `(status, reason, detail)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub status: &'static str,
    pub reason: &'static str,
    pub detail: String,
}

impl Stale {
    fn new(status: &'static str, reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            detail: detail.into(),
        }
    }
}

/// The monotonic instant by which the command, `arrived` then, must be
/// written, or why it may not be. `horizon`: the newest `ts` of a
/// forgotten id (the journal's).
///
/// # Errors
/// [`Stale`]: expired, ahead of the clock, or without the `ts` required.
pub fn deadline(
    made: Made,
    arrived: Instant,
    horizon: Option<Timestamp>,
    config: &CommandsConfig,
) -> Result<Instant, Stale> {
    let max_age = config.max_age;
    let on_arrival = gateway_core::deadline::after(arrived, max_age);
    let (ts, wall_now) = match made {
        Made::At { ts, arrived: wall } => (ts, wall),
        Made::OnArrival => return Ok(on_arrival),
        Made::Unstamped { .. } if config.require_ts => {
            return Err(Stale::new(
                "refused",
                "malformed",
                "ts: missing: a command must say when it was made (RFC 3339), so that a replay of it cannot run ([commands] require_ts)",
            ));
        }
        Made::Unstamped { retained: true } => {
            return Err(Stale::new(
                "expired",
                "max_age",
                "a retained command without ts: how long the broker kept it is unknown",
            ));
        }
        Made::Unstamped { retained: false } => return Ok(on_arrival),
    };
    let ahead = ts.as_millis().saturating_sub(wall_now.as_millis());
    let tolerance = millis(config.clock_tolerance);
    if ahead > tolerance {
        return Err(Stale::new(
            "refused",
            "clock",
            format!(
                "ts is {} ahead of the gateway's clock (tolerance {}): check the sender's and the gateway's clocks (NTP)",
                words(ahead),
                words(tolerance)
            ),
        ));
    }
    if horizon.is_some_and(|h| ts <= h) {
        return Err(Stale::new(
            "expired",
            "max_age",
            "made no later than commands the gateway has already forgotten as too old: a replay, or a clock stepped back",
        ));
    }
    let age = wall_now.as_millis().saturating_sub(ts.as_millis()).max(0);
    let max = millis(max_age);
    if age > max {
        return Err(Stale::new(
            "expired",
            "max_age",
            format!("made {} ago, max_age is {}", words(age), words(max)),
        ));
    }
    let left = Duration::from_millis(u64::try_from(max - age).unwrap_or(0));
    Ok(gateway_core::deadline::after(arrived, left))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `1500` → "1.5 s", `7_200_000` → "2 h".
fn words(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 120.0 {
        format!("{s} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 2.0 * 86_400.0 {
        format!("{:.0} h", s / 3600.0)
    } else {
        format!("{:.0} days", s / 86_400.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    fn config() -> CommandsConfig {
        CommandsConfig {
            enabled: true,
            ..CommandsConfig::default()
        }
    }

    fn ms_ago(ms: i64) -> Made {
        Made::At {
            ts: Timestamp::from_millis(NOW - ms).unwrap(),
            arrived: Timestamp::from_millis(NOW).unwrap(),
        }
    }

    fn judge(made: Made, config: &CommandsConfig) -> Result<Duration, Stale> {
        let t = Instant::now();
        deadline(made, t, None, config).map(|d| d - t)
    }

    #[test]
    fn what_is_left_of_max_age_by_ts() {
        let c = config();
        assert_eq!(judge(ms_ago(0), &c), Ok(Duration::from_secs(60)));
        assert_eq!(judge(ms_ago(45_000), &c), Ok(Duration::from_secs(15)));
        let e = judge(ms_ago(61_000), &c).unwrap_err();
        assert_eq!((e.status, e.reason), ("expired", "max_age"));
        assert!(e.detail.contains("made 61 s ago"), "{}", e.detail);
        // Slightly ahead (the two clocks disagree a little): a whole max_age.
        assert_eq!(judge(ms_ago(-4_000), &c), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn a_ts_ahead_of_the_clock_is_refused() {
        let c = config();
        for ahead in [6_000, 30 * 60_000, 365 * 86_400_000] {
            let e = judge(ms_ago(-ahead), &c).unwrap_err();
            assert_eq!((e.status, e.reason), ("refused", "clock"), "{ahead}");
        }
        let year_9999 = Made::At {
            ts: Timestamp::MAX,
            arrived: Timestamp::from_millis(NOW).unwrap(),
        };
        let e = judge(year_9999, &c).unwrap_err();
        assert_eq!(e.reason, "clock", "year 9999");
        assert!(e.detail.contains("days ahead"), "{}", e.detail);
    }

    #[test]
    fn the_deadline_is_monotonic_from_the_arrival() {
        let c = config();
        let arrived = Instant::now();
        // Made 10 s before it arrived: 50 s left, on the monotonic clock,
        // whatever the wall clock does while it waits.
        let d = deadline(ms_ago(10_000), arrived, None, &c).unwrap();
        assert_eq!(d, arrived + Duration::from_secs(50));
    }

    #[test]
    fn without_ts_refused_by_default_else_counted_from_arrival() {
        let mut c = config();
        let e = judge(Made::Unstamped { retained: false }, &c).unwrap_err();
        assert_eq!((e.status, e.reason), ("refused", "malformed"));
        assert!(e.detail.starts_with("ts: missing"));
        assert_eq!(judge(Made::OnArrival, &c), Ok(Duration::from_secs(60)));
        c.require_ts = false;
        assert_eq!(
            judge(Made::Unstamped { retained: false }, &c),
            Ok(Duration::from_secs(60))
        );
        let e = judge(Made::Unstamped { retained: true }, &c).unwrap_err();
        assert_eq!((e.status, e.reason), ("expired", "max_age"));
    }

    #[test]
    fn made_no_later_than_a_forgotten_id_is_expired_whatever_the_clock() {
        let c = config();
        let t = Instant::now();
        let horizon = Some(Timestamp::from_millis(NOW - 5_000).unwrap());
        let e = deadline(ms_ago(5_000), t, horizon, &c).unwrap_err();
        assert_eq!((e.status, e.reason), ("expired", "max_age"));
        assert!(deadline(ms_ago(4_999), t, horizon, &c).is_ok());
    }
}
