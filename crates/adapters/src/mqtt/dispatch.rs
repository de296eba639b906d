//! One received MQTT message → what the pipeline gets: route by topic,
//! decode the payload, and count and log everything dropped. Pure: no
//! session, no acknowledgements (those are `source`'s concern).

use std::collections::HashMap;

use gateway_core::component::AdapterStats;
use gateway_core::hash::SeededState;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{
    DeviceId, DeviceState, Ingress, MetricName, Reading, StatusChange, TimeSource, Timestamp,
};

use super::config::{MqttAdapterConfig, Route};
use crate::payload::{self, Context, PayloadFormat};

/// The route, device and metric of the data topics seen lately: a sensor
/// publishes on the same few topics all day, and matching the patterns
/// and checking and allocating the ids again for every message was a
/// fifth of the adapter's CPU. Only topics that matched a data route with
/// valid ids are kept (so never a status topic: those are matched first,
/// and the patterns do not change while the adapter runs). Hashed with the
/// seeded hasher: SipHash of the topic was 6 % of a QoS 0 reading's
/// instructions (issue 69), and the cache's size is bounded anyway.
#[derive(Debug, Default)]
pub(crate) struct TopicCache(HashMap<Box<[u8]>, Routed, SeededState>);

#[derive(Debug, Clone)]
struct Routed {
    route: usize,
    device: Option<DeviceId>,
    metric: Option<MetricName>,
}

/// Bytes of a topic a log line shows: a topic may be 65 535 bytes, and
/// each refused message's warning printed it whole (a 65 KB log line a
/// message, throttled but per reason); the payload's echo was already
/// clipped. Enough for every topic a sensor really uses.
pub(crate) const LOGGED_TOPIC: usize = 256;

/// `topic` as a log line shows it: lossy UTF-8 of at most
/// [`LOGGED_TOPIC`] bytes (a character cut in two shows as `�`), and `…`
/// when there was more.
pub(crate) fn topic_for_log(topic: &[u8]) -> String {
    let shown = &topic[..topic.len().min(LOGGED_TOPIC)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if topic.len() > LOGGED_TOPIC {
        text.push('…');
    }
    text
}

/// Topics one cache holds before it starts over: a broker carrying a new
/// topic per message must not grow it without bound.
const TOPIC_CACHE: usize = 1024;

impl TopicCache {
    /// Forgets every topic and frees the table; the next message of each
    /// is routed by the patterns again, to the same answer.
    pub(crate) fn let_go(&mut self) {
        self.0 = HashMap::default();
    }

    fn insert(&mut self, topic: &str, routed: Routed) {
        if self.0.len() >= TOPIC_CACHE {
            self.0.clear();
        }
        self.0.insert(topic.as_bytes().into(), routed);
    }
}

/// Turns one received message into what the pipeline gets, counting and
/// logging everything that is dropped. Never fails: bad input is data.
#[cfg(test)]
pub(crate) fn dispatch(
    config: &MqttAdapterConfig,
    topic: &[u8],
    payload: &[u8],
    now: Timestamp,
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
) -> Option<Ingress> {
    let mut cache = TopicCache::default();
    dispatch_cached(
        config, topic, payload, now, stats, throttle, adapter, &mut cache,
    )
}

/// [`dispatch`], the topic looked up in `cache` before the patterns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatch_cached(
    config: &MqttAdapterConfig,
    topic: &[u8],
    payload: &[u8],
    now: Timestamp,
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
    cache: &mut TopicCache,
) -> Option<Ingress> {
    let mut readings = Vec::new();
    let mut ingress = dispatch_into(
        config,
        topic,
        payload,
        now,
        stats,
        throttle,
        adapter,
        cache,
        &mut readings,
    );
    if !readings.is_empty() {
        ingress = Some(Ingress::Readings(readings));
    }
    ingress
}

/// [`dispatch_cached`] with a data message's readings added to the end of
/// `batch` instead of returned: QoS 0 readings are gathered for the
/// pipeline there, and a vector per message was allocated, copied into the
/// batch and freed (with the decimal fast path for the value, 4 590 →
/// 4 040 instructions a reading, issue 69). What else a message brings (a
/// status) is returned as before.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatch_into(
    config: &MqttAdapterConfig,
    topic: &[u8],
    payload: &[u8],
    now: Timestamp,
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
    cache: &mut TopicCache,
    batch: &mut Vec<Reading>,
) -> Option<Ingress> {
    let reject = |kind: &str, detail: &str| {
        let topic = topic_for_log(topic);
        gateway_core::refuse!(stats, throttle, kind;
            adapter, %topic, detail, bytes = payload.len(), "Dropping message.");
    };
    if payload.len() > config.max_payload_bytes {
        reject("payload_too_large", "payload larger than max_payload_bytes");
        return None;
    }
    let hit = cache
        .0
        .get(topic)
        .and_then(|r| Some((config.routes.get(r.route)?, r)));
    if let Some((route, routed)) = hit {
        let context = Context {
            device: routed.device.as_ref(),
            metric: routed.metric.as_ref(),
            now,
        };
        decoded(
            route,
            payload,
            config.max_readings_per_message,
            &context,
            stats,
            &reject,
            batch,
        );
        return None;
    }
    // Checked only here: a cached topic was valid when it was cached.
    let Ok(topic) = std::str::from_utf8(topic) else {
        // MQTT requires UTF-8 topics. Bad input, not a broken connection:
        // failing it would bring the message back after every reconnect.
        reject("invalid_topic", "the topic is not UTF-8");
        return None;
    };
    for pattern in &config.status_topics {
        if let Some(caps) = pattern.matches(topic) {
            let text = String::from_utf8_lossy(payload);
            let state = match DeviceState::parse(&text).or_else(|| status_from_json(payload)) {
                Some(s) => s,
                None => {
                    reject("invalid_status", "expected online or offline");
                    return None;
                }
            };
            let device = match caps.device.map(DeviceId::new) {
                Some(Ok(d)) => d,
                _ => {
                    reject("invalid_device_id", "device level is not a valid id");
                    return None;
                }
            };
            return Some(Ingress::Status(StatusChange {
                device,
                state,
                time: now,
            }));
        }
    }
    let Some((index, route, caps)) = config
        .routes
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.pattern.matches(topic).map(|c| (i, r, c)))
    else {
        reject("unmatched_topic", "no topic pattern matches");
        return None;
    };
    let device = match caps.device.map(DeviceId::new) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            reject("invalid_device_id", &e.to_string());
            return None;
        }
    };
    // A `$` level is an attribute of the convention the device follows
    // (Homie's `$name`, `$datatype`, `$unit` beside each property), not a
    // value: text beside the values, as a JSON object's is.
    if let (Some(d), Some(attribute)) = (&device, caps.metric.filter(|m| m.starts_with('$'))) {
        stats.ignored_field(d.as_str(), attribute);
        return None;
    }
    let metric = match caps.metric.map(MetricName::new) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            reject("invalid_metric_name", &e.to_string());
            return None;
        }
    };
    let routed = Routed {
        route: index,
        device,
        metric,
    };
    let context = Context {
        device: routed.device.as_ref(),
        metric: routed.metric.as_ref(),
        now,
    };
    decoded(
        route,
        payload,
        config.max_readings_per_message,
        &context,
        stats,
        &reject,
        batch,
    );
    cache.insert(topic, routed);
    None
}

/// The payload of a message routed by `route`, decoded in `context`, its
/// readings added to the end of `batch`.
fn decoded(
    route: &Route,
    payload: &[u8],
    max_readings: usize,
    context: &Context,
    stats: &AdapterStats,
    reject: &dyn Fn(&str, &str),
    batch: &mut Vec<Reading>,
) {
    if let Some(reading) = plain_number(route, payload, max_readings, context) {
        batch.push(reading);
        stats.readings.inc();
        return;
    }
    decoded_in_general(route, payload, max_readings, context, stats, reject, batch);
}

/// [`decoded`] by the payload decoders, whatever the payload.
fn decoded_in_general(
    route: &Route,
    payload: &[u8],
    max_readings: usize,
    context: &Context,
    stats: &AdapterStats,
    reject: &dyn Fn(&str, &str),
    batch: &mut Vec<Reading>,
) {
    let start = batch.len();
    match payload::decode_bounded_into(
        &route.format,
        payload,
        context,
        route.device_field.as_deref(),
        max_readings,
        batch,
    ) {
        Ok(decoded) => {
            for problem in &decoded.problems {
                let kind = format!("field_{}", problem.reason.kind());
                reject(&kind, &problem.field);
            }
            for (device, key) in &decoded.ignored {
                stats.ignored_field(device.as_str(), key);
            }
            // Refused here, before the acknowledgement the session sends
            // once the readings are safe: after it, nothing is dropped for
            // its time (the pipeline places it by that time).
            retain_from(batch, start, |r| {
                match payload::own_time_refusal_of(r, context.now) {
                    Some(kind) => {
                        reject(kind, &r.time().to_string());
                        false
                    }
                    None => true,
                }
            });
            stats.readings.add((batch.len() - start) as u64);
        }
        Err(e) => reject(e.kind(), &e.to_string()),
    }
}

/// The reading of a bare decimal (`21.5`, `-4`) on a route that reads one
/// number into a named metric, the most common MQTT message: what
/// [`payload::decode_bounded_into`] makes of it, without its UTF-8 check,
/// trim, quote and word tests, bounds and own-time checks, none of which
/// such a payload can fail (a QoS 0 reading 1 830 → about 1 450
/// instructions, issue 69). `None` for anything else, which takes the
/// general path.
fn plain_number(
    route: &Route,
    payload: &[u8],
    max_readings: usize,
    context: &Context,
) -> Option<Reading> {
    if !matches!(
        route.format,
        PayloadFormat::Number | PayloadFormat::Auto { columns: None }
    ) || max_readings == 0
    {
        return None;
    }
    let (device, metric) = (context.device?, context.metric?);
    let value = payload::decimal::plain_bytes(payload)?;
    Reading::new(
        device.clone(),
        metric.clone(),
        value,
        context.now,
        TimeSource::Arrival,
    )
    .ok()
}

/// `Vec::retain` of the readings from `start` on, in order; those before
/// it are another message's.
fn retain_from(batch: &mut Vec<Reading>, start: usize, mut keep: impl FnMut(&Reading) -> bool) {
    let mut kept = start;
    for i in start..batch.len() {
        if keep(&batch[i]) {
            batch.swap(kept, i);
            kept += 1;
        }
    }
    batch.truncate(kept);
}

/// Whether `topic` is a status topic: a retained message there is a
/// device's last known state, meaningful at every subscription.
pub(crate) fn is_status_topic(config: &MqttAdapterConfig, topic: &str) -> bool {
    config
        .status_topics
        .iter()
        .any(|p| p.matches(topic).is_some())
}

/// Zigbee2MQTT's availability payload is `{"state":"online"}`.
fn status_from_json(payload: &[u8]) -> Option<DeviceState> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    DeviceState::parse(v.get("state")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::config::MqttAdapterConfig;
    use crate::AdapterKind;
    use gateway_core::config::Problems;
    use gateway_core::{Reading, Telemetry};

    fn adapter(extra: &str) -> MqttAdapterConfig {
        let text = format!("name = \"local\"\n{extra}");
        let mut p = Problems::default();
        let c = MqttAdapterConfig::from_table(toml::from_str(&text).unwrap(), "adapter[0]", &mut p);
        assert!(p.is_empty(), "{p}");
        c.unwrap()
    }

    fn run(config: &MqttAdapterConfig, topic: &str, payload: &str) -> (Option<Ingress>, Telemetry) {
        let t = Telemetry::default();
        let stats = AdapterStats::new(&t, "local");
        let out = dispatch(
            config,
            topic.as_bytes(),
            payload.as_bytes(),
            Timestamp::from_millis(1_763_719_200_000).unwrap(),
            &stats,
            &LogThrottle::default(),
            "local",
        );
        (out, t)
    }

    fn readings(i: Option<Ingress>) -> Vec<(String, String, f64)> {
        match i {
            Some(Ingress::Readings(r)) => r
                .iter()
                .map(|r: &Reading| (r.device().to_string(), r.metric().to_string(), r.value()))
                .collect(),
            other => panic!("expected readings, got {other:?}"),
        }
    }

    fn errors(t: &Telemetry, kind: &str) -> u64 {
        t.counter_value(
            "edge_gateway_adapter_errors_total",
            &[("adapter", "local"), ("error_type", kind)],
        )
        .unwrap_or(0)
    }

    /// A refused message's warning shows a bounded part of its topic: a
    /// topic of 65 000 bytes made a 65 KB log line per refusal.
    #[test]
    fn a_refused_message_logs_a_bounded_topic() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let c = adapter("");
        let long = format!("sensors/data/{}/temperature", "x".repeat(65_000));
        let (out, t) = tracing::subscriber::with_default(subscriber, || run(&c, &long, "5"));
        assert!(out.is_none());
        assert_eq!(errors(&t, "invalid_device_id"), 1);
        let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("Dropping message."), "{log}");
        assert!(log.contains("topic=sensors/data/xxxx"), "{log}");
        assert!(log.len() < 1_000, "a log line of {} bytes", log.len());
        assert_eq!(topic_for_log("ok/topic".as_bytes()), "ok/topic");
        // A character cut in two is no panic, and the cut is marked.
        let wide = "é".repeat(LOGGED_TOPIC);
        let shown = topic_for_log(wide.as_bytes());
        assert!(shown.ends_with('…') && shown.len() <= LOGGED_TOPIC + 8);
    }

    #[test]
    fn default_topics_read_the_seed_layouts() {
        let c = adapter("");
        let (out, _) = run(&c, "sensors/data/esp32-1/temperature", "23.4");
        assert_eq!(
            readings(out),
            [("esp32-1".into(), "temperature".into(), 23.4)]
        );
        let (out, _) = run(
            &c,
            "sensors/a2:b2:c2:d2:e2:f2",
            r#"{"temperature":21.5,"humidity":40,"ts":"2026-11-21T10:00:00Z"}"#,
        );
        let mut got = readings(out);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            [
                ("a2:b2:c2:d2:e2:f2".into(), "humidity".into(), 40.0),
                ("a2:b2:c2:d2:e2:f2".into(), "temperature".into(), 21.5),
            ]
        );
    }

    #[test]
    fn a_cached_topic_decodes_as_a_fresh_one_and_status_topics_stay_uncached() {
        let c = adapter("");
        let t = Telemetry::default();
        let stats = AdapterStats::new(&t, "local");
        let throttle = LogThrottle::default();
        let now = Timestamp::from_millis(1_763_719_200_000).unwrap();
        let mut cache = TopicCache::default();
        let mut run = |topic: &str, payload: &str| {
            dispatch_cached(
                &c,
                topic.as_bytes(),
                payload.as_bytes(),
                now,
                &stats,
                &throttle,
                "local",
                &mut cache,
            )
        };
        for value in ["23.4", "23.5"] {
            let got = readings(run("sensors/data/esp32-1/temperature", value));
            assert_eq!(
                got,
                [(
                    "esp32-1".into(),
                    "temperature".into(),
                    value.parse().unwrap()
                )]
            );
        }
        // A bad payload on a cached topic is still refused and counted.
        assert!(run("sensors/data/esp32-1/temperature", "hot").is_none());
        assert_eq!(errors(&t, "not_a_number"), 1);
        // Invalid ids are refused every time, never remembered.
        for _ in 0..2 {
            assert!(run("sensors/data/esp32-1/bad\u{7}", "1").is_none());
        }
        assert_eq!(errors(&t, "invalid_metric_name"), 2);
        for _ in 0..2 {
            assert!(matches!(
                run("sensors/status/dev1", "online"),
                Some(Ingress::Status(_))
            ));
        }
        assert_eq!(cache.0.len(), 1, "only the data topic is kept");
    }

    #[test]
    fn a_topic_cache_let_go_of_routes_the_same() {
        let c = adapter("");
        let t = Telemetry::default();
        let stats = AdapterStats::new(&t, "local");
        let throttle = LogThrottle::default();
        let now = Timestamp::from_millis(1_763_719_200_000).unwrap();
        let mut cache = TopicCache::default();
        let run = |cache: &mut TopicCache, topic: &str| {
            readings(dispatch_cached(
                &c,
                topic.as_bytes(),
                b"21.5",
                now,
                &stats,
                &throttle,
                "local",
                cache,
            ))
        };
        let topics: Vec<_> = (0..50)
            .map(|i| format!("sensors/data/dev-{i}/temperature"))
            .collect();
        let first: Vec<_> = topics.iter().map(|tp| run(&mut cache, tp)).collect();
        assert_eq!(cache.0.len(), 50);
        cache.let_go();
        assert!(cache.0.is_empty() && cache.0.capacity() == 0, "table freed");
        for _ in 0..2 {
            let again: Vec<_> = topics.iter().map(|tp| run(&mut cache, tp)).collect();
            assert_eq!(again, first);
        }
        assert_eq!(first[7], [("dev-7".into(), "temperature".into(), 21.5)]);
        assert_eq!(t.counter_total("edge_gateway_adapter_errors_total"), 0);
    }

    #[test]
    fn the_topic_cache_starts_over_when_full() {
        let mut cache = TopicCache::default();
        let routed = Routed {
            route: 0,
            device: None,
            metric: None,
        };
        for i in 0..=TOPIC_CACHE {
            cache.insert(&format!("t/{i}"), routed.clone());
        }
        assert_eq!(cache.0.len(), 1);
    }

    #[test]
    fn status_topics_update_device_state() {
        let c = adapter("");
        for (payload, state) in [
            ("online", DeviceState::Online),
            ("offline", DeviceState::Offline),
            (r#"{"state":"offline"}"#, DeviceState::Offline),
        ] {
            match run(&c, "sensors/status/dev1", payload).0 {
                Some(Ingress::Status(s)) => {
                    assert_eq!((s.device.as_str(), s.state), ("dev1", state));
                }
                other => panic!("{payload}: {other:?}"),
            }
        }
        let (out, t) = run(&c, "sensors/status/dev1", "sleepy");
        assert!(out.is_none());
        assert_eq!(errors(&t, "invalid_status"), 1);
    }

    #[test]
    fn zigbee2mqtt_topics_need_no_format_and_bring_availability() {
        let c = adapter(r#"topics = ["zigbee2mqtt/{device}"]"#);
        let (out, t) = run(
            &c,
            "zigbee2mqtt/hall",
            r#"{"temperature":19.5,"state":"ON","last_seen":1795255200000,"update":{"state":"idle"}}"#,
        );
        let mut got = readings(out);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            [
                ("hall".into(), "state".into(), 1.0),
                ("hall".into(), "temperature".into(), 19.5)
            ]
        );
        assert_eq!(
            t.counter_total("edge_gateway_adapter_errors_total"),
            0,
            "bookkeeping fields are not errors"
        );
        match run(
            &c,
            "zigbee2mqtt/hall/availability",
            r#"{"state":"offline"}"#,
        )
        .0
        {
            Some(Ingress::Status(s)) => {
                assert_eq!((s.device.as_str(), s.state), ("hall", DeviceState::Offline))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tasmota_topics_need_no_format_and_bring_the_last_will() {
        let c = adapter(r#"topics = ["tele/{device}/SENSOR", "tele/{device}/STATE"]"#);
        let (out, t) = run(
            &c,
            "tele/plug-7/SENSOR",
            r#"{"Time":"2026-11-30T18:00:00","ENERGY":{"Power":45,"Voltage":[230,231]},"TempUnit":"C"}"#,
        );
        let mut got = readings(out);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            [
                ("plug-7".into(), "ENERGY_Power".into(), 45.0),
                ("plug-7".into(), "ENERGY_Voltage_0".into(), 230.0),
                ("plug-7".into(), "ENERGY_Voltage_1".into(), 231.0),
            ]
        );
        assert_eq!(t.counter_total("edge_gateway_adapter_errors_total"), 0);
        let (out, _) = run(&c, "tele/plug-7/STATE", r#"{"POWER":"ON","Wifi":{"RSSI":78}}"#);
        assert_eq!(readings(out).len(), 2);
        // One Last Will topic for both routes, `Offline` as Tasmota writes it.
        assert_eq!(c.status_topics.len(), 2, "the default one and tele/{{device}}/LWT");
        // Without a {device} level it stays the JSON reading it was.
        let _ = adapter(r#"topics = ["tele/+/SENSOR"]"#);
        match run(&c, "tele/plug-7/LWT", "Offline").0 {
            Some(Ingress::Status(s)) => {
                assert_eq!((s.device.as_str(), s.state), ("plug-7", DeviceState::Offline))
            }
            other => panic!("{other:?}"),
        }
    }

    /// A Shelly Gen2 device's component status, nested values and all.
    #[test]
    fn a_shelly_status_is_read_with_json_nested() {
        let c = adapter(r#"topics = [{ pattern = "{device}/status/+", format = "json_nested" }]"#);
        let (out, t) = run(
            &c,
            "shellyplus1pm-441793/status/switch:0",
            r#"{"id":0,"source":"init","output":false,"apower":0.0,"aenergy":{"total":6.532},"temperature":{"tC":23.5,"tF":74.4}}"#,
        );
        let mut got = readings(out);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        let device = "shellyplus1pm-441793".to_string();
        assert_eq!(
            got,
            [
                (device.clone(), "aenergy_total".into(), 6.532),
                (device.clone(), "apower".into(), 0.0),
                (device.clone(), "output".into(), 0.0),
                (device.clone(), "temperature_tC".into(), 23.5),
                (device, "temperature_tF".into(), 74.4),
            ]
        );
        assert_eq!(t.counter_total("edge_gateway_adapter_errors_total"), 0);
    }

    /// The Homie convention: `homie/<device>/<node>/<property>`, values as
    /// plain text, the device's `$state` as its status; a node's attribute
    /// topics (`$name`, `$properties`) at a property's level are text, not
    /// values, and no error.
    #[test]
    fn homie_topics_are_read_as_documented() {
        let c = adapter(
            r#"topics = ["homie/{device}/+/{metric}"]
            status_topics = ["homie/{device}/$state"]"#,
        );
        let (out, _) = run(&c, "homie/boiler-room/sensor/temperature", "61.5");
        assert_eq!(readings(out), [("boiler-room".into(), "temperature".into(), 61.5)]);
        let (out, _) = run(&c, "homie/boiler-room/pump/running", "true");
        assert_eq!(readings(out), [("boiler-room".into(), "running".into(), 1.0)]);
        for (payload, state) in [("ready", DeviceState::Online), ("lost", DeviceState::Offline)] {
            match run(&c, "homie/boiler-room/$state", payload).0 {
                Some(Ingress::Status(s)) => {
                    assert_eq!((s.device.as_str(), s.state), ("boiler-room", state))
                }
                other => panic!("{payload}: {other:?}"),
            }
        }
        let (out, t) = run(&c, "homie/boiler-room/sensor/$name", "Sensor");
        assert!(out.is_none());
        assert_eq!(t.counter_total("edge_gateway_adapter_errors_total"), 0);
        assert_eq!(t.counter_total("edge_gateway_adapter_ignored_fields_total"), 1);
    }

    /// ESPHome's default topics: each entity's state alone on its topic,
    /// binary sensors `ON`/`OFF`, the node's Last Will on `<node>/status`.
    #[test]
    fn esphome_topics_are_read_as_documented() {
        let c = adapter(
            r#"topics = ["{device}/sensor/{metric}/state", "{device}/binary_sensor/{metric}/state"]
            status_topics = ["{device}/status"]"#,
        );
        let (out, _) = run(&c, "hall-node/sensor/hall_temperature/state", "21.4");
        assert_eq!(readings(out), [("hall-node".into(), "hall_temperature".into(), 21.4)]);
        let (out, _) = run(&c, "hall-node/binary_sensor/front_door/state", "ON");
        assert_eq!(readings(out), [("hall-node".into(), "front_door".into(), 1.0)]);
        match run(&c, "hall-node/status", "offline").0 {
            Some(Ingress::Status(s)) => {
                assert_eq!((s.device.as_str(), s.state), ("hall-node", DeviceState::Offline))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn explicit_formats_by_topic() {
        let c = adapter(
            r#"topics = [
            { pattern = "esp32/{device}/csv", format = "csv", columns = ["temperature", "pressure", "humidity", "gas"] },
            { pattern = "zigbee2mqtt/{device}", format = "zigbee2mqtt" },
            { pattern = "senml", format = "senml" },
        ]"#,
        );
        let (out, _) = run(&c, "esp32/node7/csv", "21.3,1013.2,45.1,12000");
        assert_eq!(readings(out).len(), 4);
        let (out, _) = run(
            &c,
            "zigbee2mqtt/hall",
            r#"{"temperature":19.5,"linkquality":80,"update":{"state":"idle"}}"#,
        );
        assert_eq!(readings(out).len(), 2);
        let (out, _) = run(&c, "senml", r#"[{"bn":"dev9:","n":"t","v":1.5}]"#);
        assert_eq!(readings(out), [("dev9".into(), "t".into(), 1.5)]);
    }

    #[test]
    fn network_server_events_are_recognised_by_their_topics() {
        let c = adapter(
            r#"topics = [
            { pattern = "application/+/device/+/event/up", codec = "compact_i16" },
            "v3/+/devices/{device}/up",
        ]"#,
        );
        // compact_i16 00d72d0172: 21.5 °C, 45 %, 3.7 V; no decoded object.
        let chirpstack = r#"{"deviceInfo":{"devEui":"0101010101010101"},"fPort":2,"data":"ANctAXI=","rxInfo":[{"rssi":-70,"snr":3.0}]}"#;
        let (out, _) = run(
            &c,
            "application/app-1/device/0101010101010101/event/up",
            chirpstack,
        );
        let got = readings(out);
        assert_eq!(
            got[0],
            ("0101010101010101".into(), "temperature".into(), 21.5)
        );
        assert_eq!(got.len(), 6);
        let tts = r#"{"end_device_ids":{"device_id":"ignored"},"uplink_message":{"f_port":1,"decoded_payload":{"co2":650}}}"#;
        let (out, _) = run(&c, "v3/app@tenant/devices/co2-7/up", tts);
        assert_eq!(readings(out), [("co2-7".into(), "co2".into(), 650.0)]);
    }

    #[test]
    fn bad_input_is_counted_by_type_and_never_forwarded() {
        let c = adapter("max_payload_bytes = 64");
        let cases = [
            ("other/topic", "1", "unmatched_topic"),
            ("sensors/data/d/t", "NaN", "not_finite"),
            ("sensors/data/d/t", "hot", "not_a_number"),
            ("sensors/d", "{broken", "invalid_json"),
            ("sensors/d", &"9".repeat(65), "payload_too_large"),
        ];
        for (topic, payload, kind) in cases {
            let (out, t) = run(&c, topic, payload);
            assert!(out.is_none(), "{topic} {payload} forwarded");
            assert_eq!(
                t.counter_total("edge_gateway_adapter_errors_total"),
                1,
                "{topic} {payload}"
            );
            assert!(
                errors(&t, kind) == 1,
                "{topic} {payload}: expected error_type {kind}, got {}",
                t.render_prometheus()
            );
        }
    }

    #[test]
    fn a_dropped_field_is_counted_and_the_rest_kept() {
        let c = adapter("");
        let (out, t) = run(&c, "sensors/d", r#"{"temperature":null,"humidity":40}"#);
        assert_eq!(readings(out), [("d".into(), "humidity".into(), 40.0)]);
        assert_eq!(t.counter_total("edge_gateway_adapter_errors_total"), 1);
        assert_eq!(t.counter_total("edge_gateway_adapter_readings_total"), 1);
    }

    #[test]
    fn a_text_field_beside_the_values_is_no_error_and_counted_once_per_device_and_key() {
        let c = adapter("");
        let t = Telemetry::default();
        let stats = AdapterStats::new(&t, "local");
        let throttle = LogThrottle::default();
        let now = Timestamp::from_millis(1_795_255_200_000).unwrap();
        // An energy meter naming itself in every message, 45 times.
        let mut values = Vec::new();
        for i in 0..45 {
            let payload = format!(r#"{{"consumption_kwh": {}.5, "sensor_id": "meter-01"}}"#, i);
            let out = dispatch(
                &c,
                "sensors/meter-01".as_bytes(),
                payload.as_bytes(),
                now,
                &stats,
                &throttle,
                "local",
            );
            values.extend(readings(out));
        }
        assert_eq!(values.len(), 45, "every number kept");
        assert_eq!(
            values[44],
            ("meter-01".into(), "consumption_kwh".into(), 44.5)
        );
        assert_eq!(t.counter_total("edge_gateway_adapter_errors_total"), 0);
        assert_eq!(
            t.counter_total("edge_gateway_adapter_ignored_fields_total"),
            1
        );
        // Another device with the same key is another pair.
        dispatch(
            &c,
            "sensors/meter-02".as_bytes(),
            br#"{"kwh":1,"sensor_id":"meter-02"}"#,
            now,
            &stats,
            &throttle,
            "local",
        );
        assert_eq!(
            t.counter_total("edge_gateway_adapter_ignored_fields_total"),
            2
        );
        // Only text, no value: that is an error.
        let out = dispatch(
            &c,
            "sensors/meter-01".as_bytes(),
            br#"{"sensor_id":"meter-01"}"#,
            now,
            &stats,
            &throttle,
            "local",
        );
        assert!(out.is_none());
        assert_eq!(errors(&t, "no_values"), 1);
    }

    #[test]
    fn device_field_names_the_device_and_is_no_metric() {
        let c = adapter(
            "topics = [{ pattern = \"meters/energy\", format = \"json\", device_field = \"sensor_id\" }]",
        );
        let (out, t) = run(
            &c,
            "meters/energy",
            r#"{"consumption_kwh": 8.1, "sensor_id": "meter-01"}"#,
        );
        assert_eq!(
            readings(out),
            [("meter-01".into(), "consumption_kwh".into(), 8.1)]
        );
        // A numbered node: the number is its id, not a reading.
        let (out, _) = run(&c, "meters/energy", r#"{"kwh": 2, "sensor_id": 17}"#);
        assert_eq!(readings(out), [("17".into(), "kwh".into(), 2.0)]);
        assert_eq!(t.counter_total("edge_gateway_adapter_errors_total"), 0);
        assert_eq!(
            t.counter_total("edge_gateway_adapter_ignored_fields_total"),
            0
        );
    }

    #[test]
    fn config_mistakes_name_the_topic_entry() {
        for (extra, expected) in [
            ("topics = [\"a/{dev}\"]", "adapter[0].topics[0]"),
            (
                "topics = [{ pattern = \"x/{device}\", format = \"csv\" }]",
                "adapter[0].topics[0]: format \"csv\" needs a columns list",
            ),
            (
                "topics = [{ pattern = \"x/+\", format = \"number\" }]",
                "adapter[0].topics[0]: \"x/+\" needs a {device} level",
            ),
            (
                "topics = [{ pattern = \"x/{device}\", format = \"xml\" }]",
                "adapter[0].topics[0].format: unknown variant `xml`",
            ),
            (
                "topics = [{ pattern = \"x/{device}\", format = \"csv\", columns = [\"t\"], device_field = \"sensor_id\" }]",
                "adapter[0].topics[0].device_field: only formats auto, json and json_nested take a device_field",
            ),
            (
                "topics = [{ pattern = \"x/y\", format = \"json\", device_field = \"ts\" }]",
                "adapter[0].topics[0].device_field: expected the JSON key naming the device",
            ),
            (
                "status_topics = [\"status/+\"]",
                "adapter[0].status_topics[0]",
            ),
            (
                "url = \"mqtt://h\"\nca_file = \"/x\"",
                "adapter[0].ca_file: only used with an mqtts:// url",
            ),
            (
                "topics = [{ pattern = \"v3/+/devices/+/up\", codec = \"lpp\" }]",
                "adapter[0].topics[0].codec: unknown codec \"lpp\"",
            ),
            (
                "topics = [{ pattern = \"x/{device}\", format = \"json\", codec = \"cayenne_lpp\" }]",
                "adapter[0].topics[0].codec: only formats chirpstack_v4 and tts_v3",
            ),
        ] {
            let text = format!("name = \"local\"\n{extra}");
            let mut p = Problems::default();
            let c =
                MqttAdapterConfig::from_table(toml::from_str(&text).unwrap(), "adapter[0]", &mut p);
            assert!(c.is_none());
            assert!(
                p.iter().any(|x| x.to_string().starts_with(expected)),
                "{extra}: expected {expected:?}, got {p}"
            );
        }
    }

    /// The bare-number shortcut against the decoders it skips: the same
    /// readings and the same counters for every payload, numbers or not.
    #[test]
    fn a_bare_number_reads_as_the_decoders_read_it() {
        let pieces: [&[u8]; 16] = [
            b"0", b"7", b"9", b"-", b".", b"+", b"e", b"1", b" ", b"\"", b"\n", b"t", b"00",
            b"12345678901234567", b"\xff", b"true",
        ];
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        let device = DeviceId::new("room-1").unwrap();
        let metric = MetricName::new("temperature").unwrap();
        let now = Timestamp::from_millis(1_763_719_200_000).unwrap();
        let context = Context {
            device: Some(&device),
            metric: Some(&metric),
            now,
        };
        let mut shortcuts = 0;
        for (i, format) in ["", "format = \"number\""].iter().enumerate() {
            let c = adapter(&format!(
                "topics = [{{ pattern = \"s/{{device}}/{{metric}}\" {} }}]",
                if i == 0 { String::new() } else { format!(", {format}") }
            ));
            let route = &c.routes[0];
            for _ in 0..20_000 {
                let mut payload = Vec::new();
                for _ in 0..=next() % 4 {
                    payload.extend_from_slice(pieces[(next() % 16) as usize]);
                }
                let run = |general: bool| {
                    let t = Telemetry::default();
                    let stats = AdapterStats::new(&t, "local");
                    let reject = |kind: &str, _: &str| stats.error(kind);
                    let mut batch = Vec::new();
                    if general {
                        decoded_in_general(route, &payload, 10, &context, &stats, &reject, &mut batch);
                    } else {
                        decoded(route, &payload, 10, &context, &stats, &reject, &mut batch);
                    }
                    (batch, t.render_prometheus())
                };
                let (fast, general) = (run(false), run(true));
                assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(&payload));
                shortcuts += usize::from(plain_number(route, &payload, 10, &context).is_some());
            }
        }
        assert!(shortcuts > 5_000, "the shortcut taken {shortcuts} times");
    }

    /// A topic that is not UTF-8 is bad input, counted and dropped, before
    /// and after valid topics were cached.
    #[test]
    fn a_topic_that_is_not_utf8_is_counted_and_dropped() {
        let c = adapter("");
        let t = Telemetry::default();
        let stats = AdapterStats::new(&t, "local");
        let mut cache = TopicCache::default();
        let now = Timestamp::from_millis(1_763_719_200_000).unwrap();
        let throttle = LogThrottle::default();
        for topic in [
            &b"sensors/data/r\xffom/temperature"[..],
            b"sensors/data/room/temperature",
            b"sensors/data/room/temperature\xc3",
        ] {
            dispatch_cached(&c, topic, b"21.5", now, &stats, &throttle, "local", &mut cache);
        }
        assert_eq!(errors(&t, "invalid_topic"), 2);
        assert_eq!(cache.0.len(), 1, "only the valid topic is cached");
    }
}
