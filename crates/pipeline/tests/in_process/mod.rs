//! The pipeline run in-process: its upstream output renders into one queue
//! the test reads, alerts in pipeline order beside the windows.
#![allow(dead_code)]

use gateway_core::units::Units;
use gateway_core::{DeviceRegistry, OutboundMessage};
use pipeline::fanout::{Output, SinkFanout, SINK_QUEUE};
use sinks::mqtt_upstream::{Feed, Render, Renderer};
use tokio::sync::mpsc;

/// Outputs of one upstream, gateway `gw-01` under `building/hq`, whose
/// messages land in `out`.
pub fn upstream_into(registry: DeviceRegistry, out: mpsc::Sender<OutboundMessage>) -> SinkFanout {
    let (events, rx) = mpsc::channel(SINK_QUEUE);
    let feed = Feed::new(
        Renderer {
            gateway_id: "gw-01".into(),
            prefix: "building/hq".into(),
            registry,
        },
        Units::default(),
    );
    // The upstream's rendering, every lane into the one queue.
    tokio::spawn(async move {
        let (mut feed, mut rx) = (feed, rx);
        let mut rendered = Vec::new();
        while let Some(event) = rx.recv().await {
            feed.render(event, false, &mut rendered);
            for (msg, _) in rendered.drain(..) {
                if out.send(msg).await.is_err() {
                    return;
                }
            }
        }
    });
    SinkFanout::new(vec![Output::upstream(events, None)])
}
