#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;

use super::*;

fn script(text: &str) -> (tempfile::NamedTempFile, ScriptCodec) {
    let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let codec = ScriptCodec::load("test.js", f.path(), BTreeMap::new(), Limits::default()).unwrap();
    (f, codec)
}

#[test]
fn decode_uplink_gets_bytes_port_time_and_variables() {
    let (_f, codec) = script(
        "function decodeUplink(input) { return { data: { first: input.bytes[0], port: input.fPort, \
         year: input.recvTime.getUTCFullYear(), v: input.variables.k, isArray: Array.isArray(input.bytes) } }; }",
    );
    let out = codec
        .decode_blocking(vec![7, 8], 3, 1_700_000_000_000)
        .unwrap();
    assert_eq!(
        out.data(),
        &serde_json::json!({"first": 7, "port": 3, "year": 2023, "isArray": true})
    );
}

#[test]
#[ignore = "a manual run over a folder of vectors: JS_VECTORS=DIR"]
fn vectors_of_a_folder() {
    let dir = std::env::var("JS_VECTORS").unwrap();
    let s = vectors::run(std::path::Path::new(&dir), Limits::default());
    for f in &s.failures {
        println!("{f}");
    }
    println!("{}", s.last_line());
}
