//! A batch far over the outbox's 4 MiB record limit, as a journal replay
//! after a crash or any backlog hands a sink: every reading arrives.
//! Found by the tester: 150 000 acknowledged readings, `kill -9`, restart,
//! and the jsonl file ended with 105 200 of them ("Outbox full: dropped
//! messages by policy ... rejected_new=1" with the outbox nearly empty).
#![cfg(feature = "jsonl")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use gateway_core::config::{Problems, SinkSpec};
use gateway_core::event::SinkEvent;
use gateway_core::{
    DeviceId, DeviceRegistry, MetricName, Reading, Telemetry, TimeSource, Timestamp,
};
use sinks::registry::SinkContext;
use sinks::{OutputLink, SinkConfig};
use tokio::sync::{mpsc, oneshot};

fn reading(device: usize, i: usize) -> Reading {
    Reading::new(
        DeviceId::new(format!("dev{device}")).unwrap(),
        MetricName::new("v").unwrap(),
        i as f64,
        Timestamp::from_millis(1_795_000_000_000 + i as i64).unwrap(),
        TimeSource::Event,
    )
    .unwrap()
}

#[tokio::test]
async fn a_batch_over_the_record_limit_reaches_the_jsonl_file_whole() {
    let state = tempfile::tempdir().unwrap();
    let export = tempfile::tempdir().unwrap();
    let path = export.path().join("events.jsonl");
    let text = format!(
        "name = \"file\"\npath = \"{}\"\nwrite = [\"readings\"]\nrotate_bytes = \"1GiB\"\n",
        path.display()
    );
    let mut problems = Problems::default();
    let config = SinkConfig::from_table(
        "jsonl",
        toml::from_str(&text).unwrap(),
        "sink[0]",
        &mut problems,
    )
    .unwrap_or_else(|| panic!("{problems}"));
    let telemetry = Telemetry::default();
    let ctx = SinkContext {
        gateway_id: "gw-test".into(),
        state_dir: state.path().to_path_buf(),
        registry: DeviceRegistry::default(),
        units: Default::default(),
        telemetry: telemetry.clone(),
    };
    let (events, rx) = mpsc::channel(4096);
    let (flush, flush_rx) = mpsc::channel(1);
    let task = config
        .start(
            &ctx,
            OutputLink {
                messages: rx,
                urgent: None,
                flush: Some(flush_rx),
            },
        )
        .unwrap();

    // One event with readings of three devices (about 7 MiB of lines), as
    // a replay hands them over, and many small ones behind it.
    const BIG: usize = 40_000;
    const SMALL: usize = 2_000;
    events
        .send(SinkEvent::Readings(
            (0..BIG).map(|i| reading(i % 3, i)).collect(),
        ))
        .await
        .unwrap();
    for i in BIG..BIG + SMALL {
        events
            .send(SinkEvent::Readings(vec![reading(i % 3, i)]))
            .await
            .unwrap();
    }
    let (reply, stored) = oneshot::channel();
    flush.send(reply).await.unwrap();
    assert_eq!(stored.await, Ok(true), "everything handed over is on disk");
    assert_eq!(
        telemetry.counter_total("edge_gateway_outbox_dropped_messages_total"),
        0,
        "nothing dropped by the outbox"
    );
    // Closing the link lets the sink write what it stored, then stop.
    drop((events, flush));
    task.await.unwrap();

    let file = std::fs::read_to_string(&path).unwrap();
    assert!(file.len() > 4 * 1024 * 1024, "{} bytes", file.len());
    let values: BTreeSet<u64> = file
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            j["value"].as_f64().unwrap() as u64
        })
        .collect();
    assert_eq!(file.lines().count(), BIG + SMALL, "each reading once");
    assert_eq!(values, (0..(BIG + SMALL) as u64).collect(), "every reading");
}
