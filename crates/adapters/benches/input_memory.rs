//! Peak memory of hostile input, bounded and as it was unbounded:
//! `cargo bench -p adapters --bench input_memory`.
//!
//! - Each payload format's worst case at its largest size (16 MiB, the
//!   largest `max_payload_bytes`; 1 MiB for line formats, the largest
//!   `max_line_bytes`), decoded once with the default
//!   `max_readings_per_message` and once with the bound lifted (what a
//!   decode cost before it);
//! - 1 000 000 PULL_DATA from new forwarder EUIs into the downlink path
//!   table, bounded, and into the plain map it was.
//!
//! Every case runs in a child process of its own (this binary run again
//! with the case's name), which reports its peak RSS above what it held
//! once its input was built (`VmHWM` after `clear_refs`, Linux): a freed
//! allocation kept by the allocator cannot hide the next case's peak. The
//! bounded figure is printed against [`LIMIT_MB`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;

use adapters::lorawan::downlink::{Link, Links, Pulled};
use adapters::lorawan::semtech::GatewayEui;
use adapters::payload::{
    decode_bounded, Context, NetworkServer, PayloadFormat, DEFAULT_MAX_READINGS_PER_MESSAGE,
};
use gateway_core::{DeviceId, MetricName, Timestamp};

/// A bounded case may take at most this much above its input (what the
/// largest message allowed holds, and a copy of its text): a Pi with 1 GB
/// keeps its other work.
const LIMIT_MB: f64 = 32.0;
const MQTT_MAX: usize = 16 * 1024 * 1024;
const LINE_MAX: usize = 1024 * 1024;
const FORWARDERS: u64 = 1_000_000;

const CASES: [&str; 14] = [
    "senml",
    "senml_at_bound",
    "json_long_string",
    "senml_cbor",
    "json_keys",
    "json_nested",
    "zigbee2mqtt",
    "chirpstack",
    "csv",
    "number",
    "kv",
    "influx",
    "pull_data",
    "pull_data_unbounded",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(case), Some(bound)) = (args.get(1), args.get(2)) {
        if CASES.contains(&case.as_str()) {
            child(case, bound == "bounded");
            return;
        }
    }
    println!(
        "{:<20} {:>9}  {:>32}  {:>32}",
        "case", "input MB", "bounded: outcome, peak MB", "unbounded: outcome, peak MB"
    );
    let mut worst = 0.0f64;
    for case in CASES.iter().filter(|c| !c.ends_with("_unbounded")) {
        let bounded = run(case, "bounded");
        let unbounded = if *case == "pull_data" {
            run("pull_data_unbounded", "unbounded")
        } else {
            run(case, "unbounded")
        };
        worst = worst.max(bounded.peak_mb);
        println!(
            "{case:<20} {:>9.1}  {:>22} {:>9.1}  {:>22} {:>9.1}",
            bounded.input_mb,
            bounded.outcome,
            bounded.peak_mb,
            unbounded.outcome,
            unbounded.peak_mb
        );
    }
    let verdict = if worst <= LIMIT_MB { "within" } else { "OVER" };
    println!("worst bounded peak {worst:.1} MB: {verdict} the limit of {LIMIT_MB} MB");
}

struct Figure {
    input_mb: f64,
    outcome: String,
    peak_mb: f64,
}

fn run(case: &str, bound: &str) -> Figure {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([case, bound])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().split('\t');
    let mut next = || parts.next().unwrap_or("?").to_string();
    let input_mb = next().parse().unwrap_or(f64::NAN);
    let outcome = next();
    let peak_mb = next().parse().unwrap_or(f64::NAN);
    Figure {
        input_mb,
        outcome,
        peak_mb,
    }
}

/// One case: builds its input, then measures what handling it takes.
fn child(case: &str, bounded: bool) {
    let max = if bounded {
        DEFAULT_MAX_READINGS_PER_MESSAGE
    } else {
        usize::MAX / 64
    };
    if case.starts_with("pull_data") {
        let input_mb = 12.0 * FORWARDERS as f64 / 1e6;
        reset_peak();
        let before = rss_kb("VmRSS");
        let outcome = if bounded {
            pull_bounded()
        } else {
            pull_unbounded()
        };
        let peak = rss_kb("VmHWM");
        println!("{input_mb:.1}\t{outcome}\t{:.1}", (peak - before) / 1024.0);
        return;
    }
    let (format, payload, device) = input(case);
    let device = device.then(|| DeviceId::new("node-1").unwrap());
    let ctx = Context {
        device: device.as_ref(),
        metric: None,
        now: Timestamp::from_millis(1_795_255_500_000).unwrap(),
    };
    reset_peak();
    let before = rss_kb("VmRSS");
    let outcome = match decode_bounded(&format, &payload, &ctx, None, max) {
        Ok(d) => format!("{} readings", d.readings.len()),
        Err(e) => e.kind().to_string(),
    };
    let peak = rss_kb("VmHWM");
    println!(
        "{:.1}\t{outcome}\t{:.1}",
        payload.len() as f64 / 1e6,
        (peak - before) / 1024.0
    );
}

/// The worst case of a format at its largest size, and whether the
/// device comes from outside the payload (a topic, a URI).
fn input(case: &str) -> (PayloadFormat, Vec<u8>, bool) {
    let fill = |head: &str, item: &dyn Fn(usize) -> String, sep: &str, tail: &str, max: usize| {
        let mut s = String::from(head);
        let mut i = 0;
        loop {
            let next = item(i);
            if s.len() + sep.len() + next.len() + tail.len() > max {
                break;
            }
            if i > 0 {
                s.push_str(sep);
            }
            s.push_str(&next);
            i += 1;
        }
        s.push_str(tail);
        s.into_bytes()
    };
    match case {
        "senml" => (
            PayloadFormat::Senml,
            fill("[", &|_| r#"{"n":"t","v":1}"#.into(), ",", "]", MQTT_MAX),
            true,
        ),
        // The most a pack may hold and be taken: as many records as
        // readings allowed, each with as many values as allowed.
        "senml_at_bound" => {
            let record = format!(
                r#"{{"n":"t","u":"Cel","v":1,"x":[{}0]}}"#,
                "0,".repeat(bounds_values_per_record())
            );
            let n = DEFAULT_MAX_READINGS_PER_MESSAGE;
            let body = vec![record; n].join(",");
            (PayloadFormat::Senml, format!("[{body}]").into_bytes(), true)
        }
        // One reading beside a text field as long as the message.
        "json_long_string" => {
            let text = "a".repeat(MQTT_MAX - 64);
            (
                PayloadFormat::Json,
                format!(r#"{{"t":1,"fw":"{text}"}}"#).into_bytes(),
                true,
            )
        }
        "senml_cbor" => {
            // array(n) of {2: 1}: three bytes a record.
            let n = (MQTT_MAX - 9) / 3;
            let mut b = vec![0x9b];
            b.extend_from_slice(&(n as u64).to_be_bytes());
            for _ in 0..n {
                b.extend_from_slice(&[0xa1, 0x02, 0x01]);
            }
            (PayloadFormat::SenmlCbor, b, true)
        }
        "json_keys" => (
            PayloadFormat::Json,
            fill("{", &|i| format!("\"k{i}\":1"), ",", "}", MQTT_MAX),
            true,
        ),
        "json_nested" => (
            PayloadFormat::Json,
            fill(r#"{"t":1,"x":["#, &|_| "0".into(), ",", "]}", MQTT_MAX),
            true,
        ),
        "zigbee2mqtt" => (
            PayloadFormat::Zigbee2mqtt,
            fill("{", &|i| format!("\"k{i}\":1"), ",", "}", MQTT_MAX),
            true,
        ),
        "chirpstack" => (
            PayloadFormat::LorawanEvent {
                server: NetworkServer::ChirpstackV4,
                codec: None,
            },
            fill(
                r#"{"deviceInfo":{"devEui":"70b3d57ed0001234","deviceName":"n"},"object":{"#,
                &|i| format!("\"k{i}\":1"),
                ",",
                "}}",
                MQTT_MAX,
            ),
            false,
        ),
        "csv" => {
            let columns = ["temperature", "pressure", "humidity", "gas"]
                .map(|c| MetricName::new(c).unwrap())
                .to_vec();
            (
                PayloadFormat::Csv { columns },
                fill("", &|_| "1".into(), ",", "", MQTT_MAX),
                true,
            )
        }
        "number" => (PayloadFormat::Number, vec![b'1'; MQTT_MAX], true),
        "kv" => (
            PayloadFormat::Kv,
            fill("", &|i| format!("k{i}=1"), " ", "", LINE_MAX),
            true,
        ),
        "influx" => (
            PayloadFormat::Influx,
            fill("m ", &|i| format!("k{i}=1"), ",", "", LINE_MAX),
            true,
        ),
        other => panic!("no case {other}"),
    }
}

/// Values one record may add within the bound, beside its own four.
fn bounds_values_per_record() -> usize {
    adapters::payload::VALUES_PER_READING - 6
}

fn eui(i: u64) -> GatewayEui {
    GatewayEui((i | 1 << 40).to_be_bytes())
}

fn pull_bounded() -> String {
    let addr: SocketAddr = "127.0.0.1:1700".parse().unwrap();
    let now = tokio::time::Instant::now();
    let mut links = Links::default();
    let refused = (0..FORWARDERS)
        .filter(|i| links.pulled(eui(*i), addr, 2, now) != Pulled::Taken)
        .count();
    format!("{} kept, {refused} refused", links.tracked())
}

/// What the table was: every PULL_DATA's EUI kept.
fn pull_unbounded() -> String {
    let addr: SocketAddr = "127.0.0.1:1700".parse().unwrap();
    let now = tokio::time::Instant::now();
    let mut map = HashMap::new();
    for i in 0..FORWARDERS {
        map.insert(
            eui(i),
            Link {
                addr,
                version: 2,
                last_pull: now,
            },
        );
    }
    format!("{} kept", map.len())
}

/// Resets the process's peak RSS to what it holds now (Linux ≥ 4.0).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
}

fn rss_kb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}
