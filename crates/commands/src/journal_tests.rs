#![allow(clippy::unwrap_used)]

use super::*;

const KEEP: Duration = Duration::from_secs(65);
const T0: i64 = 1_795_000_000_000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + ms).unwrap()
}

fn done(device: &str) -> Recorded {
    Recorded {
        device: device.into(),
        metric: "setpoint".into(),
        value: serde_json::json!(21.5),
        status: "done".into(),
        reason: String::new(),
        detail: String::new(),
        // Read back from the device, kept across a restart.
        applied: Some(21.5),
        ts: at(0).to_rfc3339(),
        topic_device: None,
    }
}

fn open(dir: &Path, now: i64) -> Journal {
    Journal::open(dir, KEEP, at(now)).unwrap()
}

/// A rule's action is journaled without a sync of its own: the line is
/// still written at once, so a gateway killed right after knows the id.
#[test]
fn an_unsynced_line_is_known_to_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.start("rule-1", None, done("fan-1"), at(0), Sync::WithTheNext)
        .unwrap();
    j.finish("rule-1", None, done("fan-1"), at(0), Sync::WithTheNext)
        .unwrap();
    j.start("rule-2", None, done("fan-1"), at(0), Sync::WithTheNext)
        .unwrap();
    drop(j);
    let j = open(dir.path(), 10);
    assert_eq!(
        j.get("fan-1", "rule-1"),
        Some(&Known::Finished(done("fan-1")))
    );
    assert!(matches!(j.get("fan-1", "rule-2"), Some(Known::Started(_))));
}

#[test]
fn a_reopened_journal_knows_started_and_finished_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.start("a", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    j.finish("a", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    j.start("b", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    let j = open(dir.path(), 10);
    assert_eq!(j.get("ahu-1", "a"), Some(&Known::Finished(done("ahu-1"))));
    let started = Recorded {
        status: STARTED.into(),
        ..done("ahu-1")
    };
    assert_eq!(j.get("ahu-1", "b"), Some(&Known::Started(started.clone())));
    assert_eq!(j.interrupted(), vec![("b".to_string(), started)]);
    assert_eq!(j.get("ahu-1", "c"), None);
    assert_eq!(j.damaged(), 0);
}

#[test]
fn an_id_is_its_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.finish("a", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    assert!(j.get("ahu-1", "a").is_some());
    assert_eq!(j.get("ahu-2", "a"), None, "another device's command");
}

/// The attack: thousands of refused commands used to push a real id out
/// of a memory of 10 000, and its replay ran again.
#[test]
fn no_number_of_other_ids_pushes_an_id_out_before_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.finish("real", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    for i in 0..500 {
        j.finish(
            &format!("junk-{i}"),
            Some(at(1)),
            done("nobody"),
            at(1),
            Sync::Now,
        )
        .unwrap();
    }
    assert!(j.get("ahu-1", "real").is_some());
    drop(j);
    let mut j = open(dir.path(), 64_000);
    assert!(j.get("ahu-1", "real").is_some(), "kept across a restart");
    // Once a replay of it would be expired (made + max_age + tolerance),
    // it is forgotten, and its ts becomes the horizon.
    j.finish(
        "later",
        Some(at(65_500)),
        done("ahu-1"),
        at(65_500),
        Sync::Now,
    )
    .unwrap();
    assert_eq!(j.get("ahu-1", "real"), None);
    assert_eq!(j.horizon(), Some(at(1)));
    assert_eq!(j.len(), 1);
    drop(j);
    let lines = fs::read_to_string(dir.path().join("journal"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        lines, 4,
        "the horizon and the one id left, each twice: {lines} lines"
    );
    // The horizon outlives the rewrite and the ids it dropped, even with
    // the clock stepped back to before them.
    let j = open(dir.path(), 0);
    assert_eq!(j.horizon(), Some(at(1)));
    assert!(j.get("ahu-1", "later").is_some());
    drop(j);
    // And one damaged byte in it, or its newline lost, loses it not: a
    // forgotten command replayed under a clock stepped back ran again.
    let path = dir.path().join("journal");
    for damage in [1usize, 0] {
        let mut bytes = fs::read(&path).unwrap();
        let first_newline = bytes.iter().position(|b| *b == b'\n').unwrap();
        if damage == 1 {
            bytes[4] = b'#'; // {"ho#izon":…
        } else {
            bytes[first_newline] = b'#';
        }
        fs::write(&path, &bytes).unwrap();
        let j = open(dir.path(), 0);
        assert_eq!(j.damaged(), 1);
        assert_eq!(j.horizon(), Some(at(1)), "damage {damage}");
        drop(j);
    }
}

#[test]
fn a_command_without_ts_is_remembered_from_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    let mut r = done("ahu-1");
    r.ts = at(30_000).to_rfc3339();
    j.finish("ha-1", None, r, at(30_000), Sync::Now).unwrap();
    j.finish("x", None, done("ahu-1"), at(94_000), Sync::Now)
        .unwrap();
    assert!(j.get("ahu-1", "ha-1").is_some());
    j.finish("y", None, done("ahu-1"), at(95_500), Sync::Now)
        .unwrap();
    assert_eq!(j.get("ahu-1", "ha-1"), None);
    assert_eq!(j.horizon(), None, "only a sender's ts makes the horizon");
}

#[test]
fn a_torn_last_line_is_skipped_and_the_next_append_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.start("a", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    let path = dir.path().join("journal");
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(br#"{"id":"b","res"#).unwrap();
    let mut j = open(dir.path(), 0);
    assert!(matches!(j.get("ahu-1", "a"), Some(Known::Started(_))));
    assert_eq!(j.get("ahu-1", "b"), None);
    assert_eq!(j.damaged(), 1);
    // Before, this line was glued to the torn one and lost at the next start.
    j.finish("c", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    let j = open(dir.path(), 0);
    assert!(j.get("ahu-1", "c").is_some());
    assert_eq!(j.damaged(), 0);
}

/// The attack: one 0xFF in one line stopped the replay there, so that id
/// and every later one ran again, and ids journaled after the restart
/// were lost at the next. Now a result without a start line is written
/// twice: a damaged line costs nothing, and a damaged newline (two lines
/// joined) costs neither of them.
#[test]
fn a_damaged_byte_costs_its_line_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    for id in ["a", "b", "c", "d", "e", "f"] {
        j.finish(id, Some(at(0)), done("ahu-1"), at(0), Sync::Now)
            .unwrap();
    }
    drop(j);
    let path = dir.path().join("journal");
    let mut bytes = fs::read(&path).unwrap();
    let newlines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect();
    // A byte inside b's first line, and the newline between c's two.
    bytes[newlines[1] + 5] = 0xFF;
    bytes[newlines[4]] = b'#';
    fs::write(&path, &bytes).unwrap();

    let mut j = open(dir.path(), 0);
    assert_eq!(j.damaged(), 2);
    for id in ["a", "b", "c", "d", "e", "f"] {
        assert!(j.get("ahu-1", id).is_some(), "{id} is kept");
    }
    // Rewritten clean: every line reads, and what is journaled now is
    // still there after the next start.
    let text = fs::read_to_string(&path).expect("UTF-8 again");
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<Line>(l).is_ok()));
    j.finish("g", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    let j = open(dir.path(), 0);
    assert_eq!(j.damaged(), 0);
    for id in ["a", "b", "c", "d", "e", "f", "g"] {
        assert!(j.get("ahu-1", id).is_some(), "{id} is kept");
    }
}

/// The tester's case: the newline between a command's start and its
/// result replaced, so both lines read as one damaged line: each record
/// in it is still read, and the id is known as done.
#[test]
fn a_start_and_a_result_joined_by_a_lost_newline_are_both_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.start("j-1", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    j.finish("j-1", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    let path = dir.path().join("journal");
    let mut bytes = fs::read(&path).unwrap();
    let first = bytes.iter().position(|b| *b == b'\n').unwrap();
    bytes[first] = b'#';
    fs::write(&path, &bytes).unwrap();
    let j = open(dir.path(), 0);
    assert_eq!(j.damaged(), 1);
    assert!(
        matches!(j.get("ahu-1", "j-1"), Some(Known::Finished(r)) if r.status == "done"),
        "{:?}",
        j.get("ahu-1", "j-1")
    );
}

#[test]
fn one_damaged_line_of_an_executed_command_leaves_its_id_known() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.start("a", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    j.finish("a", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    let path = dir.path().join("journal");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] = 0xFF;
    fs::write(&path, &bytes).unwrap();
    let j = open(dir.path(), 0);
    assert_eq!(j.damaged(), 1);
    assert!(
        matches!(j.get("ahu-1", "a"), Some(Known::Started(_))),
        "never written again"
    );
}

/// A kill -9 during a write, and the gateway down for longer than
/// max_age: the id is still found started, so it is reported
/// `interrupted` (and never written again), not judged as a new command.
#[test]
fn an_id_started_and_never_finished_outlives_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.start("k-1", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    let mut j = open(dir.path(), 3_600_000);
    assert!(matches!(j.get("ahu-1", "k-1"), Some(Known::Started(_))));
    assert_eq!(j.interrupted().len(), 1);
    // Its result, journaled now, answers the broker's re-delivery for
    // as long as any id is remembered; then it is forgotten.
    let mut result = done("ahu-1");
    result.ts = at(3_600_000).to_rfc3339();
    j.finish("k-1", None, result, at(3_600_000), Sync::Now)
        .unwrap();
    j.finish("x", None, done("ahu-1"), at(3_660_000), Sync::Now)
        .unwrap();
    assert!(matches!(j.get("ahu-1", "k-1"), Some(Known::Finished(_))));
    j.finish("y", None, done("ahu-1"), at(3_700_000), Sync::Now)
        .unwrap();
    assert_eq!(j.get("ahu-1", "k-1"), None);
    assert_eq!(j.horizon(), Some(at(0)), "its ts, as it had one");
}

/// A journal deleted by hand (or left out of a restore) forgets what it
/// would refuse to run twice: said, not silently started anew.
#[test]
fn a_journal_missing_from_its_directory_is_known_to_be_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("commands");
    let mut j = open(&commands, 0);
    assert!(!j.recreated(), "a first start is no loss");
    j.start("a", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    assert!(!open(&commands, 10).recreated());
    std::fs::remove_file(commands.join("journal")).unwrap();
    let j = open(&commands, 20);
    assert!(j.recreated());
    assert_eq!(j.get("ahu-1", "a"), None);
}

/// A device's flood mark survives a restart, a rewrite, and a damaged
/// copy of its line; once older than `keep` it becomes the horizon.
#[test]
fn a_flood_mark_outlives_restarts_and_rewrites_then_becomes_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.refused_unremembered("ahu-1", at(100), at(100)).unwrap();
    assert_eq!(
        j.refused_upto("ahu-1"),
        Some(at(100)),
        "exact while running"
    );
    assert_eq!(j.refused_upto("lamp-1"), None);
    // Covered already: no new line.
    let lines = j.lines;
    assert!(j.refused_unremembered("ahu-1", at(200), at(200)).unwrap());
    assert_eq!(j.lines, lines);
    drop(j);

    // One copy damaged: the other still holds the mark.
    let path = dir.path().join("journal");
    let text = fs::read_to_string(&path).unwrap();
    let damaged = text.replacen("refused_upto", "refused_uptX", 1);
    fs::write(&path, damaged).unwrap();
    let mut j = open(dir.path(), 1_000);
    // Read back: the mark as written, a second past the newest refused.
    let mark = j.refused_upto("ahu-1").unwrap();
    assert!(mark >= at(200) && mark <= at(1_100), "{mark:?}");
    // Rewritten (by the damage): the mark is in the new file.
    j.rewrite().unwrap();
    drop(j);
    let j = open(dir.path(), 2_000);
    assert_eq!(j.refused_upto("ahu-1"), Some(mark));
    assert_eq!(j.horizon(), None);
    drop(j);

    // Older than keep: dropped, and a replay older still is refused by
    // the horizon whatever the clock says.
    let later = mark.as_millis() - T0 + i64::try_from(KEEP.as_millis()).unwrap() + 1;
    let j = open(dir.path(), later);
    assert_eq!(j.refused_upto("ahu-1"), None);
    assert_eq!(j.horizon(), Some(mark));
}

/// A flood of commands older than any id is kept, refused without lines
/// of their own: one mark at `keep` ago covers them all, on disk (a
/// horizon raised in memory only was gone after a restart).
#[test]
fn old_refusals_in_a_full_journal_write_one_mark() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    let keep = i64::try_from(KEEP.as_millis()).unwrap();
    let now = 10 * keep;
    let lines = j.lines;
    for k in 0..1_000 {
        assert!(j.refused_unremembered("ahu-1", at(k), at(now)).unwrap());
    }
    assert_eq!(j.lines, lines + 2);
    drop(j);
    let j = open(dir.path(), now);
    assert!(j.refused_upto("ahu-1").is_some_and(|m| m >= at(999)));
}

/// A mark whose line cannot be written (a full disk) covers nothing: the
/// next refusal is not reported final on a mark that is not on disk.
#[test]
fn a_mark_whose_line_cannot_be_written_covers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    let real = std::mem::replace(
        &mut j.file,
        OpenOptions::new().write(true).open("/dev/full").unwrap(),
    );
    assert!(j.refused_unremembered("ahu-1", at(100), at(100)).is_err());
    assert!(j.refused_unremembered("ahu-1", at(900), at(900)).is_err());
    assert_eq!(j.refused_upto("ahu-1"), None);
    j.file = real;
    assert!(j.refused_unremembered("ahu-1", at(900), at(900)).unwrap());
    drop(j);
    let j = open(dir.path(), 1_000);
    assert!(j.refused_upto("ahu-1").is_some_and(|m| m >= at(900)));
}

/// One changed digit in a mark's year still reads as a mark, a thousand
/// years ahead: brought back at start, it cannot shut its device out.
#[test]
fn a_mark_read_back_far_ahead_is_brought_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.refused_unremembered("ahu-1", at(100), at(100)).unwrap();
    drop(j);
    let path = dir.path().join("journal");
    let text = fs::read_to_string(&path).unwrap();
    let changed = text.replacen("\"refused_upto\":\"2", "\"refused_upto\":\"3", 1);
    assert_ne!(changed, text);
    fs::write(&path, changed).unwrap();
    let day = 86_400_000;
    let mut j = open(dir.path(), day);
    j.rewrite().unwrap();
    drop(j);
    let j = open(dir.path(), 2 * day);
    assert!(
        j.refused_upto("ahu-1").is_none_or(|m| m <= at(2 * day)),
        "{:?}",
        j.refused_upto("ahu-1")
    );
}

/// A flood raising twenty devices' marks at once, their ts climbing by a
/// second each, into a journal holding 10 000 ids: a line pair per raise,
/// and no rewrite of the 10 000 ids every few hundred of them.
#[test]
fn marks_raised_in_a_full_journal_cost_no_rewrite_each_few_hundred() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    for i in 0..10_000 {
        j.finish(
            &format!("g-{i}"),
            Some(at(0)),
            done("ghost"),
            at(0),
            Sync::WithTheNext,
        )
        .unwrap();
    }
    let keep = i64::try_from(KEEP.as_millis()).unwrap();
    let (mut raises, mut rewrites) = (0, 0);
    for d in 0..20 {
        let mut ts = -keep;
        while ts <= keep {
            let before = j.lines;
            assert!(j
                .refused_unremembered(&format!("dev-{d}"), at(ts), at(0))
                .unwrap());
            match j.lines.cmp(&before) {
                std::cmp::Ordering::Less => rewrites += 1,
                std::cmp::Ordering::Greater => raises += 1,
                std::cmp::Ordering::Equal => {}
            }
            ts += 1_001;
        }
    }
    assert!(raises > 2_000, "{raises}");
    assert_eq!(rewrites, 0);
}

/// A mark line and an id line joined by lost newlines: both read, and the
/// rewritten journal reads back clean.
#[test]
fn a_mark_and_an_id_joined_by_lost_newlines_are_both_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    j.refused_unremembered("ahu-1", at(100), at(100)).unwrap();
    j.finish("a", Some(at(0)), done("ahu-1"), at(0), Sync::Now)
        .unwrap();
    drop(j);
    let path = dir.path().join("journal");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace('\n', "#")).unwrap();
    let j = open(dir.path(), 1_000);
    assert!(j.damaged() > 0);
    assert!(j.refused_upto("ahu-1").is_some());
    assert!(j.get("ahu-1", "a").is_some());
    drop(j);
    let j = open(dir.path(), 1_000);
    assert_eq!(j.damaged(), 0);
    assert!(j.refused_upto("ahu-1").is_some());
}

/// The attack: a LoRaWAN command's `data` object for its codec is
/// journaled as it came, so it may hold what reads as records of the
/// journal. With the line torn by a power cut mid-write, the search for
/// whole records in a damaged line found those: a forged horizon a
/// minute ahead expired every command of every device until then (a
/// result or a flood mark is forged the same way where an object keeps
/// its keys in the sender's order, serde_json's `preserve_order`). A
/// record is only looked for where one may begin, not inside a value.
#[test]
fn records_inside_a_commands_value_are_not_read_from_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    let forged = serde_json::json!({
        "x": {"id": "victim", "device": "lamp-1", "metric": "state", "value": 1,
              "status": "done", "reason": "", "ts": at(0).to_rfc3339()},
        "y": [{"horizon": at(60_000).to_rfc3339()},
              {"refused_upto": at(60_000).to_rfc3339(), "device": "lamp-1"}],
    });
    let mut started = done("node-1");
    started.metric = String::new();
    started.value = serde_json::json!({ "data": forged });
    j.start("d-1", Some(at(0)), started, at(0), Sync::Now)
        .unwrap();
    drop(j);
    // Torn at the power cut: the line's last bytes never reached the disk.
    let path = dir.path().join("journal");
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 20);
    fs::write(&path, &bytes).unwrap();
    let j = open(dir.path(), 0);
    assert_eq!(j.damaged(), 1);
    assert_eq!(j.get("lamp-1", "victim"), None);
    assert_eq!(j.horizon(), None);
    assert_eq!(j.refused_upto("lamp-1"), None);
}

/// Refusals of commands stamped ahead further than an id is kept stay
/// until their own `ts` is old: forged years kept them for years, and a
/// flood of them filled the journal. Only the nearest are kept, a bound of
/// their own, which pushes out no other id.
#[test]
fn refusals_made_far_ahead_keep_only_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    let keep = i64::try_from(KEEP.as_millis()).unwrap();
    let refused = |status: &str| Recorded {
        status: status.into(),
        reason: "clock".into(),
        ..done("ghost")
    };
    // An id within keep, and a command a day ahead (a clock behind).
    j.finish("near", Some(at(keep)), refused("refused"), at(0), Sync::Now)
        .unwrap();
    let day = 86_400_000;
    j.finish("day", Some(at(day)), refused("refused"), at(0), Sync::Now)
        .unwrap();
    assert!(!j.is_far_ahead(at(keep), at(0)));
    assert!(j.is_far_ahead(at(keep + 1), at(0)));
    // A flood stamped decades ahead, farther each.
    let decades = 2_000_000_000_000;
    for i in 0..100 {
        let ts = at(decades + i);
        if j.has_room_ahead(ts) {
            j.finish(
                &format!("far-{i}"),
                Some(ts),
                refused("refused"),
                at(0),
                Sync::WithTheNext,
            )
            .unwrap();
        }
    }
    assert_eq!(j.len(), 1 + FAR_AHEAD_REMEMBERED, "{}", j.len());
    assert_eq!(j.len_within_keep(), 1);
    assert!(j.get("ghost", "near").is_some() && j.get("ghost", "day").is_some());
    assert!(j
        .get("ghost", &format!("far-{}", FAR_AHEAD_REMEMBERED - 2))
        .is_some());
    assert!(j
        .get("ghost", &format!("far-{}", FAR_AHEAD_REMEMBERED - 1))
        .is_none());
    assert!(!j.has_room_ahead(at(decades + 50)));
    // A nearer one still finds room: the farthest goes.
    assert!(j.has_room_ahead(at(2 * day)));
    j.finish(
        "two-days",
        Some(at(2 * day)),
        refused("refused"),
        at(0),
        Sync::Now,
    )
    .unwrap();
    assert!(j.get("ghost", "two-days").is_some());
    assert!(j
        .get("ghost", &format!("far-{}", FAR_AHEAD_REMEMBERED - 2))
        .is_none());
    assert_eq!(j.len(), 1 + FAR_AHEAD_REMEMBERED);
    // Read back (lines of the pushed-out ones included): the same bound.
    drop(j);
    let j = open(dir.path(), 10);
    assert_eq!(j.len(), 1 + FAR_AHEAD_REMEMBERED);
    assert!(j.get("ghost", "day").is_some() && j.get("ghost", "two-days").is_some());
    // Forgotten in time as any id, into the horizon.
    drop(j);
    let j = open(dir.path(), day + keep + 1);
    assert!(j.get("ghost", "day").is_none() && j.get("ghost", "two-days").is_some());
    assert_eq!(j.horizon(), Some(at(day)));
}

/// Each command a little nearer than the farthest kept pushes that one
/// out: the memory of when to forget it must go too, not stay for years.
#[test]
fn refusals_made_far_ahead_and_nearer_each_time_hold_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path(), 0);
    let refused = Recorded {
        status: "refused".into(),
        reason: "clock".into(),
        ..done("ghost")
    };
    let decades = 2_000_000_000_000;
    for i in 0..2_000 {
        let ts = at(decades - i);
        assert!(j.has_room_ahead(ts));
        j.finish(
            &format!("far-{i}"),
            Some(ts),
            refused.clone(),
            at(0),
            Sync::WithTheNext,
        )
        .unwrap();
    }
    assert_eq!(j.len(), FAR_AHEAD_REMEMBERED);
    assert!(
        j.expiry.len() <= 2 * j.len() + REWRITE_SLACK + 1,
        "{}",
        j.expiry.len()
    );
    assert!(j.lines <= j.rewrite_at(), "{}", j.lines);
}
