//! The one test of this binary, so no other test's allocations move the
//! figures: a burst of short-lived chunks interleaved with long-lived
//! ones leaves free memory in the arena that `release_free_pages` gives
//! back, and the process's resident anonymous memory drops.

#![allow(clippy::unwrap_used)]

mod support;

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn a_burst_freed_between_long_lived_chunks_is_released() {
    // Like messages in flight between series opening: one chunk in 32
    // lives on and pins the arena's top; the 31 between are freed and
    // coalesce into runs of several whole pages.
    let mut kept = Vec::new();
    let mut burst = Vec::new();
    for i in 0..32_000usize {
        let chunk = vec![i as u8; 1000];
        if i % 32 == 0 {
            kept.push(chunk);
        } else {
            burst.push(chunk);
        }
    }
    drop(burst);
    let held = memory_release::heap::free_bytes_held().unwrap();
    assert!(
        held > 16 << 20,
        "the burst should leave >16 MB free in the arena, got {held}"
    );
    let before = support::status_kb("RssAnon");
    assert!(
        memory_release::heap::release_free_pages(),
        "nothing was released"
    );
    let after = support::status_kb("RssAnon");
    assert!(
        after + 8 * 1024 < before,
        "resident anonymous memory should drop by >8 MB: {before} kB -> {after} kB"
    );
    assert_eq!(kept.len(), 1_000);
}
