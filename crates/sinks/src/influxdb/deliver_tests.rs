use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use super::*;

/// The ERROR events' messages and `suppressed` fields: the workspace has
/// no log-capture helper, and this is all a test of a throttle needs.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<Logged>>>);

/// An event's messages and its `suppressed` field.
type Logged = (String, Option<u64>);

#[derive(Default)]
struct Fields {
    message: String,
    suppressed: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "suppressed" {
            self.suppressed = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Both the text and the `%message` field are named `message`.
        if field.name() == "message" {
            self.message.push_str(&format!("{value:?} "));
        }
    }
}

impl Subscriber for Errors {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::ERROR {
            let mut f = Fields::default();
            event.record(&mut f);
            self.0.lock().unwrap().push((f.message, f.suppressed));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// One point InfluxDB refuses on its own: to the dead-letter file.
fn dead(t: &Target, line: &[u8], reason: &'static str, message: &str) {
    dead_all(t, &[(line, reason, message.to_string())]);
}

#[test]
fn a_refusal_that_dropped_every_point_is_known_without_splitting() {
    let m = |s: &str, n| refused_whole(s, n);
    assert!(m(
        "partial write: points beyond retention policy dropped=40",
        40
    ));
    assert!(m(
        "partial write: field type conflict: input field \"t\" on measurement \"u\" is type integer, already exists as type float dropped=3 for database: x for retention policy: autogen",
        3
    ));
    assert!(m("unable to parse 'x'", 1));
    assert!(!m(
        "partial write: points beyond retention policy dropped=39",
        40
    ));
    assert!(!m("unable to parse 'x'", 2));
    assert!(!m("dropped=", 2));
}

fn target(dead_letter: PathBuf, telemetry: &Telemetry) -> Target {
    let labels = [("output", "influx")];
    Target {
        name: "influx".into(),
        url: "http://127.0.0.1:8086".into(),
        version: 1,
        database: "db".into(),
        create_database: false,
        write_path: "/write?db=db".into(),
        base_path: String::new(),
        auth: None,
        gzip: false,
        dead_letter,
        dead_letter_max: 16 * 1024 * 1024,
        m: Metrics {
            written: telemetry.counter(super::super::SINK_POINTS_WRITTEN, &labels),
            dead_letter: telemetry.counter(super::super::SINK_DEAD_LETTER, &labels),
            up: telemetry.gauge(super::super::SINK_UP, &labels),
            retry_after_capped: telemetry.counter("retry_after_capped", &labels),
            telemetry: telemetry.clone(),
            name: "influx".into(),
        },
        // Not the default 10 s: each point's fsync of the dead-letter file
        // on a loaded machine could outlast it.
        log: LogThrottle::new(Duration::from_secs(3600)),
        max_wait: Duration::from_secs(30),
    }
}

/// The tester's: 3 000 points of a field type conflict, 3 000 ERROR
/// lines (here 500). Now one per throttle interval (the next says how many it stood
/// for); the counter and the dead-letter file still have every point.
#[test]
fn dead_lettered_points_are_logged_throttled_and_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::default();
    let t = target(dir.path().join("dead-letter.lp"), &telemetry);
    let errors = Errors::default();
    let message = "field type conflict: input field \"v\" on measurement \"readings\" is type float, already exists as type string";
    let lines: Vec<String> = (0..500)
        .map(|i| format!("readings,device=dev0 v={i} {i}000000\n"))
        .collect();
    tracing::subscriber::with_default(errors.clone(), || {
        for l in &lines {
            dead(&t, l.as_bytes(), "bad_request", message);
        }
    });
    let seen: Vec<Logged> = errors
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| m.contains("refuses a point"))
        .cloned()
        .collect();
    assert_eq!(seen.len(), 1, "{} lines", seen.len());
    assert_eq!(seen[0].1, Some(0), "the first says none were suppressed");
    assert_eq!(t.m.dead_letter.get(), 500);
    let file = std::fs::read_to_string(dir.path().join("dead-letter.lp")).unwrap();
    assert_eq!(
        file.lines().filter(|l| l.starts_with("readings,")).count(),
        500
    );
}

/// InfluxDB's type conflict against a database an earlier bridge filled
/// with integers names the setting that writes the field so; other
/// refusals get no hint.
#[test]
fn a_conflict_with_an_integer_field_names_the_setting() {
    for message in [
        r#"partial write: field type conflict: input field "gas" on measurement "bme680_measure" is type float, already exists as type integer dropped=1"#,
        r#"{"error":"partial write: field type conflict: input field \"gas\" on measurement \"bme680_measure\" is type float, already exists as type integer dropped=1"}"#,
    ] {
        let hint = super::conflict_hint(message);
        assert!(hint.contains(r#"integer_fields = ["gas"]"#), "{hint}");
    }
    assert_eq!(
        super::conflict_hint(
            r#"field type conflict: input field "on" on measurement "m" is type float, already exists as type boolean"#
        ),
        ""
    );
    assert_eq!(super::conflict_hint("unable to parse"), "");
}

/// A field InfluxDB holds as another type refuses every reading of it,
/// for as long as the gateway runs: the dead-letter file grew by every
/// point, on an edge box's SD card, until the disk the outbox and journal
/// need was full. It is now two files of at most `dead_letter_max` each,
/// the newest points kept; the counter still has every one.
#[test]
fn the_dead_letter_file_is_bounded_and_keeps_the_newest_points() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::default();
    let file = dir.path().join("dead-letter.lp");
    let mut t = target(file.clone(), &telemetry);
    t.dead_letter_max = 4096;
    let message = "partial write: field type conflict: input field \"v\" on measurement \"readings\" is type float, already exists as type integer dropped=1";
    for i in 0..500 {
        let line = format!("readings,device=dev0 v={i} {i}000000\n");
        dead(&t, line.as_bytes(), "bad_request", message);
    }
    assert_eq!(t.m.dead_letter.get(), 500);
    let older = dir.path().join("dead-letter.lp.1");
    for f in [&file, &older] {
        let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0 && len <= 4096, "{}: {len} bytes", f.display());
    }
    let newest = std::fs::read_to_string(&file).unwrap();
    assert!(newest.contains("v=499 499000000\n"), "{newest}");
    // Every file still starts with why its points were refused.
    assert!(newest.starts_with("# "), "{newest}");
}
