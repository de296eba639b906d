use std::path::Path;
use std::time::Duration;

use super::*;
use gateway_core::OutboundMessage;

fn msg(i: u64) -> OutboundMessage {
    OutboundMessage {
        topic: format!("building/hq/dev{}/aggregated", i % 7),
        payload: format!(r#"{{"id":"{i}","pad":"{}"}}"#, "x".repeat(100)).into_bytes(),
        retain: false,
    }
}

fn settings(max_bytes: u64, policy: FullPolicy) -> OutboxSettings {
    OutboxSettings {
        max_bytes,
        policy,
        max_age: None,
    }
}

fn open(dir: &Path, s: OutboxSettings) -> (Outbox, Recovery) {
    Outbox::open(dir, s).unwrap()
}

fn ids(o: &Outbox) -> Vec<u64> {
    o.seqs_after(0, usize::MAX)
        .into_iter()
        .map(|s| {
            let m = o.read(s).unwrap().unwrap();
            let j: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            j["id"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn unacknowledged_messages_survive_a_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, r) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    assert_eq!((r.messages, r.damage.len()), (0, 0));
    let a = o.append((0..10).map(msg).collect(), 1000).unwrap();
    assert_eq!(a.seqs, (1..=10).collect::<Vec<_>>());
    for seq in [1, 2, 5] {
        assert!(o.ack(seq).unwrap());
    }
    assert!(!o.ack(5).unwrap(), "a second ack is a no-op");
    drop(o);
    let (o, r) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    assert_eq!(r.messages, 7);
    assert!(r.damage.is_empty());
    assert_eq!(ids(&o), [2, 3, 5, 6, 7, 8, 9]);
    assert_eq!(o.last_seq(), 10, "numbering continues after a reopen");
}

#[test]
fn a_torn_tail_is_reported_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    o.append((0..20).map(msg).collect(), 0).unwrap();
    drop(o);
    let seg = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 30).unwrap(); // power cut in the middle of the last record
    drop(f);
    let (mut o, r) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    assert_eq!(r.messages, 19);
    assert_eq!(r.damage.len(), 1);
    assert_eq!(ids(&o), (0..19).collect::<Vec<_>>());
    // New writes go to a fresh segment, never after the damage.
    let a = o.append(vec![msg(99)], 0).unwrap();
    drop(o);
    let (o, r) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    assert_eq!(r.messages, 20);
    assert!(o.read(a.seqs[0]).unwrap().is_some());
}

#[test]
fn scribbled_bytes_are_skipped_and_later_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    o.append((0..30).map(msg).collect(), 0).unwrap();
    drop(o);
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let third = bytes.len() / 3;
    for b in &mut bytes[third..third + 200] {
        *b = 0xA5;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let (o, r) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    let got = ids(&o);
    assert!(
        got.len() >= 27 && got.len() < 30,
        "lost only the scribbled records: {got:?}"
    );
    assert_eq!(got.last(), Some(&29), "records after the damage are kept");
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_every_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = open(dir.path(), settings(64 * 1024, FullPolicy::DropOldest));
    let mut evicted = 0;
    for batch in 0..20 {
        let a = o
            .append((batch * 50..batch * 50 + 50).map(msg).collect(), 0)
            .unwrap();
        assert_eq!(a.rejected, 0);
        evicted += a.evicted;
    }
    let kept = ids(&o);
    assert_eq!(
        kept.len() as u64 + evicted,
        1000,
        "every message is kept or counted"
    );
    assert_eq!(
        kept,
        (1000 - kept.len() as u64..1000).collect::<Vec<_>>(),
        "the newest survive"
    );
    assert!(o.bytes() <= 64 * 1024);
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 64 * 1024, "{on_disk} bytes on disk");
}

#[test]
fn reject_new_keeps_the_oldest_and_counts_every_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = open(dir.path(), settings(64 * 1024, FullPolicy::RejectNew));
    let mut rejected = 0;
    for batch in 0..20 {
        let a = o
            .append((batch * 50..batch * 50 + 50).map(msg).collect(), 0)
            .unwrap();
        assert_eq!(a.evicted, 0);
        rejected += a.rejected;
    }
    let kept = ids(&o);
    assert_eq!(kept.len() as u64 + rejected, 1000);
    assert_eq!(
        kept,
        (0..kept.len() as u64).collect::<Vec<_>>(),
        "the oldest survive"
    );
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = open(dir.path(), settings(64 * 1024, FullPolicy::DropOldest));
    let a = o.append((0..200).map(msg).collect(), 0).unwrap();
    assert!(segments(dir.path()).len() > 2);
    for s in a.seqs {
        o.ack(s).unwrap();
    }
    assert!(o.is_empty());
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "only the active segment is left"
    );
}

/// The active segment was never deleted, however much of it was
/// delivered: on a small state directory it filled the disk for good.
#[test]
fn a_settled_active_segment_gives_its_space_back_and_keeps_the_numbering() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 4 MiB: these messages never fill one.
    let s = settings(256 * 1024 * 1024, FullPolicy::DropOldest);
    let (mut o, _) = open(dir.path(), s.clone());
    let a = o.append((0..50).map(msg).collect(), 0).unwrap();
    assert_eq!(o.reclaim().unwrap(), 0, "nothing settled yet");
    for seq in &a.seqs[..49] {
        o.ack(*seq).unwrap();
    }
    assert_eq!(o.reclaim().unwrap(), 0, "one message still live");
    o.ack(a.seqs[49]).unwrap();
    let before = o.bytes();
    let freed = o.reclaim().unwrap();
    assert!(freed > 50 * 100, "freed {freed} of {before}");
    let files = segments(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().len(),
        o.bytes(),
        "only the new segment's floor is left"
    );
    drop(o);
    let (mut o, r) = open(dir.path(), s);
    assert_eq!(r.messages, 0);
    assert_eq!(o.append(vec![msg(0)], 0).unwrap().seqs, [51]);
}

/// Once a quarter of a segment is settled, an acknowledgement frees it
/// without waiting for a full disk.
#[test]
fn acknowledging_a_large_settled_active_segment_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 8 KiB; 40 messages of ~170 bytes stay in one.
    let (mut o, _) = open(dir.path(), settings(64 * 1024, FullPolicy::DropOldest));
    let a = o.append((0..40).map(msg).collect(), 0).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    for seq in a.seqs {
        o.ack(seq).unwrap();
    }
    assert!(o.bytes() < 100, "{} bytes left", o.bytes());
}

#[test]
fn numbering_survives_reopens_after_everything_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(64 * 1024, FullPolicy::DropOldest);
    let (mut o, _) = open(dir.path(), s.clone());
    let a = o.append((0..200).map(msg).collect(), 0).unwrap();
    for seq in a.seqs {
        o.ack(seq).unwrap();
    }
    drop(o);
    // The first reopen deletes every old segment; the second finds only
    // the segment it started, which must still know the numbering.
    drop(open(dir.path(), s.clone()));
    let (mut o, _) = open(dir.path(), s);
    assert_eq!(o.last_seq(), 200);
    assert_eq!(o.append(vec![msg(0)], 0).unwrap().seqs, [201]);
}

#[test]
fn old_messages_expire_when_max_age_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(1 << 20, FullPolicy::DropOldest);
    s.max_age = Some(Duration::from_secs(60));
    let (mut o, _) = open(dir.path(), s.clone());
    o.append((0..3).map(msg).collect(), 0).unwrap();
    o.append((3..5).map(msg).collect(), 50_000).unwrap();
    assert_eq!(o.expire(70_000).unwrap(), 3);
    assert_eq!(ids(&o), [3, 4]);
    drop(o);
    let (o, _) = open(dir.path(), s);
    assert_eq!(ids(&o), [3, 4], "expiry is durable");
}

#[test]
fn a_second_gateway_cannot_open_the_same_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (_o, _) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    assert!(matches!(
        Outbox::open(dir.path(), settings(1 << 20, FullPolicy::DropOldest)),
        Err(OutboxError::Locked(_))
    ));
}

#[test]
fn memory_mode_applies_the_same_policy() {
    let mut o = Outbox::in_memory(settings(16 * 1024, FullPolicy::DropOldest));
    let a = o.append((0..500).map(msg).collect(), 0).unwrap();
    assert_eq!(ids(&o).len() as u64 + a.evicted, 500);
    assert_eq!(*ids(&o).last().unwrap(), 499);
    assert!(!o.is_durable());
}

/// Issue 69: the messages kept in memory, let go after a burst, are read
/// back from the disk, each once and the same.
#[test]
fn messages_let_go_of_are_taken_from_disk_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    let a = o.append((0..50).map(msg).collect(), 1000).unwrap();
    assert_eq!(o.fresh_len(), 50);
    o.let_go_of_fresh();
    assert_eq!(o.fresh_len(), 0);
    for (i, seq) in a.seqs.iter().enumerate() {
        assert_eq!(o.take(*seq).unwrap(), Some(msg(i as u64)), "{seq}");
    }
    assert_eq!(o.len(), 50, "nothing acknowledged by letting go");
}

/// Issue 69: a message read for sending right after its write comes from
/// memory, the same message, once; the disk still holds every one of
/// them for a crash, and one acknowledged, expired or evicted is gone.
#[test]
fn a_message_just_written_is_taken_from_memory_once_and_stays_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    let n = 400;
    let a = o.append((0..n).map(msg).collect(), 1000).unwrap();
    assert_eq!(a.seqs.len(), 400);
    let kept = o.fresh_len();
    assert!(kept > 0 && kept < 400, "bounded: {kept}");
    // The oldest were let go (read back from disk), the newest are kept.
    assert_eq!(o.take(1).unwrap(), Some(msg(0)));
    assert_eq!(o.fresh_len(), kept);
    assert_eq!(o.take(n).unwrap(), Some(msg(n - 1)));
    assert_eq!(o.fresh_len(), kept - 1);
    // Taken once: again, it is read back, the same.
    assert_eq!(o.take(n).unwrap(), Some(msg(n - 1)));
    assert!(o.ack(n - 1).unwrap());
    assert_eq!(o.take(n - 1).unwrap(), None, "acknowledged");
    assert_eq!(o.fresh_len(), kept - 2);
    for seq in 2..=n - 2 {
        assert_eq!(o.take(seq).unwrap(), Some(msg(seq - 1)), "{seq}");
    }
    assert_eq!(o.fresh_len(), 0);
    // A crash now: everything not acknowledged is on disk.
    drop(o);
    let (mut o, r) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    assert_eq!(r.messages, 399);
    assert_eq!(o.fresh_len(), 0);
    assert_eq!(o.take(n).unwrap(), Some(msg(n - 1)));
    drop(o);
    // Evicted while kept: gone from both.
    let small = tempfile::tempdir().unwrap();
    let (mut o2, _) = open(small.path(), settings(4 * 1024, FullPolicy::DropOldest));
    let a = o2.append((0..200).map(msg).collect(), 0).unwrap();
    assert!(a.evicted > 0);
    let first = *a.seqs.first().unwrap();
    assert!(o2.seqs_after(0, 1)[0] > first, "the oldest were evicted");
    assert_eq!(o2.take(first).unwrap(), None);
}

/// A run of messages lands on disk as the records `record::encode`
/// writes, one after the other (the first segment has no floor to
/// carry): what a release before the run was encoded in place wrote,
/// byte for byte.
#[test]
fn a_run_on_disk_is_its_records_back_to_back() {
    use record::Record;
    let dir = tempfile::tempdir().unwrap();
    let (mut o, _) = open(dir.path(), settings(1 << 20, FullPolicy::DropOldest));
    let msgs: Vec<_> = (0..40).map(msg).collect();
    assert_eq!(o.append(msgs[..25].to_vec(), 1000).unwrap().seqs.len(), 25);
    assert_eq!(o.append(msgs[25..].to_vec(), 2000).unwrap().seqs.len(), 15);
    let mut want = Vec::new();
    for (i, m) in msgs.into_iter().enumerate() {
        let rec = Record::Message {
            seq: i as u64 + 1,
            created_ms: if i < 25 { 1000 } else { 2000 },
            msg: m,
        };
        record::encode(&rec, &mut want).unwrap();
    }
    let files = segments(dir.path());
    assert_eq!(files.len(), 1);
    assert!(std::fs::read(&files[0]).unwrap() == want, "the bytes moved");
    assert_eq!(o.first_after(0), Some(1));
    assert!(o.ack(2).unwrap() && o.ack(3).unwrap());
    for after in 0..=41 {
        assert_eq!(
            o.first_after(after),
            o.seqs_after(after, 1).first().copied(),
            "after {after}"
        );
    }
    assert_eq!(
        o.first_after(1),
        Some(4),
        "acknowledged ones are passed over"
    );
    assert_eq!(o.first_after(u64::MAX), None);
}
