//! A state directory written by the release before the outputs shared one
//! outbox loop still delivers: the upstream's `outbox/` and an InfluxDB
//! sink's `sink-<name>/outbox/` are built here byte by byte in the record
//! layout that release wrote (`len:u32le crc32:u32le body`, one
//! `seg-<id>.log` per segment), with this file's own encoder rather than
//! the crate's, and each output must send exactly the messages it had not
//! delivered: same topics, payloads, retain flags and `seq` numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use gateway_core::config::{BrokerUrl, OutboxConfig, Problems, SinkSpec, UpstreamConfig};
use gateway_core::{DeviceRegistry, Telemetry, Timestamp};
use sinks::mqtt_upstream::{self, UpstreamSettings};
use sinks::registry::SinkContext;
use sinks::{OutputLink, SinkConfig};
use test_support::{Influxd, Mosquitto, Subscriber};
use tokio::sync::mpsc;

/// Record kinds of that release (1 byte).
const MESSAGE: u8 = 1;
const ACK: u8 = 2;

/// `len:u32le crc32(body):u32le body`.
fn frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// `kind:u8 seq:u64le created_ms:i64le retain:u8 topic_len:u16le topic payload`.
fn message(seq: u64, created_ms: i64, retain: bool, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![MESSAGE];
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&created_ms.to_le_bytes());
    body.push(u8::from(retain));
    body.extend_from_slice(&u16::try_from(topic.len()).unwrap().to_le_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(payload);
    body
}

/// `kind:u8 seq:u64le`.
fn ack(seq: u64) -> Vec<u8> {
    let mut body = vec![ACK];
    body.extend_from_slice(&seq.to_le_bytes());
    body
}

/// Writes the first segment of an outbox in `dir`.
fn write_segment(dir: &Path, records: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = Vec::new();
    for r in records {
        frame(r, &mut bytes);
    }
    std::fs::write(dir.join(format!("seg-{:020}.log", 1)), bytes).unwrap();
}

#[tokio::test]
async fn the_upstream_delivers_what_the_previous_release_left_in_its_outbox() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let now = Timestamp::now().as_millis();
    let topic = "t53old/gw-old/hall-1/window";
    // Seq 1 was acknowledged before the stop; 2 (retained) and 3 were not.
    write_segment(
        &state.path().join("outbox"),
        &[
            message(1, now, false, topic, br#"{"device":"hall-1","mean":20.5}"#),
            message(2, now, true, topic, br#"{"device":"hall-1","mean":21.5}"#),
            ack(1),
            message(3, now, false, topic, br#"{"device":"hall-1","mean":22.5}"#),
        ],
    );
    let mut sub = Subscriber::start(broker.port(), "t53old/+/+/window").await;

    let mut up = UpstreamConfig::default();
    up.broker.url = BrokerUrl::parse(&broker.url()).unwrap();
    let settings = UpstreamSettings::from_config(
        &up,
        &OutboxConfig::default(),
        "gw-old",
        state.path(),
        "t53old".into(),
    );
    let (messages, rx) = mpsc::channel(8);
    let task = tokio::spawn(mqtt_upstream::run(
        settings,
        OutputLink {
            messages: rx,
            urgent: None,
            flush: None,
        },
        Telemetry::default(),
    ));

    let mut got = Vec::new();
    for _ in 0..2 {
        let m = sub.next(Duration::from_secs(30)).await.expect("a message");
        got.push((m.topic, m.payload));
    }
    assert_eq!(
        got,
        [
            (
                topic.to_string(),
                r#"{"device":"hall-1","mean":21.5,"seq":2}"#.to_string()
            ),
            (
                topic.to_string(),
                r#"{"device":"hall-1","mean":22.5,"seq":3}"#.to_string()
            ),
        ]
    );
    // A message handed over now numbers on from the old outbox.
    messages
        .send(gateway_core::OutboundMessage {
            topic: topic.into(),
            payload: br#"{"device":"hall-1","mean":23.5}"#.to_vec(),
            retain: false,
        })
        .await
        .unwrap();
    let m = sub
        .next(Duration::from_secs(30))
        .await
        .expect("the new one");
    assert_eq!(m.payload, r#"{"device":"hall-1","mean":23.5,"seq":4}"#);
    drop(messages);
    task.await.unwrap().unwrap();
    // Nothing is sent twice.
    assert_eq!(sub.next(Duration::from_millis(300)).await, None);
    // Seq 2 kept its retain flag: the broker hands it to a late subscriber.
    let mut late = Subscriber::start(broker.port(), "t53old/+/+/window").await;
    let m = late.next(Duration::from_secs(10)).await.expect("retained");
    assert!(m.retained);
    assert_eq!(m.payload, r#"{"device":"hall-1","mean":21.5,"seq":2}"#);
}

#[tokio::test]
async fn an_influxdb_sink_delivers_what_the_previous_release_left_in_its_outbox() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let now = Timestamp::now().as_millis();
    let ns = |i: i64| (now - 60_000 + i * 1000) * 1_000_000;
    // Records of line protocol in nanoseconds (topic "ns"); the first was
    // written to InfluxDB before the stop.
    let line = |i: i64| format!("old_release,device=hall-1 value={i} {}\n", ns(i));
    let two = format!("{}{}", line(2), line(3));
    write_segment(
        &state.path().join("sink-old").join("outbox"),
        &[
            message(1, now, false, "ns", line(1).as_bytes()),
            ack(1),
            message(2, now, false, "ns", two.as_bytes()),
            message(3, now, false, "ns", line(4).as_bytes()),
        ],
    );
    let text = format!(
        "name = \"old\"\nurl = \"{}\"\ndatabase = \"old_db\"\nflush_interval = \"100ms\"\n",
        db.url()
    );
    let mut problems = Problems::default();
    let config = SinkConfig::from_table(
        "influxdb",
        toml::from_str(&text).unwrap(),
        "sink[0]",
        &mut problems,
    )
    .unwrap_or_else(|| panic!("{problems}"));
    let ctx = SinkContext {
        gateway_id: "gw-old".into(),
        state_dir: state.path().to_path_buf(),
        registry: DeviceRegistry::from_config(&[]),
        units: Default::default(),
        telemetry: Telemetry::default(),
    };
    let (events, rx) = mpsc::channel(8);
    let task = config
        .start(
            &ctx,
            OutputLink {
                messages: rx,
                urgent: None,
                flush: None,
            },
        )
        .unwrap();
    // Stopping drains: the loop ends once the outbox is empty.
    drop(events);
    task.await.unwrap();
    assert_eq!(config.name(), "old");
    let rows = db.rows("old_db", "SELECT value FROM old_release");
    let values: Vec<f64> = rows.iter().map(|r| r[1].as_f64().unwrap()).collect();
    assert_eq!(values, [2.0, 3.0, 4.0]);
}
