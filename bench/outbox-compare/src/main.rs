//! The gateway's outbox log against redb and SQLite (WAL) on one workload:
//! append rate per batch size (each batch durable before the call returns),
//! drain rate (read in order, acknowledge each message without an fsync),
//! bytes per message, and what each store recovers from a damaged file.
//!
//! `cargo run --release --manifest-path bench/outbox-compare/Cargo.toml`
//! (set OUTBOX_COMPARE_DIR to measure another filesystem, e.g. an SD card).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod damage;
mod stores;

use std::path::Path;
use std::time::Instant;

use gateway_core::OutboundMessage;
use stores::Kind;

/// The gateway bench's message: one device's 5-minute aggregate of three
/// metrics, ~400 bytes of topic and JSON.
pub fn message(i: u64) -> OutboundMessage {
    let payload = format!(
        r#"{{"id":"6f1c2b9e-8d4a-5e57-9a0b-{i:012}","gateway":"gw-01","device":"a2:b2:c2:d2:e2:f2","name":"Living Room","window_start":"2026-11-21T10:00:00Z","window_end":"2026-11-21T10:05:00Z","metrics":{{"temperature":{{"count":30,"avg":21.4,"min":21.1,"max":21.9,"std":0.21}},"humidity":{{"count":30,"avg":40.2,"min":39.0,"max":41.0,"std":0.5}},"co2":{{"count":30,"avg":612.0,"min":580.0,"max":650.0,"std":20.1}}}}}}"#
    );
    OutboundMessage {
        topic: "building/hq/a2:b2:c2:d2:e2:f2/aggregated".into(),
        payload: payload.into_bytes(),
        retain: false,
    }
}

/// Bytes this process caused to be sent to the block layer
/// (`write_bytes` of /proc/self/io); journal writes of the filesystem
/// itself are not in it.
fn written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn file_bytes(kind: Kind, dir: &Path) -> u64 {
    kind.files(dir)
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

struct Row {
    append_rate: f64,
    drain_rate: f64,
    file_per_msg: f64,
    written_append_per_msg: f64,
    written_drain_per_msg: f64,
}

fn throughput(kind: Kind, base: &Path, batch: usize, total: u64) -> Row {
    let dir = tempfile::tempdir_in(base).unwrap();
    let mut store = kind.open(dir.path()).unwrap();
    let msgs: Vec<OutboundMessage> = (0..total).map(message).collect();

    let w0 = written();
    let start = Instant::now();
    for (i, chunk) in msgs.chunks(batch).enumerate() {
        store.append(1 + (i * batch) as u64, chunk).unwrap();
    }
    let append = start.elapsed();
    let w1 = written();
    let files = file_bytes(kind, dir.path());

    let start = Instant::now();
    let (mut cursor, mut drained) = (0, 0u64);
    loop {
        let got = store.read_after(cursor, 256).unwrap();
        if got.is_empty() {
            break;
        }
        for (seq, m) in got {
            std::hint::black_box(m);
            store.ack(seq).unwrap();
            cursor = seq;
            drained += 1;
        }
    }
    // Closing is part of the drain: redb keeps non-durable commits in
    // memory and SQLite checkpoints its WAL when the last connection closes.
    drop(store);
    let drain = start.elapsed();
    let w2 = written();
    assert_eq!(drained, total, "{} lost messages", kind.name());

    let n = total as f64;
    Row {
        append_rate: n / append.as_secs_f64(),
        drain_rate: n / drain.as_secs_f64(),
        file_per_msg: files as f64 / n,
        written_append_per_msg: (w1 - w0) as f64 / n,
        written_drain_per_msg: (w2 - w1) as f64 / n,
    }
}

fn main() {
    let base = std::env::var_os("OUTBOX_COMPARE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let started = Instant::now();
    let m = message(0);
    println!(
        "message: {} B topic + {} B JSON payload; cores: {}; dir: {}",
        m.topic.len(),
        m.payload.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        base.display()
    );
    println!("append: each batch durable before the call returns (fdatasync / redb Immediate / SQLite FULL)");
    println!("drain: read 256 in order, then one unsynced ack/delete per message; closing the store included");
    println!("* SQLite NORMAL does not fsync appends: not equal durability, for reference only\n");
    println!(
        "| store | batch | msgs | append msg/s | drain msg/s | file B/msg | written B/msg (append) | written B/msg (drain) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (batch, total) in [(1usize, 1_000u64), (16, 16_000), (256, 64_000)] {
        for kind in Kind::ALL {
            let r = throughput(kind, &base, batch, total);
            println!(
                "| {} | {batch} | {total} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                kind.name(),
                r.append_rate,
                r.drain_rate,
                r.file_per_msg,
                r.written_append_per_msg,
                r.written_drain_per_msg,
            );
        }
    }

    // Expected panics are caught and reported in the table, once per case.
    std::panic::set_hook(Box::new(|_| {}));
    println!(
        "\nDamage: {} messages in batches of 16, damage applied to a copy, reopened and read back in order.\n",
        damage::N
    );
    println!("| store | shutdown | damage | file | opens | intact, in-order read | intact, seeking past errors | wrong | first read error |");
    println!("|---|---|---|---|---|---:|---:|---:|---|");
    for shutdown in [damage::Shutdown::Clean, damage::Shutdown::Crash] {
        for kind in [Kind::Log, Kind::Redb, Kind::SqliteFull] {
            let dir = tempfile::tempdir_in(&base).unwrap();
            match damage::run(kind, dir.path(), shutdown) {
                Ok(cases) => {
                    for (d, o) in cases {
                        println!(
                            "| {} | {shutdown:?} | {} | {} | {} | {} | {} | {} | {} |",
                            kind.name(),
                            d.name(),
                            o.target,
                            one_line(&o.open),
                            o.intact,
                            o.salvaged,
                            o.wrong,
                            o.read_error.as_deref().map_or("-".into(), one_line),
                        );
                    }
                }
                Err(e) => println!("| {} | {shutdown:?} | setup failed: {e} |", kind.name()),
            }
        }
    }
    println!("\ntotal time: {:.1} s", started.elapsed().as_secs_f64());
}

/// Error texts go in a markdown table cell.
fn one_line(s: &str) -> String {
    let s = s.replace(['\n', '|'], " ");
    if s.chars().count() > 90 {
        format!("{}…", s.chars().take(90).collect::<String>())
    } else {
        s
    }
}
