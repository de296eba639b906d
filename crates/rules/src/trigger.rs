//! The raise/clear state machine every rule kind shares: a minimum
//! duration before raising, exactly one clear per raise, and a cooldown
//! after a clear so a flapping signal cannot produce a storm. A raise the
//! cooldown holds back is still reported, once per excursion, as
//! `suppressed`: a person looking at the history must see that the
//! condition came back, even when nobody was alerted again.

use serde::{Deserialize, Serialize};

/// Raised or cleared, as in the upstream `state` field; or suppressed:
/// the condition to raise held, but within the cooldown after the last
/// clear. A suppressed one is recorded (history, metrics), never sent
/// upstream and never followed by a clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Raised,
    Cleared,
    Suppressed,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raised => "raised",
            Self::Cleared => "cleared",
            Self::Suppressed => "suppressed",
        }
    }
}

/// One rule's state for one series. Times are event-time milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// Raised and not yet cleared.
    pub raised: bool,
    /// Since when the condition has held without being raised.
    pending_since: Option<i64>,
    /// When the last alert cleared, for the cooldown.
    cleared_at: Option<i64>,
    /// The limit the raised alert named, repeated in its clear.
    pub limit: f64,
    /// This excursion's raise was already reported as suppressed.
    #[serde(default)]
    suppressed: bool,
}

impl Trigger {
    /// Feeds one evaluation: `breach` is the raise condition, `inside` the
    /// (hysteresis-widened) clear condition. Returns the transition, if any
    /// ([`AlertState::Suppressed`] once per excursion the cooldown holds
    /// back; it still raises if the condition outlasts the cooldown).
    pub fn step(
        &mut self,
        now: i64,
        breach: bool,
        inside: bool,
        for_ms: i64,
        cooldown_ms: i64,
    ) -> Option<AlertState> {
        // An instant kept ahead of `now` is from before the series' clock
        // went back: the gateway's clock stepped back (NTP correcting a
        // clock that ran ahead), or a reading stamped ahead was judged at
        // the horizon (`kinds::advance`). Kept as it was, a `for` or a
        // cooldown lasted the whole step longer: an hour's step held a
        // fridge's "too warm" back for an hour. They restart now instead.
        for at in [&mut self.pending_since, &mut self.cleared_at]
            .into_iter()
            .flatten()
        {
            *at = (*at).min(now);
        }
        if self.raised {
            if inside {
                self.raised = false;
                self.cleared_at = Some(now);
                return Some(AlertState::Cleared);
            }
            return None;
        }
        if !breach {
            self.pending_since = None;
            self.suppressed = false;
            return None;
        }
        let since = *self.pending_since.get_or_insert(now);
        if now.saturating_sub(since) < for_ms {
            return None;
        }
        let cooled = self
            .cleared_at
            .is_none_or(|at| now.saturating_sub(at) >= cooldown_ms);
        if cooled {
            self.raised = true;
            self.pending_since = None;
            self.suppressed = false;
            return Some(AlertState::Raised);
        }
        if std::mem::replace(&mut self.suppressed, true) {
            return None;
        }
        Some(AlertState::Suppressed)
    }

    /// The wall clock stepped by `step_ms`: the instants kept move with
    /// it, so a cooldown or a hold lasts as long as it would have.
    pub fn shift(&mut self, step_ms: i64) {
        for at in [&mut self.pending_since, &mut self.cleared_at]
            .into_iter()
            .flatten()
        {
            *at = at.saturating_add(step_ms);
        }
    }
}
