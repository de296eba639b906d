//! The outbox on a disk that fills up (a real tmpfs, as a Pi's SD card or
//! a small /var partition does): every message handed over is stored once
//! or counted as dropped, never both, and the oldest go first.
//!
//! Mounting needs root (CI runs as root); elsewhere the test says it was
//! skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use gateway_core::config::FullPolicy;
use gateway_core::{OutboundMessage, Telemetry};
use sinks::outbox::OutboxSettings;
use sinks::spool::{Spool, SpoolSettings};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// One window's aggregate, about 300 bytes like the gateway's.
fn aggregate(i: u32) -> OutboundMessage {
    OutboundMessage {
        topic: format!("building/hq/dev{i:03}/aggregated"),
        payload: format!(
            r#"{{"id":"{i}","device":"dev{i:03}","metrics":{{"temperature":{{"count":1,"avg":20.0}}}},"pad":"{}"}}"#,
            "x".repeat(200)
        )
        .into_bytes(),
        retain: false,
    }
}

fn id_of(m: &OutboundMessage) -> u32 {
    let j: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    j["id"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_disk_that_fills_keeps_the_newest_once_and_counts_exactly_what_went() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("state");
    let Some(_disk) = Tmpfs::mount(&at, "96k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let telemetry = Telemetry::default();
    let settings = SpoolSettings {
        outbox: OutboxSettings {
            max_bytes: 256 * 1024,
            policy: FullPolicy::DropOldest,
            max_age: None,
        },
        max_queued: 100_000,
    };
    let mut spool = Spool::open(Some(&at.join("outbox")), settings, &telemetry, &[]).unwrap();
    // 400 windows closing at once, handed over in the feed's batches of 64.
    let all: Vec<u32> = (0..400).collect();
    for batch in all.chunks(64) {
        spool.store(batch.iter().map(|&i| aggregate(i)).collect());
    }
    spool.housekeeping(1);

    let outbox = spool.outbox();
    let seqs = outbox.seqs_after(0, usize::MAX);
    let stored: Vec<u32> = seqs
        .iter()
        .map(|&s| id_of(&outbox.read(s).unwrap().unwrap()))
        .collect();
    let dropped = telemetry.counter_total("edge_gateway_outbox_dropped_messages_total") as usize;
    assert!(dropped > 0, "96 KiB cannot hold 400 aggregates");
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(unique, stored, "each message stored once");
    assert_eq!(
        stored.len() + spool.waiting() - outbox.len() + dropped,
        400,
        "stored, held and dropped add up to what was handed over (stored {}, dropped {dropped})",
        stored.len()
    );
    let newest: Vec<u32> = (400 - stored.len() as u32..400).collect();
    assert_eq!(stored, newest, "the oldest gave way");
    // A consumer reads a gap in `seq` as a message lost: the stored ones
    // follow each other without one.
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no number skipped among the stored: {seqs:?}"
    );
}
