//! Vendors' JavaScript codecs: `cargo bench -p adapters --bench js_codecs`.
//!
//! - Uplinks per second and CPU per uplink through real vendor codecs
//!   (Browan's Tabs TBHH100, small; Decentlab's DL-PM, a 21 KB file whose
//!   top level builds its sensor tables), the gateway's way (each file
//!   compiled once, each call a fresh run of its top level, on the codec
//!   workers) beside ChirpStack's way measured in the same run (a new
//!   QuickJS runtime and context per call, Buffer compiled and loaded,
//!   the codec evaluated, `decodeUplink` called). CPU is every thread's,
//!   from /proc; the goal, printed against, is ≥ 10× ChirpStack's way.
//! - Resident memory with 50 distinct codec files loaded (the copied
//!   vendor codecs, each twice as distinct files), each decoded once, in a
//!   child process of its own; the goal is ≤ 0.5 MB per codec.
//!
//! The codecs are the ones the tests use (crates/edge-gateway/tests/data/
//! lorawan-codecs, MIT, from ChirpStack's device-profile repository).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use adapters::lorawan::codecs::js::{self, Limits, ScriptCodec};
use rquickjs::{CatchResultExt, Context, Function, Object, Runtime};

const GOAL_CPU_RATIO: f64 = 10.0;
const GOAL_MB_PER_CODEC: f64 = 0.5;
const CODECS_LOADED: usize = 50;
const IN_FLIGHT: usize = 256;

fn vendors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge-gateway/tests/data/lorawan-codecs/vendors")
}

/// Time on CPU of every thread of this process so far.
fn cpu() -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

fn rss_kb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// ChirpStack v4's `codec::js::decode`, step for step: a runtime with an
/// interrupt deadline, a full context, Buffer loaded, the script with
/// `decodeUplink(chirpstack_input)` appended evaluated, the result read.
fn chirpstack_way(source: &str, bytes: &[u8], fport: u8) -> String {
    fresh_context_per_call(source, bytes, fport, true)
}

/// [`chirpstack_way`]; `buffer: false` leaves Buffer out, the part of
/// its cost a fresh context per call pays without it.
fn fresh_context_per_call(source: &str, bytes: &[u8], fport: u8, buffer: bool) -> String {
    let rt = Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_millis(100);
    rt.set_interrupt_handler(Some(Box::new(move || Instant::now() > deadline)));
    let ctx = Context::full(&rt).unwrap();
    let script = format!("{source}\n\ndecodeUplink(chirpstack_input)\n");
    ctx.with(|ctx| {
        let buffer: rquickjs::Value = if buffer {
            ctx.eval(js::buffer_library()).catch(&ctx).unwrap()
        } else {
            rquickjs::Value::new_undefined(ctx.clone())
        };
        let input = Object::new(ctx.clone()).unwrap();
        input.set("bytes", bytes).unwrap();
        input.set("fPort", fport).unwrap();
        let date: rquickjs::function::Constructor = ctx.globals().get("Date").unwrap();
        let now: rquickjs::Value = date.construct((1.7e12,)).unwrap();
        input.set("recvTime", now).unwrap();
        input
            .set("variables", Object::new(ctx.clone()).unwrap())
            .unwrap();
        let globals = ctx.globals();
        globals.set("chirpstack_input", input).unwrap();
        globals.set("Buffer", buffer).unwrap();
        let mut options = rquickjs::context::EvalOptions::default();
        options.strict = false;
        let out: Object = ctx.eval_with_options(script, options).catch(&ctx).unwrap();
        let json: Function = ctx
            .globals()
            .get::<_, Object>("JSON")
            .unwrap()
            .get("stringify")
            .unwrap();
        json.call::<_, String>((out,)).unwrap()
    })
}

struct Figures {
    per_second: f64,
    cpu_us: f64,
}

fn measure(n: usize, mut run: impl FnMut(usize)) -> Figures {
    let (wall, cpu0) = (Instant::now(), cpu());
    run(n);
    let (wall, used) = (wall.elapsed(), cpu() - cpu0);
    Figures {
        per_second: n as f64 / wall.as_secs_f64(),
        cpu_us: used.as_secs_f64() * 1e6 / n as f64,
    }
}

/// The gateway's path: calls handed to the codec workers, `IN_FLIGHT` at
/// a time, as the socket loop hands accepted uplinks over.
fn ours(codec: &ScriptCodec, bytes: &[u8], fport: u8, n: usize) {
    let (tx, rx) = mpsc::channel();
    let mut sent = 0;
    let mut done = 0;
    while done < n {
        while sent < n && sent - done < IN_FLIGHT {
            let tx = tx.clone();
            codec
                .decode(bytes.to_vec(), fport, 1_700_000_000_000, move |r| {
                    tx.send(r.is_ok()).unwrap();
                })
                .unwrap();
            sent += 1;
        }
        assert!(rx.recv().unwrap(), "the codec failed");
        done += 1;
    }
}

fn throughput(name: &str, file: &Path, bytes: &[u8], fport: u8) {
    let source = std::fs::read_to_string(file).unwrap();
    let codec = ScriptCodec::load(name, file, BTreeMap::new(), Limits::default()).unwrap();
    // Both ways decode the same.
    let theirs: serde_json::Value =
        serde_json::from_str(&chirpstack_way(&source, bytes, fport)).unwrap();
    let mine = codec.decode_blocking(bytes.to_vec(), fport, 0).unwrap();
    assert_eq!(&theirs["data"], mine.data(), "{name}");
    ours(&codec, bytes, fport, 200);
    let chirpstack = measure(300, |n| {
        for _ in 0..n {
            chirpstack_way(&source, bytes, fport);
        }
    });
    let bare = measure(1_000, |n| {
        for _ in 0..n {
            fresh_context_per_call(&source, bytes, fport, false);
        }
    });
    let gateway = measure(20_000, |n| ours(&codec, bytes, fport, n));
    let ratio = chirpstack.cpu_us / gateway.cpu_us;
    println!(
        "{name}: gateway {:.0} uplinks/s, {:.1} µs CPU/uplink; ChirpStack's way {:.0} uplinks/s, {:.0} µs CPU/uplink; {ratio:.1}× less CPU per uplink (goal ≥ {GOAL_CPU_RATIO}×): {}",
        gateway.per_second,
        gateway.cpu_us,
        chirpstack.per_second,
        chirpstack.cpu_us,
        if ratio >= GOAL_CPU_RATIO { "met" } else { "NOT met" }
    );
    println!(
        "  (a fresh context per call without Buffer: {:.0} µs CPU/uplink, {:.1}× the gateway's)",
        bare.cpu_us,
        bare.cpu_us / gateway.cpu_us
    );
}

/// Child process: loads `CODECS_LOADED` distinct files and reports the
/// RSS they added.
fn rss_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    collect(&vendors(), &mut files);
    files.sort();
    // The workers and one codec first: what any gateway with a js: codec
    // holds, not what each codec adds.
    let warm = dir.path().join("warm.js");
    std::fs::write(
        &warm,
        "function decodeUplink(i) { return { data: { a: i.bytes[0] } }; }",
    )
    .unwrap();
    let first = ScriptCodec::load("warm.js", &warm, BTreeMap::new(), Limits::default()).unwrap();
    first.decode_blocking(vec![1], 1, 0).unwrap();
    let before = rss_kb();
    let mut loaded = Vec::new();
    for i in 0..CODECS_LOADED {
        let source = &files[i % files.len()];
        let copy = dir.path().join(format!(
            "{i}-{}",
            source.file_name().unwrap().to_str().unwrap()
        ));
        // Distinct files (one compiled engine each), of real codecs.
        let text = std::fs::read_to_string(source).unwrap() + &format!("\n// copy {i}\n");
        std::fs::write(&copy, text).unwrap();
        let codec = ScriptCodec::load("c.js", &copy, BTreeMap::new(), Limits::default()).unwrap();
        // A decode each (its result does not matter: most refuse one byte).
        let _ = codec.decode_blocking(vec![1, 2, 3, 4, 5, 6, 7, 8], 1, 0);
        loaded.push(codec);
    }
    let after = rss_kb();
    let bytes: u64 = files
        .iter()
        .take(CODECS_LOADED)
        .map(|f| f.metadata().unwrap().len())
        .sum();
    println!("{} {} {}", before, after, bytes);
    drop(loaded);
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "js") {
            out.push(p);
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--rss-child") {
        rss_child();
        return;
    }
    let v = vendors();
    // test_decode_tabs-tbhh100.json's first vector.
    throughput(
        "tabs-tbhh100.js",
        &v.join("browan/codecs/tabs-tbhh100.js"),
        &[0x08, 0x0b, 0x23, 0x2f, 0xff, 0xff, 0xff, 0xff],
        103,
    );
    // test_decode_dl-pm.json's first vector.
    let pm = std::fs::read_to_string(v.join("decentlab/codecs/test_decode_dl-pm.json")).unwrap();
    let bytes = first_vector_bytes(&pm);
    throughput("dl-pm.js", &v.join("decentlab/codecs/dl-pm.js"), &bytes, 1);

    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--rss-child")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<f64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    if let [before, after, bytes] = fields[..] {
        let per = (after - before) / 1024.0 / CODECS_LOADED as f64;
        println!(
            "{CODECS_LOADED} distinct codec files loaded ({:.0} KB of source): RSS +{:.1} MB, {per:.2} MB per codec (goal ≤ {GOAL_MB_PER_CODEC} MB): {}",
            bytes / 1024.0,
            (after - before) / 1024.0,
            if per <= GOAL_MB_PER_CODEC { "met" } else { "NOT met" }
        );
    } else {
        println!(
            "the RSS child failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `bytes` of the first vector, read loosely from the object literal.
fn first_vector_bytes(text: &str) -> Vec<u8> {
    let start = text.find("bytes").unwrap();
    let open = start + text[start..].find('[').unwrap();
    let close = open + text[open..].find(']').unwrap();
    text[open + 1..close]
        .split(',')
        .map(|b| {
            let b = b.trim();
            match b.strip_prefix("0x").or_else(|| b.strip_prefix("0X")) {
                Some(h) => u8::from_str_radix(h, 16).unwrap(),
                None => b.parse().unwrap(),
            }
        })
        .collect()
}
