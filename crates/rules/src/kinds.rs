//! The four rule kinds, each judging what it sees on top of the shared
//! [`Trigger`]: a threshold its bounds, a rate the change within its
//! span, a silence the time since its device last spoke, and an anomaly
//! rule the learned detector's verdict (one detector per series, and for a
//! rule without `metric` one model per device). The engine finds the rules
//! and the state a reading concerns and keeps event time; each kind here
//! turns one evaluation into at most one transition, with the value and
//! limit its alert reports.

use anomaly::detector::{Detector, Reason, When};
use anomaly::multivariate::DeviceModel;
use gateway_core::config::{Direction, RateSpec, RuleConfig, RuleKind, DEFAULT_SENSITIVITY};
use serde::{Deserialize, Serialize};

use crate::engine::{ms, Evidence};
use crate::rate::RateWindow;
use crate::trigger::{AlertState, Trigger};

/// One evaluation's transition, as its alert reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub state: AlertState,
    pub value: f64,
    pub limit: f64,
    pub evidence: Option<Evidence>,
}

impl Outcome {
    fn plain(state: AlertState, value: f64, limit: f64) -> Self {
        Self {
            state,
            value,
            limit,
            evidence: None,
        }
    }
}

/// The state of one threshold, rate or anomaly rule for one device ×
/// metric. Persisted as is (its variant and field names are the state
/// file's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Series {
    Threshold {
        trigger: Trigger,
        last_ms: i64,
    },
    Rate {
        trigger: Trigger,
        last_ms: i64,
        /// State saved before it existed had a list of points instead,
        /// which is not read: the window starts afresh, and raises within
        /// its first span anyway.
        #[serde(default)]
        window: RateWindow,
    },
    Anomaly {
        trigger: Trigger,
        last_ms: i64,
        detector: Box<Detector>,
    },
}

impl Series {
    /// Raised and not yet cleared.
    pub fn raised(&self) -> bool {
        match self {
            Self::Threshold { trigger, .. }
            | Self::Rate { trigger, .. }
            | Self::Anomaly { trigger, .. } => trigger.raised,
        }
    }

    /// Forgets what an anomaly detector learned on another wall clock.
    pub fn forget_wall_clock(&mut self) {
        if let Self::Anomaly { detector, .. } = self {
            detector.forget_wall_clock();
        }
    }

    /// Fresh state for a rule of `rule`'s kind (silence has its own,
    /// [`Silence`], per device).
    pub fn new(rule: &RuleConfig) -> Self {
        match rule.kind {
            RuleKind::Rate => Series::Rate {
                trigger: Trigger::default(),
                last_ms: i64::MIN,
                window: RateWindow::default(),
            },
            RuleKind::Anomaly => Series::Anomaly {
                trigger: Trigger::default(),
                last_ms: i64::MIN,
                detector: Box::default(),
            },
            _ => Series::Threshold {
                trigger: Trigger::default(),
                last_ms: i64::MIN,
            },
        }
    }

    /// Evaluates reading `v` of this series under `rule`. `series_time`
    /// gives the reading's instant from the series' last one; a reading
    /// before that is ignored. No instant is taken beyond `horizon` (see
    /// [`advance`]). The building's clocks are `wall_offset_ms` ahead of
    /// UTC.
    pub fn evaluate(
        &mut self,
        rule: &RuleConfig,
        v: f64,
        series_time: impl Fn(i64) -> i64,
        horizon: i64,
        wall_offset_ms: i64,
    ) -> Option<Outcome> {
        match self {
            Series::Threshold { trigger, last_ms } => {
                let now = advance(last_ms, &series_time, horizon)?;
                threshold(rule, trigger, now, v)
            }
            Series::Rate {
                trigger,
                last_ms,
                window,
            } => {
                let spec = rule.rate?;
                let now = advance(last_ms, &series_time, horizon)?;
                rate(rule, spec, trigger, window, now, v)
            }
            Series::Anomaly {
                trigger,
                last_ms,
                detector,
            } => {
                let now = advance(last_ms, &series_time, horizon)?;
                let at = When {
                    utc_ms: now,
                    local_ms: now.saturating_add(wall_offset_ms),
                };
                anomaly(rule, trigger, detector, at, v)
            }
        }
    }
}

/// Moves a series' clock to this reading's instant; `None` (and the clock
/// untouched) for a reading older than the series' last.
///
/// The series' clock never goes past `horizon` (the gateway's clock plus
/// what a sensor's clock may run ahead of it, [`crate::engine::AHEAD_MS`]):
/// a reading stamped hours ahead (a node whose RTC glitched, a hostile
/// line with a `ts` up to a day ahead, which the pipeline still takes)
/// moved it there, and every correctly stamped reading after it was
/// "older" and ignored: a fridge's "too warm" stayed silent until the
/// wall clock caught up. Such a reading is judged at the horizon instead,
/// and a clock already beyond it (saved before, or the gateway's clock
/// stepped back) is pulled back to it.
fn advance(last_ms: &mut i64, series_time: impl Fn(i64) -> i64, horizon: i64) -> Option<i64> {
    *last_ms = (*last_ms).min(horizon);
    let now = series_time(*last_ms).min(horizon);
    if now < *last_ms {
        return None;
    }
    *last_ms = now;
    Some(now)
}

/// A threshold: raised beyond `max` or below `min`, cleared back inside by
/// `hysteresis`; the limit is the bound crossed.
fn threshold(rule: &RuleConfig, trigger: &mut Trigger, now: i64, v: f64) -> Option<Outcome> {
    let h = rule.hysteresis;
    let above = rule.max.filter(|m| v > *m);
    let below = rule.min.filter(|m| v < *m);
    let inside = rule.max.is_none_or(|m| v <= m - h) && rule.min.is_none_or(|m| v >= m + h);
    let crossed = above.or(below);
    let step = trigger.step(
        now,
        crossed.is_some(),
        inside,
        ms(rule.for_),
        ms(rule.cooldown),
    )?;
    Some(match step {
        AlertState::Raised => {
            trigger.limit = crossed.unwrap_or_default();
            Outcome::plain(AlertState::Raised, v, trigger.limit)
        }
        AlertState::Cleared => Outcome::plain(AlertState::Cleared, v, trigger.limit),
        AlertState::Suppressed => {
            Outcome::plain(AlertState::Suppressed, v, crossed.unwrap_or_default())
        }
    })
}

/// A rate: the change within the span (see [`RateWindow`]) in the rule's
/// direction against `delta`; the limit is the change per span, signed.
fn rate(
    rule: &RuleConfig,
    spec: RateSpec,
    trigger: &mut Trigger,
    window: &mut RateWindow,
    now: i64,
    v: f64,
) -> Option<Outcome> {
    let seen = window.push(now, v, ms(spec.span));
    let change = match spec.direction {
        Direction::Rising => seen.rise,
        Direction::Falling => seen.fall,
        Direction::Either if seen.rise >= -seen.fall => seen.rise,
        Direction::Either => seen.fall,
    };
    let toward = match spec.direction {
        Direction::Falling => -change,
        _ => change.abs(),
    };
    let breach = toward >= spec.delta;
    let inside = toward < spec.delta - rule.hysteresis;
    let signed = match spec.direction {
        Direction::Falling => -spec.delta,
        Direction::Either if change < 0.0 => -spec.delta,
        _ => spec.delta,
    };
    let step = trigger.step(now, breach, inside, ms(rule.for_), ms(rule.cooldown))?;
    Some(match step {
        AlertState::Raised => {
            trigger.limit = signed;
            Outcome::plain(AlertState::Raised, change, signed)
        }
        AlertState::Cleared => Outcome::plain(AlertState::Cleared, change, trigger.limit),
        AlertState::Suppressed => Outcome::plain(AlertState::Suppressed, change, signed),
    })
}

/// An anomaly rule on one series: the learned detector's verdict at the
/// rule's sensitivity; the limit is the score that fired.
fn anomaly(
    rule: &RuleConfig,
    trigger: &mut Trigger,
    detector: &mut Detector,
    at: When,
    v: f64,
) -> Option<Outcome> {
    let now = at.utc_ms;
    let sensitivity = rule.sensitivity.unwrap_or(DEFAULT_SENSITIVITY);
    let verdict = detector.observe(at, v, sensitivity);
    let evidence = verdict.reason.map(|reason| Evidence {
        reason,
        expected: verdict.expected,
        observed: v,
    });
    // The detector holds an anomaly for its quiet period; the alert clears
    // when that ends.
    let step = trigger.step(now, verdict.anomaly, !verdict.active, 0, ms(rule.cooldown))?;
    Some(match step {
        AlertState::Raised => {
            trigger.limit = verdict.threshold;
            Outcome {
                state: AlertState::Raised,
                value: v,
                limit: trigger.limit,
                evidence,
            }
        }
        AlertState::Cleared => Outcome::plain(AlertState::Cleared, v, trigger.limit),
        AlertState::Suppressed => Outcome {
            state: AlertState::Suppressed,
            value: v,
            limit: verdict.threshold,
            evidence,
        },
    })
}

/// An anomaly rule without `metric`, on its device's model of all metrics
/// together: the metric that moved most and the raised outcome, when the
/// device leaves its usual states.
pub(crate) fn device_anomaly(
    model: &mut DeviceModel,
    at: When,
    metric: &str,
    v: f64,
) -> Option<(String, Outcome)> {
    let verdict = model.observe(at, metric, v);
    if !verdict.anomaly {
        return None;
    }
    let outcome = Outcome {
        state: AlertState::Raised,
        value: verdict.observed,
        limit: verdict.score,
        evidence: Some(Evidence {
            reason: Reason::Multivariate,
            expected: verdict.expected,
            observed: verdict.observed,
        }),
    };
    Some((verdict.metric, outcome))
}

/// A silence rule's view of one device: raised when nothing was heard for
/// `after` (or the device said it went offline), cleared when it speaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Silence {
    pub trigger: Trigger,
    pub last_seen_ms: i64,
}

impl Silence {
    pub fn since(now_ms: i64) -> Self {
        Self {
            trigger: Trigger::default(),
            last_seen_ms: now_ms,
        }
    }

    /// The device spoke at `now`: clears a raised silence; the value is the
    /// seconds it was silent. A reading older than the last one heard is
    /// ignored.
    pub fn heard(&mut self, now: i64, cooldown_ms: i64) -> Option<Outcome> {
        if now < self.last_seen_ms {
            return None;
        }
        let silent = (now - self.last_seen_ms) as f64 / 1000.0;
        self.last_seen_ms = now;
        let limit = self.trigger.limit;
        (self.trigger.step(now, false, true, 0, cooldown_ms) == Some(AlertState::Cleared))
            .then(|| Outcome::plain(AlertState::Cleared, silent, limit))
    }

    /// The wall clock stepped by `step_ms` (NTP): silence is how long the
    /// device has not spoken, not how far the clock moved, so the last
    /// time heard moves with it. A step forward made every device "silent
    /// for the step" at once; a step back hid every silence for as long.
    pub fn shift(&mut self, step_ms: i64) {
        self.last_seen_ms = self.last_seen_ms.saturating_add(step_ms);
        self.trigger.shift(step_ms);
    }

    /// The clock reads `now_ms`: raises (or reports suppressed) once
    /// nothing was heard for `after_ms`, stamped at the instant the silence
    /// reached it. Returns that instant with the outcome.
    pub fn tick(&mut self, now_ms: i64, after_ms: i64, cooldown_ms: i64) -> Option<(i64, Outcome)> {
        let due = self.last_seen_ms.saturating_add(after_ms);
        if now_ms < due || self.trigger.raised {
            return None;
        }
        let limit = after_ms as f64 / 1000.0;
        match self.trigger.step(due, true, false, 0, cooldown_ms)? {
            state @ (AlertState::Raised | AlertState::Suppressed) => {
                if state == AlertState::Raised {
                    self.trigger.limit = limit;
                }
                let silent = (now_ms - self.last_seen_ms) as f64 / 1000.0;
                Some((due, Outcome::plain(state, silent, limit)))
            }
            AlertState::Cleared => None,
        }
    }

    /// The device announced `online` (clears: it speaks again) or offline
    /// (raises at once); `limit` is the rule's `after` in seconds.
    pub fn status(
        &mut self,
        online: bool,
        now: i64,
        limit: f64,
        cooldown_ms: i64,
    ) -> Option<Outcome> {
        let silent = (now - self.last_seen_ms).max(0) as f64 / 1000.0;
        let state = if online {
            self.last_seen_ms = self.last_seen_ms.max(now);
            self.trigger.step(now, false, true, 0, cooldown_ms)
        } else {
            self.trigger.step(now, true, false, 0, cooldown_ms)
        }?;
        if state != AlertState::Cleared {
            self.trigger.limit = limit;
        }
        Some(Outcome::plain(state, silent, self.trigger.limit))
    }
}
