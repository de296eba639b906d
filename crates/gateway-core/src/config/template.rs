//! The commented template printed by `edge-gateway configfile`.
//!
//! Values are rendered from each section's `Default`, so the documented
//! defaults are the real ones; a test in the binary keeps the shipped
//! `gateway.toml` identical to this output.

use std::fmt::Write;

use super::sections::FullPolicy;
use super::sections::{AggregationConfig, GatewayConfig, LogConfig, OutboxConfig, UpstreamConfig};
use super::values::byte_size;
use super::values::duration::render as dur;

fn q(s: &str) -> String {
    // TOML basic strings share JSON's escaping for everything a path or id holds.
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// `[gateway]`, `[upstream]`, `[aggregation]` and `[log]` with their defaults.
pub fn core_sections() -> String {
    let g = GatewayConfig::default();
    let u = UpstreamConfig::default();
    let a = AggregationConfig::default();
    let l = LogConfig::default();
    let o = OutboxConfig::default();
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
# Durations are written like "500ms", "30s", "5m", "1h".
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

[upstream]
# The cloud broker, where aggregates and alerts go OUT. This section is
# optional: without it, or with enabled = false, nothing goes to a cloud
# broker, no upstream outbox is kept and /health does not wait for one
# (for a building that only writes InfluxDB and shows the dashboard). A
# config must have at least one output: [upstream], a [[sink]] or the
# [dashboard].
enabled = true
# mqtt://host:port, or mqtts://host:port for TLS. The default
# (127.0.0.1:1883) is only a placeholder for trying things on one machine:
# put your cloud broker here. It is not the building's broker, which the
# [[adapter]] type = "mqtt" below reads sensors IN from (both default to
# 127.0.0.1:1883).
url = {url}
# Or the nodes of a clustered broker instead of url (not both). The first
# that answers is used and the next on loss or refusal; they share every
# other key of this section. See docs/fleet.md.
# urls = ["mqtts://node-a:8883", "mqtts://node-b:8883", "mqtts://node-c:8883"]
# QoS of everything forwarded: 0, 1 or 2.
qos = {qos}
# Keep the MQTT session on the broker between connections (clean session
# off, with the fixed client_id). QoS 2 always starts a clean session.
persistent_session = {persistent_session}
# Prefix of every upstream topic. {{site}} and {{gateway}} are filled in.
# Aggregates go to {{prefix}}/{{device}}/aggregated.
topic_prefix = {prefix}
# MQTT client id; empty means "edge-gateway-" followed by gateway.id. Two
# gateways with one id take the connection from each other in a loop.
client_id = {client_id}
# Username for the broker; empty for none.
username = {username}
# Name of the environment variable that holds the password. The password
# itself never goes in this file and is never logged; `validate` refuses a
# name that is not set (for the service: /etc/default/edge-gateway).
password_env = {password_env}
# TLS (mqtts:// only). Without ca_file the system's trusted roots are used.
# ca_file = "/etc/edge-gateway/ca.pem"
# Mutual TLS: a client certificate and its key, both PEM.
# client_cert = "/etc/edge-gateway/client.pem"
# client_key = "/etc/edge-gateway/client.key"
# MQTT keep-alive.
keep_alive = {keep_alive}
# Reconnects back off exponentially (with jitter) up to this cap, forever.
max_backoff = {max_backoff}
# Messages kept in memory while the broker is unreachable; beyond this the
# oldest are dropped and counted.
max_queued = {max_queued}
# Messages sent and not yet acknowledged by the broker at any time.
max_inflight = {max_inflight}
# Metrics sent at once when their value changes, besides their windows: a
# fan's on/off, an operating mode, a set point. Keys are "device/metric",
# each part an id or a pattern with * ("ahu-*/mode", "*/setpoint");
# "change" sends each new value to {{prefix}}/{{device}}/change through the
# outbox, "window" (the default) exempts one a broader pattern takes. For
# states that change rarely: changes less than a second apart are
# coalesced (the latest goes when the second has passed).
# report = {{ "ahu-1/fan_status" = "change", "*/setpoint" = "change" }}

[aggregation]
# Tumbling window length. Windows are aligned to multiples of it (UTC), one
# per device and metric: count, avg, min, max and population std.
window = {window}
# A window is forwarded once the clock passes its end plus this grace;
# readings later than that are counted as late and dropped.
grace = {grace}
# Readings stamped further ahead of the gateway's clock are refused.
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

[outbox]
# Every upstream message is written here ({{state_dir}}/outbox) before it is
# sent, and removed when the broker acknowledges it: a lost uplink or a power
# cut costs no message. A damaged file is reported and skipped at start.
# Without an [upstream] there is no outbox and these keys are unused.
# Disk the outbox may use ("256MiB", "1GB", or bytes).
max_bytes = {max_bytes}
# When full: "drop_oldest" keeps the newest data, "reject_new" the oldest.
# Either way every dropped message is counted and logged.
policy = {policy}
# Drop messages older than this ("0s": keep until max_bytes forces a choice),
# judged by a clock that has gone an hour without a step and never by one
# more than this past the newest message (docs/durability.md).
max_age = {max_age}
# Backlog messages sent per second once the broker is back; new messages
# are sent at once.
drain_rate = {drain_rate}

[log]
# trace, debug, info, warn or error.
level = {level}
# text (people, journald) or json (log shippers).
format = {format}
"##,
        id = q(&g.id),
        site = q(&g.site),
        state_dir = q(&g.state_dir.display().to_string()),
        durability = q(g.durability.as_str()),
        timezone = q(&g.timezone),
        url = q(&u.broker.url.to_string()),
        qos = u.forwarding.qos.as_u8(),
        persistent_session = u.forwarding.persistent_session,
        prefix = q(&u.forwarding.topic_prefix),
        client_id = q(&u.broker.client_id),
        username = q(&u.broker.username),
        password_env = q(&u.broker.password_env),
        keep_alive = q(&dur(u.broker.keep_alive)),
        max_backoff = q(&dur(u.broker.max_backoff)),
        max_queued = u.forwarding.max_queued,
        max_inflight = u.forwarding.max_inflight,
        window = q(&dur(a.window)),
        grace = q(&dur(a.grace)),
        max_future = q(&dur(a.max_future)),
        checkpoint_interval = q(&dur(a.checkpoint_interval)),
        max_series = a.max_series,
        max_bytes = q(&byte_size::render(o.max_bytes)),
        policy = q(match o.policy {
            FullPolicy::DropOldest => "drop_oldest",
            FullPolicy::RejectNew => "reject_new",
        }),
        max_age = q(&dur(o.max_age)),
        drain_rate = o.drain_rate,
        level = q(l.level.as_str()),
        format = q(match l.format {
            super::LogFormat::Text => "text",
            super::LogFormat::Json => "json",
        }),
    );
    out
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
# after a start or a new device. The alert's value is that difference, its
# limit the signed change. It clears when the difference is back under the
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
# alerting after about a day of readings. What every rule has learned (and
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
