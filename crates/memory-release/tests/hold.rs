//! Its own `main`, no test harness: the settings are process-wide, and
//! one arena has to be set before any other thread has allocated (the
//! harness's threads would each have taken an arena of their own).
//!
//! A burst's buffers, freed at the arena's top, stay there for the next
//! burst instead of being given back at 128 KiB and faulted in again page
//! by page; the timer's release, on another thread, still gives them back
//! once the burst has passed.

#![allow(clippy::unwrap_used)]

mod support;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    use memory_release::heap::{free_bytes_held, release_free_pages, tune_for_bursts};

    assert!(tune_for_bursts(4 << 20));
    let rss = || support::status_kb("VmRSS");
    // A worker's bursts: buffers under the 128 KiB that glibc maps on
    // their own, so they come from the arena, freed newest first as the
    // top shrinks back.
    let worker = std::thread::spawn(move || {
        let burst = || (0..24).map(|i| vec![i as u8; 100_000]).collect::<Vec<_>>();
        let before = free_bytes_held().unwrap();
        drop(burst());
        let held = free_bytes_held().unwrap();
        assert!(
            held >= before + (2 << 20),
            "the burst's 2.4 MB should stay free in the arena: {before} -> {held} bytes"
        );
        let resident = rss();
        drop(burst());
        let reused = rss();
        assert!(
            reused <= resident + 512,
            "the second burst should reuse the resident pages: {resident} kB -> {reused} kB"
        );
        reused
    });
    let reused = worker.join().unwrap();
    // The timer's release runs on a thread of its own.
    assert!(release_free_pages(), "nothing was released");
    let released = rss();
    assert!(
        released + 2048 <= reused,
        "the burst's pages should be given back once it has passed: {reused} kB -> {released} kB"
    );
    // As libtest reports, so the run's summary counts this test too.
    println!("test freed_buffers_stay_for_the_next_burst_until_released ... ok");
    println!("\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {}
