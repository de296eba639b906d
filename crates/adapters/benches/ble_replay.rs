//! Advertisements/s from a recorded capture into the pipeline, in one run:
//!
//! 1. the limit: the replay source alone (`replay_source::play`, speed 0:
//!    read, parse each JSON line, hand it on), drained by a bare channel;
//! 2. the `ble` adapter on the same capture: replay, decode (BTHome),
//!    readings (two values and `rssi`) into a pipeline channel, and the
//!    adapter's share of (1).
//!
//! `cargo bench -p adapters --bench ble_replay` (release profile).
//! `EDGE_BENCH_ADVERTS` (default 200 000) sets the capture size. The
//! adapter should keep at least [`TARGET_SHARE`] of the limit: decoding
//! must not be what limits a replayed capture.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::ble::config::{Accept, BleConfig, BleSource};
use adapters::ble::replay_source;
use adapters::ble::source::BleAdapter;
use gateway_core::{Adapter, AdapterContext, Ingress, SystemClock, Telemetry};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Devices in the capture; each sends bthome.io's format example.
const DEVICES: u32 = 100;
/// Readings per advertisement: temperature, humidity, rssi.
const READINGS_PER_ADVERT: u64 = 3;
/// The adapter's rate as a share of the replay source's alone.
const TARGET_SHARE: f64 = 0.5;

fn capture(n: u32) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut out = std::io::BufWriter::new(file.as_file_mut());
    for i in 0..n {
        let d = i % DEVICES;
        writeln!(
            out,
            r#"{{"ts":"2026-11-21T10:00:00.000Z","mac":"A4:C1:38:00:{:02X}:{:02X}","rssi":-60,"service_data":{{"fcd2":"4002ca0903bf13"}}}}"#,
            d >> 8,
            d & 0xff
        )
        .unwrap();
    }
    out.flush().unwrap();
    drop(out);
    file
}

async fn source_alone(path: &std::path::Path) -> (u64, Duration) {
    let (tx, mut rx) = mpsc::channel(1024);
    let drain = tokio::spawn(async move {
        let mut n = 0u64;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let start = Instant::now();
    let stop = CancellationToken::new();
    replay_source::play(path, 0.0, &tx, &stop, |_, e| panic!("{e}"))
        .await
        .unwrap();
    drop(tx);
    let n = drain.await.unwrap();
    (n, start.elapsed())
}

async fn adapter(path: &std::path::Path, n: u32, state: &std::path::Path) -> (u64, Duration) {
    let (tx, mut rx) = mpsc::channel::<Ingress>(1024);
    let shutdown = CancellationToken::new();
    let ctx = AdapterContext {
        name: "bench".into(),
        ingress: tx.into(),
        shutdown: shutdown.clone(),
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
    };
    let config = BleConfig {
        name: "bench".into(),
        source: BleSource::Replay {
            file: path.to_path_buf(),
            speed: 0.0,
        },
        accept: Accept::Any,
        silence: Duration::from_secs(90),
    };
    let start = Instant::now();
    let run = tokio::spawn(Box::new(BleAdapter::new(config, Vec::new(), state)).run(ctx));
    let want = u64::from(n) * READINGS_PER_ADVERT;
    let mut readings = 0u64;
    // The replay then stays idle: done when every reading has arrived.
    while readings < want {
        match rx.recv().await {
            Some(Ingress::Readings(batch)) => readings += batch.len() as u64,
            Some(_) => {}
            None => break,
        }
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    let _ = run.await;
    (readings / READINGS_PER_ADVERT, elapsed)
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let n: u32 = std::env::var("EDGE_BENCH_ADVERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let file = capture(n);
    let state = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("BLE replay, {n} BTHome advertisements from {DEVICES} devices, speed 0");
        let (played, t) = source_alone(file.path()).await;
        assert_eq!(played, u64::from(n));
        let limit = rate(played, t);
        println!("replay source alone (the limit)       {limit:>12.0} adverts/s");
        let (decoded, t) = adapter(file.path(), n, state.path()).await;
        let got = rate(decoded, t);
        let share = got / limit;
        println!(
            "ble adapter: replay, decode, readings {got:>12.0} adverts/s  {:>5.1}% of limit (target >= {:.0}%) {}",
            share * 100.0,
            TARGET_SHARE * 100.0,
            if decoded == u64::from(n) && share >= TARGET_SHARE {
                "OK"
            } else {
                "BELOW TARGET"
            }
        );
    });
}
