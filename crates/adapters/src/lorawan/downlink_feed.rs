//! Application downlinks from MQTT: `{"port": N, "data": "<hex|base64>",
//! "confirmed": bool}` published on the adapter's `downlink_topic`
//! (`{device}` standing for the device id), queued for the device's next
//! uplink. The socket loop owns the queues; this task only subscribes,
//! parses and hands each payload over a channel.
//!
//! QoS 1 subscription on a clean session: a command published while the
//! gateway is down is the publisher's to repeat (a retained message would
//! be replayed at every reconnect, so retained messages are ignored).

use std::time::Duration;

use gateway_core::config::BrokerSection;
use mqtt_connect::ConnectionSettings;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::class_a::Queued;
use super::semtech::base64_decode;

/// Where application downlinks come from.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    /// The broker, its credentials and TLS, as every broker of the gateway.
    pub broker: BrokerSection,
    /// A topic with one `{device}` level, e.g. `lorawan/{device}/down`.
    pub topic: String,
}

/// Why a downlink message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("not a downlink object {{\"port\", \"data\", \"confirmed\"}}: {0}")]
    Json(String),
    #[error("`data` is neither hex nor base64")]
    Data,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownlink {
    port: u8,
    data: String,
    #[serde(default)]
    confirmed: bool,
}

/// Parses one downlink message. `data` is read as hex when it is an even
/// number of hex digits, else as base64.
///
/// # Errors
/// A [`FeedError`].
pub fn parse(payload: &[u8]) -> Result<Queued, FeedError> {
    let raw: RawDownlink =
        serde_json::from_slice(payload).map_err(|e| FeedError::Json(e.to_string()))?;
    let text = raw.data.trim();
    let data = if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| FeedError::Data)?
    } else {
        base64_decode(text).ok_or(FeedError::Data)?
    };
    Ok(Queued {
        port: raw.port,
        data,
        confirmed: raw.confirmed,
        ticket: None,
    })
}

/// The device id in `topic` for the pattern `pattern` (one `{device}`).
pub fn device_of<'a>(pattern: &str, topic: &'a str) -> Option<&'a str> {
    let mut pattern_levels = pattern.split('/');
    let mut topic_levels = topic.split('/');
    let mut device = None;
    loop {
        match (pattern_levels.next(), topic_levels.next()) {
            (None, None) => return device,
            (Some("{device}"), Some(level)) if !level.is_empty() => device = Some(level),
            (Some(p), Some(t)) if p == t => {}
            _ => return None,
        }
    }
}

/// The subscription filter of `pattern`.
pub fn filter(pattern: &str) -> String {
    pattern.replace("{device}", "+")
}

/// One message from the feed: the device id and its payload, or why the
/// payload was refused.
pub type FeedItem = (String, Result<Queued, FeedError>);

/// Subscribes to `config.topic` and sends every message's device and
/// payload on `tx` until `stop`.
pub async fn run(
    config: FeedConfig,
    adapter: String,
    tx: mpsc::Sender<FeedItem>,
    stop: CancellationToken,
) {
    let connection =
        ConnectionSettings::new(&config.broker, format!("edge-gateway-{adapter}-downlinks"));
    let options = match connection.mqtt_options(None) {
        Ok(o) => o,
        Err(e) => {
            // The config's validation refused a missing password variable
            // or CA file at start; one removed since lands here. Uplinks go
            // on without downlinks.
            error!(adapter, broker = %config.broker.url, error = %e, "Cannot set up the LoRaWAN downlink broker connection: no application downlinks until restarted.");
            return;
        }
    };
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let filter = filter(&config.topic);
    let mut backoff = Duration::from_millis(100);
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            e = eventloop.poll() => e,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    warn!(adapter, error = %e, "Cannot subscribe to LoRaWAN downlinks.");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                info!(adapter, topic = %filter, "Subscribed to LoRaWAN downlinks.");
            }
            Ok(Event::Incoming(Packet::Publish(p))) if !p.retain => {
                let Some(device) = device_of(&config.topic, &p.topic) else {
                    continue;
                };
                let item = (device.to_string(), parse(&p.payload));
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(adapter, broker = %config.broker.url, error = %e, "LoRaWAN downlink broker unreachable; retrying.");
                // rumqttc retries at once on its own: pace it.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.broker.max_backoff);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_payloads_parse() {
        let q = parse(br#"{"port": 10, "data": "01ff", "confirmed": true}"#).unwrap();
        assert_eq!((q.port, q.data, q.confirmed), (10, vec![1, 0xFF], true));
        let q = parse(br#"{"port": 2, "data": "AQID"}"#).unwrap();
        assert_eq!((q.data, q.confirmed), (vec![1, 2, 3], false));
        assert_eq!(parse(br#"{"port": 2, "data": "!!"}"#), Err(FeedError::Data));
        assert!(matches!(parse(b"{\"port\": 300}"), Err(FeedError::Json(_))));
    }

    #[test]
    fn the_device_comes_from_its_topic_level() {
        let p = "lorawan/{device}/down";
        assert_eq!(filter(p), "lorawan/+/down");
        assert_eq!(device_of(p, "lorawan/office-th/down"), Some("office-th"));
        assert_eq!(device_of(p, "lorawan/office-th/up"), None);
        assert_eq!(device_of(p, "lorawan//down"), None);
        assert_eq!(device_of(p, "lorawan/a/down/x"), None);
    }
}
