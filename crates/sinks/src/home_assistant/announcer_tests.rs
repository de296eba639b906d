//! The task's state driven by hand, with what it hands the MQTT client
//! read back from the client's channel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::config::HomeAssistantConfig;
use gateway_core::event::{SinkEvent, StatusEvent};
use gateway_core::{
    DeviceId, DeviceRegistry, MetricName, Reading, Sources, SystemClock, Telemetry, TimeSource,
    Timestamp,
};
use rumqttc::{AsyncClient, Request};

use super::super::discovery::{slug, Topics};
use super::super::ids::Ids;
use super::super::{HaSetup, Net};
use super::Announcer;

fn announcer(dir: &std::path::Path) -> (Announcer, flume::Receiver<Request>) {
    let (tx, rx) = flume::unbounded();
    let config = HomeAssistantConfig::default();
    let topics = Topics {
        discovery: config.discovery_prefix.clone(),
        state: config.state_prefix_for("gw-1"),
        gateway: slug("gw-1"),
        ids: Ids::new(Vec::new()),
    };
    let setup = HaSetup {
        config,
        gateway_id: "gw-1".into(),
        state_dir: dir.to_path_buf(),
        registry: DeviceRegistry::default(),
        units: gateway_core::units::Units::new(BTreeMap::new()),
        sources: Sources::default(),
        telemetry: Telemetry::default(),
        sw_version: "test".into(),
        clock: Arc::new(SystemClock),
        commands: None,
    };
    (
        Announcer::new(setup, topics, AsyncClient::from_senders(tx)),
        rx,
    )
}

fn status(device: &str, online: bool) -> SinkEvent {
    SinkEvent::Status(StatusEvent {
        device: DeviceId::new(device).unwrap(),
        online,
        at: Timestamp::now(),
    })
}

/// The payloads published on `topic`, in order, of what the client holds.
fn published(rx: &flume::Receiver<Request>, topic: &str) -> Vec<String> {
    rx.try_iter()
        .filter_map(|r| match r {
            Request::Publish(p) if p.topic == topic => {
                Some(String::from_utf8_lossy(&p.payload).into_owned())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_flapping_device_costs_a_bounded_number_of_availabilities_and_its_last_state_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, rx) = announcer(dir.path());
    a.net(Net::Connected);
    let reading = Reading::new(
        DeviceId::new("fridge-2").unwrap(),
        MetricName::new("temp").unwrap(),
        4.0,
        Timestamp::now(),
        TimeSource::Event,
    )
    .unwrap();
    a.event(SinkEvent::Readings(vec![reading]));
    let topic = a.topics.device_availability("fridge-2");
    assert_eq!(published(&rx, &topic), ["online"], "the reading tells it");

    // 2 001 flaps at once, the last one offline.
    for i in 0..2001 {
        a.event(status("fridge-2", i % 2 == 1));
    }
    let during = published(&rx, &topic);
    assert!(during.len() <= 1, "{} availabilities", during.len());

    // After the quiet period the tick hands the last state over.
    tokio::time::advance(Duration::from_secs(1)).await;
    a.tick();
    let after = published(&rx, &topic);
    let all: Vec<&String> = during.iter().chain(&after).collect();
    assert!(all.len() <= 2, "{} availabilities", all.len());
    assert_eq!(all.last().map(|s| s.as_str()), Some("offline"));

    // Flapping back to the state the broker holds costs nothing more,
    // and a change after the interval goes at once.
    a.event(status("fridge-2", true));
    a.event(status("fridge-2", false));
    tokio::time::advance(Duration::from_secs(2)).await;
    a.tick();
    assert!(published(&rx, &topic).is_empty());
    a.event(status("fridge-2", true));
    assert_eq!(published(&rx, &topic), ["online"]);
}
