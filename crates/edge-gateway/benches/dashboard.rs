//! The dashboard's figures against their targets, printed in one run:
//! history insert cost, bytes written and bytes on disk per aggregate
//! (batched and sealed hourly as the writer does), the overview's weight with 500 devices (target under
//! 300 KB), and the RSS added by 10 open `/events` streams.
//!
//! `cargo bench -p edge-gateway --bench dashboard`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashboard::history::{Batch, History};
use dashboard::{api::Query, pages, server};
use gateway_core::event::SinkEvent;
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/dashboard_fleet.rs"]
mod fleet;

use fleet::{dev, window_ms, DEVICES, METRICS};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes this process sent towards the disk (`/proc/self/io`), the SD
/// card's wear.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history");
    let store = Arc::new(History::open(&path).unwrap());
    let now = Timestamp::now().as_millis();
    let window = window_ms();
    let windows = fleet::DAY_MS / window;
    let t0 = now - windows * window;

    // 1. History: a window close of every device and metric per commit,
    // as the writer batches them at a checkpoint.
    let mut rows = 0u64;
    let mut spent = Duration::ZERO;
    let written_before = written_bytes();
    for w in 0..windows {
        let start = t0 + w * window;
        let batch = Batch {
            windows: fleet::window_rows(w, start, window),
            alerts: vec![],
            commands: vec![],
        };
        rows += batch.windows.len() as u64;
        let t = Instant::now();
        store.write(&batch, 0).unwrap();
        if (w + 1) * window % 3_600_000 == 0 {
            store.prune(i64::MIN, u64::MAX).unwrap();
        }
        spent += t.elapsed();
        // After two hours, the figures of a young store; the full day below.
        if w == 120 {
            let size = store.dir_bytes().unwrap();
            println!(
                "history insert: {:.2} µs per aggregate ({} aggregates in {} commits of {}, fsync per commit)",
                spent.as_secs_f64() * 1e6 / rows as f64,
                rows,
                w + 1,
                DEVICES * METRICS.len()
            );
            println!(
                "history on disk: {:.1} bytes per aggregate ({} bytes for {} aggregates)",
                size as f64 / rows as f64,
                size,
                rows
            );
        }
    }
    let size = store.dir_bytes().unwrap();
    let written = written_bytes() - written_before;
    println!(
        "history written: {:.0} bytes per aggregate, {:.1} MB per hour of {} series",
        written as f64 / rows as f64,
        written as f64 / 1e6 / (windows * window) as f64 * 3_600_000.0,
        DEVICES * METRICS.len()
    );
    println!(
        "history after {} windows of {} series: {} bytes, {:.1} bytes per aggregate, {:.2} µs per aggregate overall",
        windows,
        DEVICES * METRICS.len(),
        size,
        size as f64 / rows as f64,
        spent.as_secs_f64() * 1e6 / rows as f64
    );

    // 2. The overview with 500 devices: live values plus a 24 h sparkline.
    let live = fleet::live_at(now);
    let state = fleet::app_state(live.clone(), store, window);
    let t = Instant::now();
    let html = rt.block_on(pages::overview(&state, &Query::parse("")));
    let rendered = t.elapsed();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, html.as_bytes()).unwrap();
    let zipped = enc.finish().unwrap().len();
    let verdict = if html.len() < 300 * 1024 {
        "ok"
    } else {
        "OVER"
    };
    println!(
        "overview with {DEVICES} devices: {} KB (target < 300 KB: {verdict}), {} KB as served gzipped, rendered in {:.1} ms",
        html.len() / 1024,
        zipped / 1024,
        rendered.as_secs_f64() * 1e3
    );

    // 3. RSS with 10 pages open on /events, while readings stream.
    rt.block_on(async {
        let srv = server::serve("127.0.0.1:0".parse().unwrap(), None, state.clone()).unwrap();
        let before = rss_kib();
        let mut clients = Vec::new();
        for _ in 0..10 {
            let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
            s.write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await.unwrap();
            clients.push(s);
        }
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut s| {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0usize;
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        total += n;
                    }
                    total
                })
            })
            .collect();
        for round in 0..200 {
            let r = Reading::new(
                DeviceId::new(dev(round % DEVICES)).unwrap(),
                MetricName::new("temperature").unwrap(),
                20.0,
                Timestamp::from_millis(now).unwrap(),
                TimeSource::Arrival,
            )
            .unwrap();
            live.apply(
                &SinkEvent::Readings(vec![r]),
                &mut Vec::new(),
                &mut Vec::new(),
            );
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = rss_kib();
        println!(
            "RSS with 10 /events clients: {} KiB total, +{} KiB over none",
            after,
            after.saturating_sub(before)
        );
        srv.stop().await;
        for r in readers {
            let _ = r.await;
        }
    });
}
