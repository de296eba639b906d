#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::json;

use super::*;

fn script_with(
    text: &str,
    variables: &[(&str, &str)],
    limits: Limits,
) -> (tempfile::NamedTempFile, ScriptCodec) {
    let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let vars = variables
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let codec = ScriptCodec::load("test.js", f.path(), vars, limits).unwrap();
    (f, codec)
}

fn script(text: &str) -> (tempfile::NamedTempFile, ScriptCodec) {
    script_with(text, &[], Limits::default())
}

fn decode(codec: &ScriptCodec, bytes: &[u8]) -> Result<Decoded, ScriptError> {
    let (tx, rx) = std::sync::mpsc::channel();
    codec
        .decode(bytes.to_vec(), 2, 1_700_000_000_000, move |r| {
            tx.send(r).unwrap();
        })
        .unwrap();
    rx.recv().unwrap()
}

#[test]
fn decode_uplink_gets_bytes_port_time_and_variables() {
    let (_f, codec) = script_with(
        "function decodeUplink(input) { return { data: { first: input.bytes[0], port: input.fPort, \
         year: input.recvTime.getUTCFullYear(), v: input.variables.k, isArray: Array.isArray(input.bytes) } }; }",
        &[("k", "v1")],
        Limits::default(),
    );
    let out = codec
        .decode_blocking(vec![7, 8], 3, 1_700_000_000_000)
        .unwrap();
    assert_eq!(
        out.data(),
        &json!({"first": 7, "port": 3, "year": 2023, "v": "v1", "isArray": true})
    );
    assert!(codec.entries().decode && !codec.entries().encode);
}

#[test]
fn the_older_entry_points_work_too() {
    let (_f, v3) =
        script("function Decode(fPort, bytes, variables) { return { t: bytes[0] + fPort }; }");
    assert_eq!(decode(&v3, &[5]).unwrap().data(), &json!({"t": 7}));
    let (_f, ttn) = script("function Decoder(bytes, port) { return { t: bytes[0] * port }; }");
    assert_eq!(decode(&ttn, &[5]).unwrap().data(), &json!({"t": 10}));
    let (_f, enc) = script(
        "function Decode(p, b) { return {}; }\nfunction Encode(fPort, obj, variables) { return [obj.a, fPort]; }",
    );
    let out = enc.encode_blocking(json!({"a": 4}), Some(9)).unwrap();
    assert_eq!((out.bytes, out.fport), (vec![4, 9], None));
}

#[test]
fn buffer_is_there_as_chirpstack_preloads_it() {
    let (_f, codec) = script(
        "function decodeUplink(input) { var b = Buffer.from(input.bytes); \
         return { data: { hex: b.toString('hex'), t: b.readInt16BE(0) / 10, f: b.readFloatLE(2) } }; }\n\
         function encodeDownlink(input) { var b = Buffer.alloc(3); b.writeUInt16BE(input.data.v, 1); return { bytes: b, fPort: 4 }; }",
    );
    let out = decode(&codec, &[0xff, 0x38, 0, 0, 0x80, 0x3f]).unwrap();
    assert_eq!(
        out.data(),
        &json!({"hex": "ff380000803f", "t": -20, "f": 1})
    );
    let enc = codec.encode_blocking(json!({"v": 513}), None).unwrap();
    assert_eq!((enc.bytes, enc.fport), (vec![0, 2, 1], Some(4)));
}

/// Each call starts from the file's own top level: a counter kept in a
/// top-level `var`, a global made by assignment or a replaced built-in
/// never reaches the next uplink (of this device or another).
#[test]
fn no_state_passes_from_one_call_to_the_next() {
    let (_f, codec) = script(
        "var seen = 0; var cache = {};\n\
         function decodeUplink(input) {\n\
           seen++; cache[input.bytes[0]] = true; leaked = (typeof leaked === 'undefined' ? 0 : leaked) + 1;\n\
           var before = typeof Math.stolen; Math.max = function () { return -1; }; Math.stolen = 1;\n\
           return { data: { seen: seen, keys: Object.keys(cache).length, leaked: leaked, max: Math.max(1, 2) } };\n\
         }",
    );
    for b in 0..3u8 {
        let out = decode(&codec, &[b]).unwrap();
        assert_eq!(
            out.data(),
            &json!({"seen": 1, "keys": 1, "leaked": 1, "max": -1}),
            "call {b}"
        );
    }
    let (_f, probe) =
        script("function decodeUplink(i) { return { data: { max: Math.max(1, 2) } }; }");
    assert_eq!(decode(&probe, &[0]).unwrap().data(), &json!({"max": 2}));
}

/// One file's engine serves every device that names it: what a call does
/// to the built-ins (a method of `Math`, `JSON` or a prototype replaced,
/// a property added, a global defined) is undone before the next call,
/// and a call that freezes a built-in gets the engine rebuilt.
#[test]
fn built_ins_a_call_tampers_with_are_put_back() {
    let (_f, codec) = script(
        "function decodeUplink(input) {\n\
           var probe = {\n\
             max: Math.max(1, 2), round: Math.round(2.6), parse: JSON.stringify(JSON.parse('{\"a\":1}')),\n\
             fcc: String.fromCharCode(65), fixed: (1.5).toFixed(1), obj: ({}).polluted, arr: [].leak,\n\
             keys: Object.keys(Math).length, own: typeof globalThis.hidden, slice: [1, 2, 3].slice(1).length\n\
           };\n\
           if (input.bytes[0] === 1) {\n\
             Math.max = function () { return 42; }; Math.round = function () { return -1; };\n\
             JSON.parse = function () { return { hacked: 1 }; }; JSON.stringify = function () { return '{}'; };\n\
             String.fromCharCode = function () { return 'Z'; }; Number.prototype.toFixed = function () { return 'X'; };\n\
             Object.prototype.polluted = 'leaked'; Array.prototype.leak = 'leaked'; Math.cache = {};\n\
             Array.prototype.slice = function () { return []; }; delete Math.min;\n\
             Object.defineProperty(globalThis, 'hidden', { value: 1, writable: true, configurable: true });\n\
           }\n\
           if (input.bytes[0] === 2) { Object.freeze(Math); }\n\
           return { data: probe };\n\
         }",
    );
    let clean = json!({"max": 2, "round": 3, "parse": "{\"a\":1}", "fcc": "A", "fixed": "1.5",
        "keys": 0, "own": "undefined", "slice": 2});
    assert_eq!(decode(&codec, &[0]).unwrap().data(), &clean);
    // The tampering call's own result is still read with the real JSON.
    assert_eq!(decode(&codec, &[1]).unwrap().data(), &clean);
    assert_eq!(decode(&codec, &[0]).unwrap().data(), &clean, "after tampering");
    assert_eq!(decode(&codec, &[2]).unwrap().data(), &clean);
    assert_eq!(decode(&codec, &[1]).unwrap().data(), &clean, "after a frozen Math");
    assert_eq!(decode(&codec, &[0]).unwrap().data(), &clean, "and once more");
}

/// Built-ins changed through an alias (`var M = Math`) are put back too;
/// the text that changes nothing pays for no check of them.
#[test]
fn built_ins_changed_through_an_alias_are_put_back() {
    let (_f, codec) = script(
        "var M = Math, AP = Array.prototype;\n\
         function decodeUplink(input) {\n\
           var probe = { max: M.max(1, 2), extra: typeof [].extra };\n\
           if (input.bytes[0] === 1) { M.max = function () { return 9; }; AP.extra = 1; }\n\
           return { data: probe };\n\
         }",
    );
    let clean = json!({"max": 2, "extra": "undefined"});
    for b in [0u8, 1, 0, 1, 0] {
        assert_eq!(decode(&codec, &[b]).unwrap().data(), &clean, "call {b}");
    }
}

#[test]
fn a_hashbang_line_is_taken_as_node_takes_it() {
    let (_f, codec) = script(
        "\u{feff}#!/usr/bin/env node\nfunction decodeUplink(i) { return { data: { b: i.bytes[0] } }; }",
    );
    assert_eq!(decode(&codec, &[7]).unwrap().data(), &json!({"b": 7}));
}

#[test]
fn errors_warnings_and_wrong_results_are_told_apart() {
    let (_f, codec) = script(
        "function decodeUplink(input) {\n\
           switch (input.bytes[0]) {\n\
             case 0: return { errors: ['bad length'] };\n\
             case 1: return { data: { a: 1 }, warnings: ['low battery'] };\n\
             case 2: return 42;\n\
             case 3: return { data: 'text' };\n\
             case 4: return { data: { a: 1 }, errors: [] };\n\
             default: return input.nope.deeper;\n\
           }\n\
         }",
    );
    assert_eq!(
        decode(&codec, &[0]).unwrap_err(),
        ScriptError::Reported(vec!["bad length".into()])
    );
    assert_eq!(decode(&codec, &[1]).unwrap().warnings(), ["low battery"]);
    for b in [2, 3] {
        let e = decode(&codec, &[b]).unwrap_err();
        assert_eq!(e.kind(), "js_result", "{e}");
    }
    assert!(decode(&codec, &[4]).is_ok());
    let e = decode(&codec, &[5]).unwrap_err();
    assert_eq!(e.kind(), "js_exception");
    assert!(e.to_string().contains("TypeError"), "{e}");
    assert!(e.to_string().contains("test.js:"), "{e}");
}

#[test]
fn a_syntax_error_names_its_file_and_line() {
    let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
    f.write_all(b"// a codec\nfunction decodeUplink(input) {\n  return { data: { a: 1 } ;\n}\n")
        .unwrap();
    let e =
        ScriptCodec::load("codecs/x.js", f.path(), BTreeMap::new(), Limits::default()).unwrap_err();
    match &e {
        ScriptError::Syntax { file, line, .. } => {
            assert_eq!((file.as_str(), *line), ("codecs/x.js", Some(3)), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().starts_with("codecs/x.js:3: SyntaxError"),
        "{e}"
    );
    let top = "throw new Error('no');\nfunction decodeUplink(i) { return { data: {} }; }";
    let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
    f.write_all(top.as_bytes()).unwrap();
    let e = ScriptCodec::load("t.js", f.path(), BTreeMap::new(), Limits::default()).unwrap_err();
    assert_eq!(e.kind(), "js_top_level", "{e}");
}

fn limits(ms: u64) -> Limits {
    Limits {
        time: Duration::from_millis(ms),
        memory: 1 << 20,
        stack: 128 << 10,
    }
}

/// A loop, an allocation bomb, deep recursion and a long native call each
/// end at their limit, and the codec works again on the next call.
#[test]
fn every_limit_ends_a_call_and_the_next_one_works() {
    let source = "function r(n) { return r(n + 1) + 1; }\n\
         function decodeUplink(input) {\n\
           switch (input.bytes[0]) {\n\
             case 0: for (;;) {}\n\
             case 1: var keep = []; for (;;) keep.push(new Array(10000).fill(1));\n\
             case 2: return r(0);\n\
             case 3: return { data: { s: new Array(5e6).join('x').length } };\n\
             case 4: var o = {}; for (var i = 0; i < 1e6; i++) o['k' + i] = i; return { data: o };\n\
             default: return { data: { ok: 1 } };\n\
           }\n\
         }";
    let (_f, codec) = script_with(source, &[], limits(50));
    // The memory bombs under a time limit they cannot reach on a loaded
    // machine (an unoptimised build beside a busy CI): only the heap stops them.
    let (_g, unhurried) = script_with(source, &[], limits(30_000));
    assert_eq!(
        decode(&codec, &[0]).unwrap_err(),
        ScriptError::Timeout(Duration::from_millis(50))
    );
    assert_eq!(
        decode(&unhurried, &[1]).unwrap_err(),
        ScriptError::OutOfMemory
    );
    assert_eq!(
        decode(&codec, &[2]).unwrap_err(),
        ScriptError::StackOverflow
    );
    // One native call the interrupt cannot stop: the heap limit does.
    assert_eq!(
        decode(&unhurried, &[3]).unwrap_err(),
        ScriptError::OutOfMemory
    );
    // Out of memory where QuickJS cannot allocate its error either: it
    // throws null, once reported as an exception "thrown: Null\"null\"".
    assert_eq!(
        decode(&unhurried, &[4]).unwrap_err(),
        ScriptError::OutOfMemory
    );
    for codec in [&codec, &unhurried] {
        for _ in 0..3 {
            assert_eq!(decode(codec, &[9]).unwrap().data(), &json!({"ok": 1}));
        }
    }
}

/// While two files' calls loop until their limit, a third file's calls
/// are not held up behind them: looping codecs never hold every worker,
/// so the good calls all finish while the loops are still queued.
#[test]
fn looping_codecs_do_not_hold_up_another() {
    let (_f1, loop_a) = script_with("function decodeUplink(i) { for (;;) {} }", &[], limits(100));
    let (_f2, loop_b) = script_with("function decodeUplink(i) { for (;;) {} }", &[], limits(100));
    // Two good files, called in turn: each call finds its file idle, so
    // it needs a free worker (one file's calls in a row stay on theirs).
    let (_f3, good) = script("function decodeUplink(i) { return { data: { v: i.bytes[0] } }; }");
    let (_f4, other) = script("function decodeUplink(i) { return { data: { v: i.bytes[0] } }; }");
    let (tx, rx) = std::sync::mpsc::channel();
    // One loop each first, so both files are known to hit their limit.
    for codec in [&loop_a, &loop_b] {
        let tx = tx.clone();
        codec
            .decode(vec![0], 1, 0, move |r| tx.send(r.is_ok()).unwrap())
            .unwrap();
    }
    assert_eq!((rx.recv().unwrap(), rx.recv().unwrap()), (false, false));
    for codec in [&loop_a, &loop_b] {
        for _ in 0..3 {
            let tx = tx.clone();
            codec
                .decode(vec![0], 1, 0, move |r| tx.send(r.is_ok()).unwrap())
                .unwrap();
        }
    }
    for b in 0..40u8 {
        let codec = if b % 2 == 0 { &good } else { &other };
        assert_eq!(decode(codec, &[b]).unwrap().data(), &json!({"v": b}));
    }
    // Taking turns with the loops instead, they would have waited for
    // every one of them.
    let finished = rx.try_iter().count();
    assert!(
        finished <= 2,
        "the good calls waited for {finished} of 6 loops"
    );
    drop(tx);
    assert!(rx.iter().all(|ok| !ok));
}

#[test]
fn encode_downlink_bytes_are_cast_as_chirpstack_casts_them() {
    let (_f, codec) = script(
        "function decodeUplink(i) { return { data: {} }; }\n\
         function encodeDownlink(input) {\n\
           if (input.data.fail) return { errors: ['unknown command'] };\n\
           return { bytes: [1.7, 300, -5, input.data.v], fPort: input.data.port };\n\
         }",
    );
    let out = codec
        .encode_blocking(json!({"v": 7, "port": 12}), None)
        .unwrap();
    assert_eq!((out.bytes, out.fport), (vec![1, 255, 0, 7], Some(12)));
    assert_eq!(
        codec
            .encode_blocking(json!({"fail": true}), Some(1))
            .unwrap_err(),
        ScriptError::Reported(vec!["unknown command".into()])
    );
    // A port past a byte is named as the codec gave it, not as its cast.
    for port in [json!(300), json!(2.5), json!(-1)] {
        let refused = codec
            .encode_blocking(json!({"v": 7, "port": port}), None)
            .unwrap_err();
        assert_eq!(
            refused,
            ScriptError::Result(format!(
                "fPort {} is not an application port (1 to 223)",
                port.as_f64().unwrap()
            ))
        );
    }
}

/// A reload while a call runs: the calls queued after it use the new
/// text, though the worker's turn that ran the old one is not over (a
/// call made right after a reload once ran the old text; CI saw it when
/// the worker was slow to finish its turn).
#[test]
fn a_call_queued_after_a_reload_mid_turn_runs_the_new_text() {
    let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
    let text = |v: u8| format!("function decodeUplink(i) {{ return {{ data: {{ v: {v} }} }}; }}");
    f.write_all(text(1).as_bytes()).unwrap();
    let codec = ScriptCodec::load("mid.js", f.path(), BTreeMap::new(), Limits::default()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, again) = (f.path().to_path_buf(), codec.clone());
    codec
        .decode(vec![0], 2, 1_700_000_000_000, move |first| {
            // On the worker, inside the turn that holds the old engine:
            // reload, then queue the next call.
            std::fs::write(&path, text(2)).unwrap();
            ScriptCodec::load("mid.js", &path, BTreeMap::new(), Limits::default()).unwrap();
            let tx2 = tx.clone();
            again
                .decode(vec![0], 2, 1_700_000_000_000, move |second| {
                    tx2.send(second).unwrap();
                })
                .unwrap();
            tx.send(first).unwrap();
        })
        .unwrap();
    let first = rx.recv().unwrap().unwrap();
    let second = rx.recv().unwrap().unwrap();
    assert_eq!(
        (first.data(), second.data()),
        (&json!({"v": 1}), &json!({"v": 2}))
    );
}

#[test]
fn a_changed_file_loaded_again_replaces_the_running_one() {
    let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
    f.write_all(b"function decodeUplink(i) { return { data: { v: 1 } }; }")
        .unwrap();
    let first = ScriptCodec::load("r.js", f.path(), BTreeMap::new(), Limits::default()).unwrap();
    assert_eq!(decode(&first, &[0]).unwrap().data(), &json!({"v": 1}));
    std::fs::write(
        f.path(),
        "function decodeUplink(i) { return { data: { v: 2 } }; }",
    )
    .unwrap();
    let second = ScriptCodec::load("r.js", f.path(), BTreeMap::new(), Limits::default()).unwrap();
    assert_eq!(first, second);
    // The codec a running adapter holds decodes with the new text.
    assert_eq!(decode(&first, &[0]).unwrap().data(), &json!({"v": 2}));
    // A broken text is refused and the running one stays.
    std::fs::write(f.path(), "function decodeUplink(i) {").unwrap();
    assert!(ScriptCodec::load("r.js", f.path(), BTreeMap::new(), Limits::default()).is_err());
    assert_eq!(decode(&first, &[0]).unwrap().data(), &json!({"v": 2}));
}

#[test]
#[ignore = "a manual run over a folder of vectors: JS_VECTORS=DIR"]
fn vectors_of_a_folder() {
    let dir = std::env::var("JS_VECTORS").unwrap();
    let s = vectors::run(std::path::Path::new(&dir), Limits::default(), None);
    for f in &s.failures {
        println!("{f}");
    }
    println!("{}", s.last_line());
}

/// A vector's input reaches the codec as a JavaScript runner hands it
/// over: `recvTime` as its text, no `fPort` as `undefined`; the files are
/// object literals (comments, hex numbers, single quotes).
#[test]
fn vectors_give_their_input_as_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.js"),
        "function decodeUplink(input) { return { data: { t: typeof input.recvTime, p: String(input.fPort), b: input.bytes[0] } }; }\n\
         function encodeDownlink(input) { return { bytes: [input.data.v] }; }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test_decode_c.json"),
        "[ // two\n { name: 'as text', input: { bytes: [0x2A], recvTime: '2023-05-02T20:00:00Z' }, expected: { data: { t: 'string', p: 'undefined', b: 42 } } },\n \
         { name: 'wrong', input: { bytes: [1], fPort: 3 }, expected: { data: { t: 'object', p: '3', b: 2 } } } ]",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test_encode_c.json"),
        "\u{feff}[{ name: 'port given', input: { data: { v: 0x10 }, fPort: 9 }, expected: { bytes: [16], fPort: 9 } }];\n",
    )
    .unwrap();
    let s = vectors::run(dir.path(), Limits::default(), None);
    assert_eq!(
        s.last_line(),
        "decode: 1 of 2 passed; encode: 1 of 1 passed",
        "{:?}",
        s.failures
    );
    assert_eq!(s.failures.len(), 1);
    assert!(
        s.failures[0].contains("\"wrong\"") && s.failures[0].contains("expected 2, got 1"),
        "{:?}",
        s.failures
    );
}

/// A codec dating its output from the machine's clock (`new Date()`):
/// its vector, written on another day, matches but for that field and is
/// counted apart with a note naming it; a wrong value beside it still
/// fails; a run given the day the vector was written judges it whole. The
/// real Date is back after each call.
#[test]
fn fields_following_the_machines_clock_are_named_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.js"),
        "function decodeUplink(input) { var at = new Date(); return { data: { v: input.bytes[0], day: at.toISOString().slice(0, 10), day_now: new Date(Date.now()).toISOString().slice(0, 10), sub: new Date(0).getTime(), kind: at instanceof Date } }; }\n\
         // A clock sync: the command byte, then the Unix time in seconds, big-endian.\n\
         function encodeDownlink(input) { var t = Math.floor(Date.now() / 1000); return { bytes: [input.data.cmd, (t >>> 24) & 255, (t >>> 16) & 255, (t >>> 8) & 255, t & 255] }; }",
    )
    .unwrap();
    // 2026-01-02T12:00:00Z is 1767355200 s: 0x69 0x57 0xB3 0x40.
    std::fs::write(
        dir.path().join("test_encode_c.json"),
        "[{ name: 'sync', input: { data: { cmd: 0x10 } }, expected: { bytes: [0x10, 0x69, 0x57, 0xB3, 0x40] } },\n \
         { name: 'sync, wrong command', input: { data: { cmd: 0x11 } }, expected: { bytes: [0x10, 0x69, 0x57, 0xB3, 0x40] } }]",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test_decode_c.json"),
        "[{ name: 'written on its day', input: { bytes: [7] }, expected: { data: { v: 7, day: '2026-01-02', day_now: '2026-01-02', sub: 0, kind: true } } },
          { name: 'wrong too', input: { bytes: [7] }, expected: { data: { v: 8, day: '2026-01-02', day_now: '2026-01-02', sub: 0, kind: true } } }]",
    )
    .unwrap();
    let s = vectors::run(dir.path(), Limits::default(), None);
    assert_eq!(
        s.last_line(),
        "decode: 0 of 2 passed (1 more but for fields that follow the machine's clock); encode: 0 of 2 passed (1 more but for fields that follow the machine's clock)",
        "{:?} {:?}",
        s.failures,
        s.clock_notes
    );
    assert_eq!(s.clock_notes.len(), 2, "{:?}", s.clock_notes);
    assert!(
        s.clock_notes[1].contains("encode \"sync\"") && s.clock_notes[1].contains("/3, /4;"),
        "{:?}",
        s.clock_notes
    );
    assert!(
        s.clock_notes[0].contains("\"written on its day\"") && s.clock_notes[0].contains("/day"),
        "{:?}",
        s.clock_notes
    );
    assert!(s.clock_notes[0].contains("/day_now"), "{:?}", s.clock_notes);
    assert!(
        !s.clock_notes[0].contains("/sub") && !s.clock_notes[0].contains("/kind"),
        "{:?}",
        s.clock_notes
    );
    assert_eq!(s.failures.len(), 2, "{:?}", s.failures);
    assert!(s.failures[0].contains("\"wrong too\""), "{:?}", s.failures);
    assert!(s.failures[1].contains("\"sync, wrong command\""), "{:?}", s.failures);

    let jan_2 = 1_767_355_200_000; // 2026-01-02T12:00:00Z
    let s = vectors::run(dir.path(), Limits::default(), Some(jan_2));
    assert_eq!(
        s.last_line(),
        "decode: 1 of 2 passed; encode: 1 of 2 passed",
        "{:?}",
        s.failures
    );
    assert!(s.clock_notes.is_empty());

    // Without a test's clock, a codec reads the machine's.
    let (_f, codec) = script(
        "function decodeUplink(input) { return { data: { y: new Date().getUTCFullYear(), f: typeof Date.now } }; }",
    );
    let out = decode(&codec, &[0]).unwrap();
    assert!(out.data()["y"].as_f64().unwrap() >= 2026.0, "{:?}", out.data());
}

/// What Node gives scripts and some vendors' codecs use: console (silent),
/// TextEncoder/TextDecoder, atob/btoa.
#[test]
fn node_globals_vendors_use_are_there() {
    let (_f, codec) = script(
        "function decodeUplink(input) { console.log('decoding', input.bytes);\n\
         var text = new TextDecoder().decode(new Uint8Array(input.bytes));\n\
         return { data: { text: text, len: new TextEncoder().encode('é').length, b64: btoa('hi!'), back: atob('aGkh') } }; }",
    );
    let out = decode(&codec, &[0x68, 0xC3, 0xA9]).unwrap();
    assert_eq!(
        out.data(),
        &json!({"text": "hé", "len": 2, "b64": "aGkh", "back": "hi!"})
    );
}

/// Entry points however a file defines them: a declaration, a `var` with
/// a function, an assignment to `this` at the top level, a strict file.
#[test]
fn entry_points_are_found_however_defined() {
    for text in [
        "var decodeUplink = function (input) { return { data: { v: input.bytes[0] } }; };",
        "this.decodeUplink = function (input) { return { data: { v: input.bytes[0] } }; };",
        "'use strict';\nconst decodeUplink = (input) => ({ data: { v: input.bytes[0] } });",
        "decodeUplink = function (input) { bytes = input.bytes; return { data: { v: bytes[0] } }; };",
    ] {
        let (_f, codec) = script(text);
        for b in [3u8, 4] {
            assert_eq!(decode(&codec, &[b]).unwrap().data(), &json!({"v": b}), "{text}");
        }
    }
}

/// A codec that throws something other than an `Error` is reported by
/// what it threw, never by an engine's debug dump with an address in it.
#[test]
fn a_thrown_value_that_is_not_an_error_reads_as_written() {
    let (_f, codec) = script(
        "function decodeUplink(input) {\n\
           switch (input.bytes[0]) {\n\
             case 0: throw 42;\n\
             case 1: throw 'short payload';\n\
             case 2: throw false;\n\
             case 3: throw undefined;\n\
             default: throw { toString: function () { for (;;) {} } };\n\
           }\n\
         }",
    );
    let thrown = |b: u8| match decode(&codec, &[b]) {
        Err(ScriptError::Thrown(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(thrown(0), "thrown: 42");
    assert_eq!(thrown(1), "thrown: short payload");
    assert_eq!(thrown(2), "thrown: false");
    assert_eq!(thrown(3), "thrown: undefined");
    // Its toString is not run: it would loop after the call's time is up.
    assert_eq!(thrown(4), "thrown: object (not an Error)");
}

/// Helpers a codec defines on built-ins with defineProperty, a common
/// pattern (non-configurable by default): the codec decodes on every
/// call, not only the first, and the helpers do not outlive the call.
#[test]
fn helpers_defined_on_built_ins_work_on_every_call_and_leave_with_it() {
    let (_f, codec) = script(
        "Object.defineProperty(Number.prototype, 'hex2', { value: function () {\n\
           return ('0' + this.toString(16)).slice(-2); } });\n\
         Object.defineProperties(Math, { half: { value: function (x) { return x / 2; } } });\n\
         Object.defineProperty(this, 'scale', { value: 10 });\n\
         function decodeUplink(input) {\n\
           return { data: { h: input.bytes[0].hex2(), half: Math.half(input.bytes[0]),\n\
             scaled: input.bytes[0] * scale } };\n\
         }",
    );
    for b in [10u8, 255, 7] {
        let out = decode(&codec, &[b]).unwrap();
        let data = out.data();
        assert_eq!(data["h"], json!(format!("{b:02x}")), "call {b}");
        assert_eq!(data["half"].as_f64(), Some(f64::from(b) / 2.0), "call {b}");
        assert_eq!(data["scaled"].as_f64(), Some(f64::from(b) * 10.0), "call {b}");
    }
    // Another codec sharing nothing with it sees none of them, and the
    // built-ins are as they were.
    let (_g, probe) = script(
        "function decodeUplink(input) { return { data: {\n\
           hex2: typeof (1).hex2, half: typeof Math.half, scale: typeof scale } }; }",
    );
    assert_eq!(
        decode(&probe, &[0]).unwrap().data(),
        &json!({"hex2": "undefined", "half": "undefined", "scale": "undefined"})
    );
}

/// A string built from 16-bit words can hold half a surrogate pair: Node
/// returns the decode (the half as U+FFFD once encoded), and so do we,
/// rather than failing the whole decode. A whole pair stays whole.
#[test]
fn a_lone_surrogate_in_a_decoded_string_does_not_fail_the_decode() {
    let (_f, codec) = script(
        "function decodeUplink(input) { var s = '';\n\
           for (var i = 0; i + 1 < input.bytes.length; i += 2)\n\
             s += String.fromCharCode(input.bytes[i] << 8 | input.bytes[i + 1]);\n\
           return { data: { name: s, len: s.length } }; }",
    );
    let out = decode(&codec, &[0xD8, 0x00]).unwrap();
    assert_eq!(out.data(), &json!({"name": "\u{FFFD}", "len": 1}));
    let out = decode(&codec, &[0xDC, 0x00, 0x00, 0x41]).unwrap();
    assert_eq!(out.data(), &json!({"name": "\u{FFFD}A", "len": 2}));
    let out = decode(&codec, &[0xD8, 0x3D, 0xDE, 0x00, 0x00, 0x5C]).unwrap();
    assert_eq!(out.data(), &json!({"name": "\u{1F600}\\", "len": 3}));
}

/// A codec's own error that mentions memory or the stack is its error,
/// with its message, not a limit reached.
#[test]
fn a_codecs_error_naming_memory_is_its_own() {
    let (_f, codec) = script(
        "function decodeUplink(input) { throw new Error('sensor out of memory flag set'); }",
    );
    let e = decode(&codec, &[0]).unwrap_err();
    assert_eq!(e.kind(), "js_exception", "{e}");
    assert!(e.to_string().contains("sensor out of memory flag set"), "{e}");
}

/// A vector written under Node matches a value one bit apart in its last
/// place (V8's and QuickJS's `Math.pow` differ there), not one further.
#[test]
fn vectors_match_numbers_a_few_units_in_the_last_place_apart() {
    let same = super::vectors::same;
    let v8 = json!({"p": 0.000009999999999999999_f64, "t": [1804.8, 5_878_780_526.591_999]});
    let ours = json!({"p": 0.00001, "t": [1804.8, 5_878_780_526.592]});
    assert!(same(&v8, &ours));
    let next = |x: f64, n: u64| f64::from_bits(x.to_bits() + n);
    assert!(same(&json!(next(21.5, 4)), &json!(21.5)));
    assert!(!same(&json!(next(21.5, 5)), &json!(21.5)));
    assert!(!same(&json!(21.6), &json!(21.5)));
    assert!(same(&json!(0.0), &json!(-0.0)), "equal by value");
    assert!(!same(&json!(5e-324), &json!(-5e-324)));
    assert!(same(&json!(3), &json!(3.0)));
}

/// A promise reaction or microtask a call queues never runs (as under
/// ChirpStack, whose runtime is dropped after the call), and is not kept:
/// each held the call's closures until the heap limit failed an uplink
/// (1 in 27 here, each job holding a 2 000-item array).
#[test]
fn jobs_a_call_leaves_queued_are_not_kept() {
    let (_f, codec) = script_with(
        "function decodeUplink(input) {\n\
           var big = new Array(2000).fill(input.bytes[0]);\n\
           Promise.resolve().then(function () { return big; });\n\
           queueMicrotask(function () { return big; });\n\
           new FinalizationRegistry(function () { return big; }).register({}, 1);\n\
           return { data: { v: input.bytes[0] } };\n\
         }",
        &[],
        limits(1000),
    );
    for n in 0..40u8 {
        assert_eq!(
            decode(&codec, &[n]).map(|d| d.data().clone()),
            Ok(json!({"v": n})),
            "call {n}"
        );
    }
}

/// A result nested deeper than the JSON reader follows (128) keeps its
/// shallow values: the deep part is cut and counted as any value nested
/// past the readings' depth is, where the whole uplink was refused ("not
/// JSON: recursion limit exceeded").
#[test]
fn a_result_nested_past_the_readers_depth_keeps_its_other_values() {
    let (_f, codec) = script(
        "function decodeUplink(input) {\n\
           var deep = { v: 1 }, list = [2];\n\
           for (var i = 0; i < 300; i++) { deep = { a: deep, s: '{[\"' }; list = [list]; }\n\
           return { data: { t: input.bytes[0], deep: deep, list: list, after: 3 } };\n\
         }",
    );
    let out = decode(&codec, &[21]).unwrap();
    let taken = readings::fields(out.data());
    let values: Vec<(&str, &readings::Leaf)> = taken
        .fields
        .iter()
        .filter(|(k, _, _)| !k.starts_with("deep_"))
        .map(|(k, v, _)| (k.as_str(), v))
        .collect();
    assert_eq!(
        values,
        [
            ("after", &readings::Leaf::Number(3.0)),
            ("t", &readings::Leaf::Number(21.0))
        ]
    );
    assert_eq!(taken.cut, 2, "{taken:?}");
}

/// A codec's own texts reach a log line (and a refused command's result
/// upstream) bounded: a 1 MiB message, 10 000 errors, each cut with its
/// size said, where each was written whole.
#[test]
fn a_codecs_texts_reach_a_log_line_bounded() {
    let (_f, codec) = script(
        "function decodeUplink(input) {\n\
           var big = 'x'.repeat(1 << 20);\n\
           if (input.bytes[0] === 1) throw big;\n\
           if (input.bytes[0] === 2) throw new Error('bad frame ' + big);\n\
           var errors = [big];\n\
           for (var i = 0; i < 10000; i++) errors.push('error ' + i);\n\
           return { data: {}, errors: errors };\n\
         }\n\
         function encodeDownlink(input) { throw new Error('unknown command ' + 'y'.repeat(1 << 20)); }",
    );
    for b in [1u8, 2, 3] {
        let e = decode(&codec, &[b]).unwrap_err();
        let text = e.to_string();
        assert!(text.len() <= 3 * MAX_TEXT, "{b}: {} bytes", text.len());
        assert!(text.contains("xxxx") && text.contains("bytes)"), "{b}: {text}");
    }
    let e = decode(&codec, &[3]).unwrap_err();
    assert!(e.to_string().contains("and 10000 more"), "{e}");
    let e = codec.encode_blocking(json!({}), None).unwrap_err();
    assert!(e.to_string().starts_with("Error: unknown command yyy"), "{e}");
    assert!(e.to_string().len() <= 3 * MAX_TEXT, "{}", e.to_string().len());
    // Short texts are kept as written.
    let (_g, plain) = script("function decodeUplink(input) { throw 'unsupported frame 9'; }");
    assert_eq!(
        decode(&plain, &[0]).unwrap_err(),
        ScriptError::Thrown("thrown: unsupported frame 9".into())
    );
}

/// A `js:` path to something that is not a codec (a device, a growing
/// log) is refused once read past the largest codec file taken, where it
/// was read whole: `js:/dev/zero` (a config pushed to a fleet can name
/// it) read until the gateway ran out of memory.
#[test]
fn a_codec_file_is_read_no_further_than_its_limit() {
    let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
    f.write_all(b"function decodeUplink(i) { return { data: {} }; }\n//")
        .unwrap();
    f.write_all(&vec![b' '; MAX_FILE as usize]).unwrap();
    let e = ScriptCodec::load("huge.js", f.path(), BTreeMap::new(), Limits::default())
        .unwrap_err();
    assert_eq!(e.kind(), "js_io", "{e}");
    assert!(e.to_string().contains("larger than 16 MiB"), "{e}");
    #[cfg(unix)]
    {
        let e = ScriptCodec::load(
            "zero",
            std::path::Path::new("/dev/zero"),
            BTreeMap::new(),
            Limits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("larger than 16 MiB"), "{e}");
    }
}

/// A number that is not finite (`NaN` from arithmetic on a byte past a
/// short payload's end, `Infinity` from a division by zero) is said to
/// be left out, by name, where `JSON.stringify` made it a `null` that was
/// skipped without a word; a real `null` is still skipped.
#[test]
fn a_value_that_is_not_a_finite_number_is_said_to_be_left_out() {
    let (_f, codec) = script(
        "function decodeUplink(input) {\n\
           var b = input.bytes;\n\
           return { data: { t: b[0], a: b[5] * 0.1, n: { b: 1 / 0, c: [1, -1 / 0] }, s: null, 'x/y': NaN } };\n\
         }",
    );
    let out = decode(&codec, &[7]).unwrap();
    let taken = out.fields();
    let dropped: Vec<(&str, &readings::Fate)> = taken
        .fields
        .iter()
        .filter(|(_, _, fate)| matches!(fate, readings::Fate::Dropped(_)))
        .map(|(k, _, fate)| (k.as_str(), fate))
        .collect();
    let not_finite = |kind: &str| readings::Fate::Dropped(format!("not a finite number: {kind}"));
    assert_eq!(
        dropped,
        [
            ("a", &not_finite("NaN")),
            ("n_b", &not_finite("Infinity")),
            ("n_c_1", &not_finite("-Infinity")),
            ("x_y", &not_finite("NaN")),
        ]
    );
    assert!(taken.left_out().unwrap().contains("`a` (not a finite number: NaN)"));
    assert!(taken
        .fields
        .iter()
        .any(|(k, _, f)| k == "t" && matches!(f, readings::Fate::Reading(_))));
    let (_g, nulls) = script("function decodeUplink(input) { return { data: { t: 1, s: null } }; }");
    let out = decode(&nulls, &[7]).unwrap();
    assert_eq!(out.fields().left_out(), None);
    assert_eq!(out.result.get("nonFinite"), None);
}

/// A downlink byte that is not a number (a command without the field the
/// codec pushes, a string) refuses the command, as ChirpStack's reading
/// of `bytes` as numbers does; it was sent as 0 (or the string's number).
/// Numbers keep ChirpStack's cast, `NaN` 0 and `Infinity` 255 included.
#[test]
fn a_downlink_byte_that_is_not_a_number_refuses_the_command() {
    let (_f, codec) = script(
        "function decodeUplink(i) { return { data: {} }; }\n\
         function encodeDownlink(input) { return { bytes: [1, input.data.level], fPort: 2 }; }",
    );
    for data in [json!({}), json!({"level": "5"}), json!({"level": null}), json!({"level": [5]})] {
        let e = codec.encode_blocking(data.clone(), None).unwrap_err();
        assert_eq!(e.kind(), "js_result", "{data}: {e}");
        assert!(e.to_string().contains("byte 1"), "{data}: {e}");
    }
    let (_g, numbers) = script(
        "function decodeUplink(i) { return { data: {} }; }\n\
         function encodeDownlink(input) { return { bytes: [NaN, Infinity, -Infinity, 7] }; }",
    );
    assert_eq!(
        numbers.encode_blocking(json!({}), None).unwrap().bytes,
        vec![0, 255, 0, 7]
    );
}
