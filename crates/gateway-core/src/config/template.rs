//! The commented template printed by `edge-gateway configfile`.
//!
//! Values are rendered from each section's `Default`, so the documented
//! defaults are the real ones; a test in the binary keeps the shipped
//! `gateway.toml` identical to this output.

use std::fmt::Write;

use super::sections::{AggregationConfig, GatewayConfig, LogConfig};
use super::values::duration::render as dur;

fn q(s: &str) -> String {
    // TOML basic strings share JSON's escaping for everything a path or id holds.
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// The file's head and `[gateway]`, with its defaults.
pub fn head_sections() -> String {
    let g = GatewayConfig::default();
    let mut out = String::new();
    let _ = write!(
        out,
        r##"# edge-gateway configuration.
#
# Every key is shown with its default value; delete what you do not change.
# `edge-gateway configfile` prints this template: write it to a new file
# (configfile > my-gateway.toml), since redirecting it over an existing
# gateway.toml replaces that file without a question.
# Check a file with:  edge-gateway validate -c /etc/edge-gateway/gateway.toml
# Durations are written like "500ms", "30s", "5m", "1h" (at most 100 years).
# Names of adapters, rules, sinks and dashboard users are 1 to 64 of
# A-Z a-z 0-9 _ - . starting with a letter or a digit (a user's may also
# hold @): they become metric labels, payload fields and file names.
#
# After this file, every *.toml in the conf.d/ directory beside it is read
# in name order: tables merge key by key (the later file wins), and
# [[adapter]], [[device]], [[rule]] and [[lorawan.device]] entries are
# added to those of this file. Then EDGE_GATEWAY__SECTION__KEY environment
# variables set single keys (EDGE_GATEWAY__UPSTREAM__URL=mqtts://host:8883).
# See the merged result, secrets redacted, with `validate --print`.

[gateway]
# This gateway's id: in every upstream payload and in its status topic
# {{prefix}}/gateway/{{id}}/status. One MQTT topic level (no "/", "+" or "#").
id = {id}
# The building or site; the default topic prefix is building/{{site}}.
site = {site}
# Where durable state is kept: the ingress journal, open windows, outboxes,
# history and counters. `run` refuses to start when it cannot create and
# write it (exit 73), and `validate` checks it as the user running it.
state_dir = {state_dir}
# "disk": no start without a writable state_dir. "none": start anyway and
# keep in memory whatever cannot be written there, so readings are LOST ON
# EVERY RESTART. Only for trying things out.
durability = {durability}
# The building's time zone, whose clocks its people and schedules follow:
# the anomaly rules learn daily and weekly routines on these clocks, so an
# office's mornings stay its mornings when daylight saving time begins or
# ends. "local" is this machine's zone (the TZ variable, else
# /etc/localtime; set it with `timedatectl set-timezone`); or an IANA name
# like "Europe/Berlin" (from the tzdata package), "UTC", or a POSIX TZ rule.
# `replay` reads a named zone too; "local" it reads as UTC, so that a CSV
# replays alike on every machine. Timestamps in payloads, InfluxDB and the
# windows stay UTC.
timezone = {timezone}

"##,
        id = q(&g.id),
        site = q(&g.site),
        state_dir = q(&g.state_dir.display().to_string()),
        durability = q(g.durability.as_str()),
        timezone = q(&g.timezone),
    );
    out
}

/// `[aggregation]` and `[log]` with their defaults.
pub fn pipeline_sections() -> String {
    let a = AggregationConfig::default();
    let l = LogConfig::default();
    let mut out = String::new();
    let _ = write!(
        out,
        r##"[aggregation]
# Tumbling window length. Windows are aligned to multiples of it (UTC), one
# per device and metric: count, avg, min, max and population std.
window = {window}
# A window is forwarded once the clock passes its end plus this grace;
# a reading later than that is counted as late and goes out in a late
# amendment of its window ("amendment": n), never dropped.
grace = {grace}
# Readings stamped further ahead of the gateway's clock are counted and
# placed by their own time (the gateway's clock may be the wrong one), up
# to a day ahead; beyond a day they are refused.
max_future = {max_future}
# Open windows are saved this often to {{state_dir}}/windows.ckpt, and at
# SIGTERM, so a restart continues them without losing or re-counting a
# reading. A crash (kill -9, power cut) costs at most this interval of the
# readings that a protocol cannot resend. "0s" disables it: open windows
# are then forwarded early at shutdown, marked "partial": true.
checkpoint_interval = {checkpoint_interval}
# Most series (device x metric) open at once. Readings of new series beyond
# it are refused, counted as dropped with reason="max_series" and logged
# once per window; series already open keep flowing. It bounds the memory a
# flood of made-up device ids or metric names can take (about 150 bytes per
# series, checkpoint included).
max_series = {max_series}

[log]
# trace, debug, info, warn or error.
level = {level}
# text (people, journald) or json (log shippers).
format = {format}
"##,
        window = q(&dur(a.window)),
        grace = q(&dur(a.grace)),
        max_future = q(&dur(a.max_future)),
        checkpoint_interval = q(&dur(a.checkpoint_interval)),
        max_series = a.max_series,
        level = q(l.level.as_str()),
        format = q(match l.format {
            super::LogFormat::Text => "text",
            super::LogFormat::Json => "json",
        }),
    );
    out
}

/// A folder's `template.toml` (an adapter's, an output's) with each
/// `${name}` replaced by its value: the text lives beside the code as a
/// plain file people can read, the defaults it shows come from the code,
/// so they cannot go stale.
pub fn fill(text: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(text.to_string(), |out, (name, value)| {
        out.replace(&format!("${{{name}}}"), value)
    })
}

/// A string as a TOML basic string.
pub fn quoted(s: &str) -> String {
    q(s)
}

/// The `[[device]]` registry, documented with a commented example.
pub fn device_section() -> String {
    r#"
# The device registry: ids as the sensors send them (MAC, DevEUI or topic
# level) with the human name forwarded alongside their data. Optional tags
# (room, floor, or any table or list of labels) are forwarded too.
# Devices not listed here are forwarded under their id.
#
# [[device]]
# id = "a2:b2:c2:d2:e2:f2"
# name = "Living Room"
# room = "living"
# floor = 1
# tags = { zone = "north" }
# primary = "co2"           # the metric the overview draws for it
# units = { battery = "V" } # where the usual unit is wrong for this device
# writable = ["state", "brightness"]  # what [commands] may set (MQTT devices)
#
# Units are known by metric name (temperature °C, humidity %, co2 ppm,
# pressure hPa, battery %, battery_v and voltage V, rssi dBm, ...). Where a
# name means another unit on every device, say so here (per device above):
#
# [units]
# battery = "V"
#
# or for every device one adapter hears, in its [[adapter]] section:
#   units = { battery = "V" }
# The device's units win over its adapter's, and those over [units].
#
# Vendors' JavaScript payload codecs can live in the config itself, by name,
# where a codec file would have to be copied to the Pi: a configuration
# pushed from the cloud ([remote_config]) carries them. Any `codec` that takes
# "js:FILE" takes "js:NAME" of one of these (a name is letters, digits, - and
# _; it is looked up here first, then as a file):
#
# [js_codecs]
# em300-th = '''
# function decodeUplink(input) { ...the vendor's file, unchanged... }
# '''
"#
    .to_string()
}

/// The `[[rule]]` alert rules, documented with commented examples.
pub fn rule_section() -> String {
    format!(
        r#"
# Alert rules. An alert is published at once (not windowed) on
# {{prefix}}/{{device}}/alerts, QoS as upstream, through the outbox:
# {{"id", "gateway", "device", "name", "metric", "kind", "state": "raised" or
# "cleared", "value", "limit", "ts", "rule"}}, plus "unit" (of value and
# limit, when known) and "text" (one line for people); an anomaly adds
# "score" (its limit), "reason", "expected" and "observed". A raised alert
# is followed by exactly one "cleared" when the condition ends. Try rules on past data with:
#   edge-gateway replay -c gateway.toml --csv data.csv --device ID --metric NAME
#
# Keys of every rule:
#   name      unique, in every alert as "rule"
#   kind      "threshold", "rate", "silence" or "anomaly"
#   metric    the metric watched (optional for silence: any metric counts)
#   device    only this device, or
#   tag       only devices with this tag: a label ("fridge") or "key=value"
#   cooldown  after a clear, the rule does not raise again for the same
#             device and metric before this long (default "{cooldown}");
#             a raise it holds back is not sent, but counted
#             (edge_gateway_alerts_suppressed_total{{rule}}) and kept in the
#             dashboard's alert history with state "suppressed"
#             (edge-gateway history export --alerts writes that history)
#   action    optional local action, run when the alert is raised: a
#             command setting a point declared writable on an adapter's
#             device, {{ device = "lamp-1", point = "state", payload = "OFF" }}
#             (payload: a text, a number or true/false), through the same
#             journal, per-device rate ([commands] rate and burst, shared
#             with the cloud's commands), checks and results as a command
#             from the cloud, with or without [commands] and [upstream].
#             The older forms stay, as aliases, each actuator a device of
#             its own (id: the topic, or CoAP host and path, with "/" as
#             "."; point "publish" or "put") that only rules write to:
#             {{ publish = "topic", payload = "...", broker = "mqtt://127.0.0.1:1883" }}
#             (broker may be a table: {{ url = "mqtts://...", username = "...",
#             password_env = "...", ca_file = "...", client_cert = "...",
#             client_key = "...", client_id = "...", keep_alive = "30s",
#             max_backoff = "30s" }}, the keys of [upstream])
#             or {{ coap_put = "coap://host/path", payload = "..." }}; add
#             clear_payload = "..." to act on the clear too, and
#             cooldown = "1m" (the default) to bound how often it runs.
#             Alerts whose actions drive the same actuator (same broker,
#             topic and payloads: one HVAC zone for several rooms) share
#             it: the clear is sent when the last of them clears.
#
# threshold: max and/or min; hysteresis = margin back inside before the
# alert clears; for = how long the value must stay outside before raising.
# [[rule]]
# name = "fridge-max"
# kind = "threshold"
# metric = "temperature"
# device = "fridge-2"
# max = 8.0
# hysteresis = 0.5
# for = "2m"
#
# rate: a change of at least this much within the span; "+" rising, "-"
# falling, no sign either way. At every reading the rule compares it with
# the lowest (rising) or highest (falling) reading of the same device and
# metric in the span before it, that reading included: it raises when the
# difference reaches the change, so any rise or fall that happens within
# one span raises at the reading that completes it, also in the first span
# after a start or a new device. A device that reports less often than once
# a span is compared with its previous reading, the change scaled to the
# span (+4.5 in 15 minutes is +3.0 per 10m). The alert's value is that
# difference, its limit the signed change. It clears when the difference is back under the
# change by hysteresis (once the low or high point has left the span).
# hysteresis and for as above.
# [[rule]]
# name = "fridge-warming"
# kind = "rate"
# metric = "temperature"
# tag = "fridge"
# rate = "+2.0 per 10m"
#
# silence: raised when a device sends nothing for "after", or its status
# goes offline; cleared when it speaks again.
# [[rule]]
# name = "sensor-silent"
# kind = "silence"
# after = "15m"
#
# anomaly: a detector learned per device and metric from the data itself,
# online, needing no tuning: daily and weekly patterns, level shifts, stuck
# sensors, spikes, and spikes that come more often than they used to (a
# compressor short-cycling). It starts alerting after 200 readings and a
# day (or 1000 readings); each alert says why (reason, expected,
# observed). One anomaly is one alert: it clears 100 readings after it was
# raised, or, if a later reading still looked anomalous, 100 readings
# after the last such reading (then the cooldown applies as for every
# rule). On clean series (noise,
# random walks, daily and weekly routines, set-point changes once settled)
# the default raises under 0.2 false alarms per 10 000 readings.
# sensitivity in (0, 1], default {sensitivity}: higher alerts on smaller
# deviations. Without `metric`, the rule also learns each device's metrics
# together (reason "multivariate": a fridge warming with its door shut),
# alerting after about a day of readings: a device's first 6 metrics, two
# days of 5-minute rows (up to 16 KB a device), so on a large site give
# such a rule a `device` or `tag`. What every rule has learned (and
# which alerts are raised) is kept in {{state_dir}}/alerts.json, saved with
# the window checkpoints and at shutdown, and restored at start.
# [[rule]]
# name = "co2-anomaly"
# kind = "anomaly"
# metric = "co2"
# action = {{ publish = "actuators/hvac_zone_1/command", payload = "increase_ventilation" }}
"#,
        cooldown = dur(super::rule::default_cooldown()),
        sensitivity = super::rule::DEFAULT_SENSITIVITY,
    )
}
