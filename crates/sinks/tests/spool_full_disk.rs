//! The outbox on a disk that fills up (a real tmpfs, as a Pi's SD card or
//! a small /var partition does): every message handed over is stored once
//! or counted as dropped, never both, and the oldest go first, but only
//! once memory holds `max_queued`: a disk something else filled deletes
//! nothing stored before that.
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

impl Tmpfs {
    /// Fills what is left with a file of something else's.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
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

fn drop_oldest(max_bytes: u64, max_queued: usize) -> SpoolSettings {
    SpoolSettings {
        outbox: OutboxSettings {
            max_bytes,
            policy: FullPolicy::DropOldest,
            max_age: None,
        },
        max_queued,
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
    // Memory holds little, so the disk's room is made by the policy.
    let settings = drop_oldest(256 * 1024, 16);
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

/// Found by the soak: the state directory filled (by something else) while
/// an outage's backlog waited in the outbox, and the first window that
/// could not be stored deleted the backlog's segment: 250 acknowledged
/// readings of three devices never reached the cloud. Now what waits is
/// held in memory, nothing stored is deleted, and all of it is stored once
/// there is room again.
#[test]
fn a_disk_something_else_filled_deletes_nothing_stored_while_memory_holds_what_waits() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("state");
    let Some(disk) = Tmpfs::mount(&at, "256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let telemetry = Telemetry::default();
    let settings = drop_oldest(16 * 1024 * 1024, 100_000);
    let mut spool = Spool::open(Some(&at.join("outbox")), settings, &telemetry, &[]).unwrap();
    // The backlog of an outage, stored before the disk fills.
    spool.store((0..100).map(aggregate).collect());
    assert_eq!(spool.outbox().len(), 100);
    disk.fill();
    for batch in (100..160).collect::<Vec<u32>>().chunks(3) {
        spool.store(batch.iter().map(|&i| aggregate(i)).collect());
    }
    let dropped = || telemetry.counter_total("edge_gateway_outbox_dropped_messages_total");
    assert_eq!(dropped(), 0, "nothing dropped while memory holds it");
    // The segment's last page may take a few more before the disk refuses.
    let stored = spool.outbox().len();
    assert!(
        (100..160).contains(&stored),
        "the stored backlog is all there, the rest waits: {stored} stored"
    );
    assert_eq!(spool.waiting(), 160);
    assert!(!spool.is_durable(), "held messages are not on disk yet");

    disk.free();
    spool.housekeeping(1);
    let outbox = spool.outbox();
    let seqs = outbox.seqs_after(0, usize::MAX);
    let stored: Vec<u32> = seqs
        .iter()
        .map(|&s| id_of(&outbox.read(s).unwrap().unwrap()))
        .collect();
    assert_eq!(
        stored,
        (0..160).collect::<Vec<u32>>(),
        "every message once, in order"
    );
    assert!(spool.is_durable());
    assert_eq!(dropped(), 0);
}

/// The tester's: with the state directory on a 2 MB tmpfs and InfluxDB
/// down, the sinks' own outboxes filled it; InfluxDB came back and its
/// output stayed stopped for good ("No space left on device" every ten
/// seconds) while `/health` said ok. The only segment was never deleted
/// however much of it was delivered, an acknowledgement the full disk
/// refused left its message live (sent again and again), and what was
/// held waited forever. Now delivered messages give their space back,
/// what was held is stored, and every message is delivered once.
#[test]
fn delivered_messages_give_their_space_back_and_what_was_held_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("state");
    let Some(_disk) = Tmpfs::mount(&at, "256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let telemetry = Telemetry::default();
    // Segments far larger than the disk, as the sinks' default `max_bytes`
    // makes them on a small state directory.
    let settings = drop_oldest(16 * 1024 * 1024, 100_000);
    let labels = [("output", "influx")];
    let mut spool = Spool::open(Some(&at.join("outbox")), settings, &telemetry, &labels).unwrap();
    let held = || telemetry.gauges(sinks::spool::OUTBOX_HELD);

    // The outage's backlog, until the disk refuses.
    let mut handed = 0u32;
    while spool.is_durable() {
        spool.store((handed..handed + 20).map(aggregate).collect());
        handed += 20;
        assert!(handed < 10_000, "the disk never filled");
    }
    let series = held();
    assert_eq!(series.len(), 1, "{series:?}");
    let (labels, value) = &series[0];
    assert!(*value > 0.0);
    assert!(labels.contains(&("output".into(), "influx".into())));
    assert!(
        labels
            .iter()
            .any(|(k, v)| k == "error" && v.contains("No space left")),
        "{labels:?}"
    );

    // The output delivers what is stored (as InfluxDB back would), the
    // housekeeping stores what was held, and more keeps arriving.
    let mut delivered = Vec::new();
    let mut deliver = |spool: &mut Spool| {
        for seq in spool.outbox().seqs_after(0, usize::MAX) {
            delivered.push(id_of(&spool.read(seq).unwrap().unwrap()));
            spool.ack(seq);
        }
    };
    for tick in 1..=8 {
        deliver(&mut spool);
        spool.housekeeping(tick);
        spool.store((handed..handed + 300).map(aggregate).collect());
        handed += 300;
    }
    for tick in 9..=12 {
        deliver(&mut spool);
        spool.housekeeping(tick);
    }
    assert!(spool.is_durable(), "nothing left held");
    assert_eq!(spool.waiting(), 0);
    assert!(
        held().is_empty(),
        "/health no longer names it: {:?}",
        held()
    );
    assert_eq!(
        telemetry.counter_total("edge_gateway_outbox_dropped_messages_total"),
        0
    );
    assert_eq!(
        delivered,
        (0..handed).collect::<Vec<u32>>(),
        "every message delivered once, in order"
    );
}
