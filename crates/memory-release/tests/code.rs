//! The one test of this binary, so no other test's threads touch the
//! code between the measurements: releasing the start-up code unmaps the
//! test binary's pages that are not in use, and the code still runs.

#![allow(clippy::unwrap_used)]

mod support;

use memory_release::code::StartupCode;

#[test]
#[cfg(target_os = "linux")]
fn released_code_leaves_the_resident_set_and_still_runs() {
    // The harness has started threads by now; that only matters for
    // libraries loaded later, and a test binary loads none.
    let code = StartupCode::record();
    assert!(
        code.mapped_bytes() > 1 << 20,
        "the test binary and libc should be recorded: {code:?}"
    );
    // Touch a wide spread of code first, as start-up does.
    let text = format!("{:?}", (1..2_000).map(f64::from).collect::<Vec<_>>());
    let parsed: Vec<f64> = serde_free_parse(&text);
    let before = support::status_kb("RssFile");
    let advised = code.release().unwrap();
    let after = support::status_kb("RssFile");
    assert_eq!(advised, code.mapped_bytes());
    assert!(
        after + 256 < before,
        "unused code pages should leave the resident set: {before} kB -> {after} kB"
    );
    // What runs after the release faults back in and computes the same.
    assert_eq!(serde_free_parse(&text), parsed);
    assert_eq!(parsed.len(), 1_999);
}

fn serde_free_parse(text: &str) -> Vec<f64> {
    text.trim_matches(['[', ']'])
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect()
}
