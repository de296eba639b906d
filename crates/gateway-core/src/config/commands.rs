//! `[commands]`: commands from the cloud broker to the building's devices.

use std::fmt::Write;
use std::time::Duration;

use serde::Deserialize;

use super::load::Problems;
use super::values::duration;

/// `[commands]`: whether the gateway takes commands from the upstream
/// (cloud) broker on `{prefix}/{device}/command`, and how old and how
/// frequent they may be (also for Home Assistant's, when
/// `[home_assistant] commands = true`). What may be written is declared
/// per device (`writable`), nowhere else.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// Subscribe to the command topics on the cloud broker; `false` (the
    /// default) writes to no device whatever arrives there. Home
    /// Assistant's commands have their own switch.
    pub enabled: bool,
    /// A command older than this, by its `ts` or by when it arrived, is
    /// not executed (`expired`): after an outage nobody wants yesterday's
    /// set point.
    #[serde(with = "duration")]
    pub max_age: Duration,
    /// Commands per second per device; the rest are `refused` (`rate`)
    /// and counted.
    pub rate: f64,
    /// Commands a device may receive at once before `rate` applies.
    pub burst: u32,
    /// A cloud command must say when it was made (`ts`); one without is
    /// refused (`malformed`). `false` accepts it with its age counted
    /// from its arrival, which cannot tell a replay days later from the
    /// original: see docs/commands.md.
    pub require_ts: bool,
    /// How far a command's `ts` may be ahead of the gateway's clock (the
    /// two clocks' disagreement); further ahead is refused (`clock`).
    #[serde(with = "duration")]
    pub clock_tolerance: Duration,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_age: Duration::from_secs(60),
            rate: 2.0,
            burst: 5,
            require_ts: true,
            clock_tolerance: Duration::from_secs(5),
        }
    }
}

impl CommandsConfig {
    /// Key checks, recorded under `commands`. `local`: commands made in
    /// the gateway (Home Assistant's, the rules' actions) run under these
    /// limits too.
    pub fn validate(&self, upstream_enabled: bool, local: bool, problems: &mut Problems) {
        if !self.enabled && !local {
            return;
        }
        if self.enabled && !upstream_enabled {
            problems.push(
                "commands.enabled",
                "commands come from the upstream (cloud) broker: enable [upstream], or set enabled = false",
            );
        }
        if self.max_age.is_zero() {
            problems.push("commands.max_age", "must be more than 0s");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            problems.push(
                "commands.rate",
                "expected a number of commands per second above 0",
            );
        }
        if self.burst == 0 {
            problems.push("commands.burst", "expected at least 1");
        }
    }
}

/// The `[commands]` part of the `configfile` template.
pub fn template() -> String {
    let c = CommandsConfig::default();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"
[commands]
# Commands from the cloud: the gateway subscribes (QoS 1) to
# {{prefix}}/+/command on the [upstream] broker ONLY, and writes
# {{"id": "...", "metric": "setpoint", "value": 23.0, "ts": "<RFC 3339>"}}
# to the device, if that point is declared writable ([[modbus.device]]
# registers with writable = true, [[device]] writable = [...] for MQTT
# devices, [[bacnet.device]] writable = ["analog-value:3"], with "value":
# null relinquishing); a LoRaWAN device takes {{"id", "port", "data"}}, a
# downlink. Each command gets one result on {{prefix}}/{{device}}/command/result
# (done, refused, failed or expired, with a reason) and runs at most once
# per id (journaled in {{state_dir}}/commands). Whoever holds the upstream
# broker's credentials can write to the declared points: see
# docs/commands.md for the broker ACL. Home Assistant's commands have their
# own switch ([home_assistant] commands) and the limits below.
enabled = {enabled}
# A command older than this (by its ts, plus its wait in the gateway) is
# expired, not executed.
max_age = "{max_age}"
# A command must say when it was made ("ts"); without, it is refused. false
# accepts it with its age counted from its arrival only: a replay of it
# once its id is forgotten (max_age after it ran) would run again.
require_ts = {require_ts}
# A ts further ahead of the gateway's clock than this is refused ("clock").
clock_tolerance = "{clock_tolerance}"
# Commands per second per device, after a burst of `burst`; the rest are
# refused with reason "rate".
rate = {rate:?}
burst = {burst}
"#,
        enabled = c.enabled,
        max_age = duration::render(c.max_age),
        rate = c.rate,
        burst = c.burst,
        require_ts = c.require_ts,
        clock_tolerance = duration::render(c.clock_tolerance),
    );
    out
}
