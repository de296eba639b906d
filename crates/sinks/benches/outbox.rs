//! Outbox throughput: sustained write rate (one fsync per batch), drain rate
//! (read + acknowledge), and bytes written per message.
//!
//! `cargo bench -p gateway-core --bench outbox` (set OUTBOX_BENCH_DIR to
//! measure another filesystem, e.g. an SD card).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use gateway_core::config::FullPolicy;
use gateway_core::OutboundMessage;
use sinks::outbox::{Outbox, OutboxSettings};

fn message(i: usize) -> OutboundMessage {
    // The size of a real aggregate: one device, three metrics.
    let payload = format!(
        r#"{{"id":"6f1c2b9e-8d4a-5e57-9a0b-{i:012}","gateway":"gw-01","device":"a2:b2:c2:d2:e2:f2","name":"Living Room","window_start":"2026-11-21T10:00:00Z","window_end":"2026-11-21T10:05:00Z","metrics":{{"temperature":{{"count":30,"avg":21.4,"min":21.1,"max":21.9,"std":0.21}},"humidity":{{"count":30,"avg":40.2,"min":39.0,"max":41.0,"std":0.5}},"co2":{{"count":30,"avg":612.0,"min":580.0,"max":650.0,"std":20.1}}}}}}"#
    );
    OutboundMessage {
        topic: "building/hq/a2:b2:c2:d2:e2:f2/aggregated".into(),
        payload: payload.into_bytes(),
        retain: false,
    }
}

fn main() {
    let base = std::env::var_os("OUTBOX_BENCH_DIR").map(std::path::PathBuf::from);
    let settings = OutboxSettings {
        max_bytes: 1 << 30,
        policy: FullPolicy::DropOldest,
        max_age: None,
    };
    println!("outbox bench: one fsync (fdatasync) per append batch; ACKs unsynced");
    println!("payload bytes per message: {}", message(0).payload.len());
    for (batch, total) in [(1usize, 2_000usize), (16, 20_000), (256, 100_000)] {
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let (mut outbox, _) = Outbox::open(dir.path(), settings.clone()).unwrap();
        let msgs: Vec<OutboundMessage> = (0..total).map(message).collect();
        let start = Instant::now();
        for chunk in msgs.chunks(batch) {
            outbox.append(chunk.to_vec(), 0).unwrap();
        }
        let write = start.elapsed();
        let bytes = outbox.bytes();
        let start = Instant::now();
        let mut cursor = 0;
        loop {
            let seqs = outbox.seqs_after(cursor, 256);
            if seqs.is_empty() {
                break;
            }
            for s in seqs {
                let m = outbox.read(s).unwrap().unwrap();
                std::hint::black_box(m);
                outbox.ack(s).unwrap();
                cursor = s;
            }
        }
        let drain = start.elapsed();
        println!(
            "batch {batch:>3}: write {:>9.0} msg/s  drain {:>9.0} msg/s  {:.1} bytes on disk per message",
            total as f64 / write.as_secs_f64(),
            total as f64 / drain.as_secs_f64(),
            bytes as f64 / total as f64,
        );
    }
}
