use super::*;

fn settings(max_bytes: u64) -> SpoolSettings {
    SpoolSettings {
        outbox: OutboxSettings {
            max_bytes,
            policy: FullPolicy::DropOldest,
            max_age: None,
        },
        max_queued: 1000,
    }
}

fn lines(n: usize) -> String {
    (0..n)
        .map(|i| format!("readings,device=dev{} v={i} {i}000000\n", i % 3))
        .collect()
}

#[test]
fn lines_are_cut_between_lines_into_records_that_fit() {
    let text = format!("{}{}\n{}", lines(100), "x".repeat(5000), lines(50));
    let records = line_records("ns", text.clone(), 1000);
    assert!(records.len() > 5, "{}", records.len());
    let mut joined = Vec::new();
    for r in &records {
        assert_eq!(r.topic, "ns");
        assert!(r.payload.ends_with(b"\n"), "cut only after a newline");
        assert!(
            r.payload.len() <= 1000 || !r.payload[..r.payload.len() - 1].contains(&b'\n'),
            "over the limit only as a single line"
        );
        joined.extend_from_slice(&r.payload);
    }
    assert_eq!(joined, text.as_bytes(), "every byte, in order");
    assert!(line_records("ns", String::new(), 10).is_empty());
    assert_eq!(line_records("ns", "a\nb\n".into(), 10).len(), 1);
}

/// The defect: everything taken from the link went into one record, and
/// one over 4 MiB was refused whole (`full_reject_new`) though the outbox
/// was nearly empty.
#[test]
fn lines_far_over_the_record_limit_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::default();
    let mut spool = Spool::open(
        Some(dir.path()),
        settings(256 * 1024 * 1024),
        &telemetry,
        &[],
    )
    .unwrap();
    let text = lines(250_000);
    assert!(text.len() > 2 * record::MAX_BODY, "{}", text.len());
    spool.store_lines("ns", text.clone());
    assert_eq!(
        telemetry.counter_total(OUTBOX_DROPPED),
        0,
        "nothing dropped for its size"
    );
    assert!(spool.is_durable());
    let mut back = Vec::new();
    for seq in spool.outbox().seqs_after(0, usize::MAX) {
        back.extend(spool.read(seq).unwrap().unwrap().payload);
    }
    assert_eq!(back, text.as_bytes(), "every line back, in order");
}
