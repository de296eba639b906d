//! The adapter against a broker that answers an UNSUBSCRIBE by closing
//! the connection (MQTT 3.1.1 gives it no other way to refuse): a fake
//! one on loopback, as Mosquitto always acknowledges.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::config::Problems;
use gateway_core::{Adapter, AdapterContext, SystemClock, Telemetry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::MqttAdapterConfig;
use super::source::MqttSource;
use super::subscriptions::Memory;
use crate::AdapterKind;

/// What the fake broker saw on one connection.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The filters of an UNSUBSCRIBE, after which it hung up.
    Unsubscribe(Vec<String>),
    /// A SUBSCRIBE, answered with a SUBACK granting every filter.
    Subscribe,
}

async fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let first = s.read_u8().await.ok()?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = s.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

/// The filters of an UNSUBSCRIBE's body (after its packet id).
fn filters(mut body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    body = &body[2..];
    while let [hi, lo, rest @ ..] = body {
        let n = usize::from(u16::from_be_bytes([*hi, *lo]));
        out.push(String::from_utf8(rest[..n].to_vec()).unwrap());
        body = &rest[n..];
    }
    out
}

/// Resumes the session of every connection, hangs up at an UNSUBSCRIBE.
async fn refusing_broker(listener: TcpListener, seen: mpsc::UnboundedSender<Seen>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let Some((0x10, _)) = read_packet(&mut s).await else {
            continue;
        };
        s.write_all(&[0x20, 2, 1, 0]).await.unwrap();
        while let Some((first, body)) = read_packet(&mut s).await {
            match first {
                0xa2 => {
                    let _ = seen.send(Seen::Unsubscribe(filters(&body)));
                    break;
                }
                0x82 => {
                    let granted = filters(&body).len();
                    let mut suback = vec![0x90, u8::try_from(2 + granted).unwrap(), body[0], body[1]];
                    suback.extend(std::iter::repeat_n(1, granted));
                    s.write_all(&suback).await.unwrap();
                    let _ = seen.send(Seen::Subscribe);
                }
                0xc0 => s.write_all(&[0xd0, 0]).await.unwrap(),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn a_broker_that_hangs_up_on_unsubscribe_is_asked_three_times_then_left_subscribed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let broker = tokio::spawn(refusing_broker(listener, tx));

    let text = format!(
        "name = \"fake\"\nurl = \"mqtt://127.0.0.1:{port}\"\ntopics = [\"s/{{device}}/{{metric}}\"]\nstatus_topics = []\nmax_backoff = \"200ms\"\n"
    );
    let mut problems = Problems::default();
    let config =
        MqttAdapterConfig::from_table(toml::from_str(&text).unwrap(), "adapter[0]", &mut problems)
            .unwrap();
    assert!(problems.is_empty(), "{problems}");
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new(
        Some(dir.path()),
        format!("127.0.0.1:{port}"),
        "edge-gateway-gw-fake".to_string(),
    );
    let held: BTreeSet<String> = ["legacy/+/+", "s/+/+"].map(String::from).into();
    memory.remember(Some(held.clone())).await.unwrap();

    let (ingress, _readings) = mpsc::channel(64);
    let telemetry = Telemetry::default();
    let shutdown = CancellationToken::new();
    let ctx = AdapterContext {
        name: "fake".into(),
        ingress: ingress.into(),
        shutdown: shutdown.clone(),
        telemetry: telemetry.clone(),
        clock: Arc::new(SystemClock),
    };
    let source = MqttSource::new(config, "gw").with_state_dir(dir.path().to_path_buf());
    let adapter = tokio::spawn(Box::new(source).run(ctx));

    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(20), seen.recv())
            .await
            .expect("the adapter came back")
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(next().await, Seen::Unsubscribe(vec!["legacy/+/+".into()]));
    }
    // Asked no more: the kept topic is subscribed and flows.
    assert_eq!(next().await, Seen::Subscribe);
    assert_eq!(
        telemetry.counter_value(
            "edge_gateway_adapter_errors_total",
            &[("adapter", "fake"), ("error_type", "unsubscribe_unanswered")]
        ),
        Some(3)
    );
    // Still remembered: the next start asks again.
    assert_eq!(memory.recall().await.unwrap(), Some(held));

    shutdown.cancel();
    adapter.await.unwrap().unwrap();
    broker.abort();
}
