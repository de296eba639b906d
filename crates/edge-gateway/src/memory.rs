//! Gives the allocator's free pages back to the system once a burst has
//! passed (`memory_release::heap` says why glibc keeps them).
//!
//! Checked on a timer rather than at the end of each burst: what marks a
//! burst's end differs by input (a QoS 1 flood, a LoRaWAN backlog, a
//! dashboard export), while "the allocator holds more than a MiB free" is
//! the one condition they all leave behind. A check is one `mallinfo2`
//! (a walk of the arenas' bins, microseconds); the release runs only when
//! there is something to release.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gateway_core::telemetry::{Counter, Telemetry};
use memory_release::code::StartupCode;
use tracing::{debug, info, warn};

/// What the allocator's one arena keeps free at its top during a burst
/// (`memory_release::heap::tune_for_bursts`): a few batches of readings
/// in flight, given back by the timer once the burst has passed.
pub const HOLD_DURING_BURSTS: usize = 4 << 20;

/// How often the allocator is asked what it holds free.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Below this, a release is not worth locking every arena for: an idle
/// gateway holds under 100 KiB free (86–88 KiB measured, shipped and
/// LTO-off builds), which its next readings reuse. A quarter of a MiB,
/// about three times that: in the shipped build a 10 000 × 5 burst leaves
/// 0.48–0.6 MiB free, all of it in a few hundred holes the caches pin, so
/// half a MiB released after some bursts and not after others, and the
/// release is what gives back ~1.1 MB of the burst (issue 69). An idle
/// gateway still never reaches it, and checks that would give nothing
/// back again are skipped ([`worth_releasing`]).
pub const RELEASE_ABOVE: usize = 256 << 10;

/// How long the caches are given to empty themselves (on their owners'
/// tasks, woken by the ask) before the free pages are released.
pub const LET_GO_BEFORE_TRIM: Duration = Duration::from_millis(50);

/// How far the free bytes must have moved since the last release for
/// another: the free bytes count the pages already given back (they stay
/// free chunks), so an idle gateway after a burst holds more than
/// [`RELEASE_ABOVE`] free for good, and would otherwise wake every cache's
/// task and walk the arena every check to give nothing back.
pub const RELEASE_AGAIN_AFTER: usize = 256 << 10;

/// Whether a check that finds `held` bytes free releases, when the last
/// release left `after_last` free.
pub fn worth_releasing(held: usize, after_last: Option<usize>) -> bool {
    held >= RELEASE_ABOVE && after_last.is_none_or(|a| held.abs_diff(a) >= RELEASE_AGAIN_AFTER)
}

/// Counts releases as `edge_gateway_heap_releases_total`.
pub struct HeapTrimmer {
    releases: Counter,
    /// Free bytes right after the last release; `usize::MAX` before any.
    after_last: AtomicUsize,
}

impl HeapTrimmer {
    pub fn new(telemetry: &Telemetry) -> Self {
        Self {
            releases: telemetry.counter("edge_gateway_heap_releases_total", &[]),
            after_last: AtomicUsize::new(usize::MAX),
        }
    }

    /// One check. When the allocator holds [`RELEASE_ABOVE`] free (a burst
    /// has passed), the caches of recent things are asked to let go first
    /// (`gateway_core::cache_release`): what they kept from the burst's end
    /// splits the free memory into holes no page of which is whole, which
    /// the release cannot give back. The allocator's calls run on a
    /// blocking thread: the release locks each arena in turn and must not
    /// stall a runtime worker while it does. Returns whether it gave pages
    /// back: a burst has just passed.
    pub async fn check(&self) -> bool {
        let after_last = match self.after_last.load(Ordering::Relaxed) {
            usize::MAX => None,
            a => Some(a),
        };
        let held = match tokio::task::spawn_blocking(memory_release::heap::free_bytes_held).await {
            Ok(Some(held)) if worth_releasing(held, after_last) => held,
            Ok(_) => return false,
            Err(e) => {
                debug!(error = %e, "Heap check did not run.");
                return false;
            }
        };
        gateway_core::cache_release::ask();
        tokio::time::sleep(LET_GO_BEFORE_TRIM).await;
        let release = || {
            let released = memory_release::heap::release_free_pages();
            (released, memory_release::heap::free_bytes_held())
        };
        match tokio::task::spawn_blocking(release).await {
            Ok((released, after)) => {
                self.after_last
                    .store(after.unwrap_or(held).min(usize::MAX - 1), Ordering::Relaxed);
                if released {
                    self.releases.inc();
                    debug!(free_bytes = held, "Gave the allocator's free pages back.");
                }
                released
            }
            Err(e) => {
                debug!(error = %e, "Heap release did not run.");
                false
            }
        }
    }
}

/// How long after `Gateway::start` returns the start-up code is released.
/// The adapters and the upstream finish starting on their own tasks
/// (connect, subscribe, bind, load state) a few milliseconds later: released
/// at once, their start-up code faulted straight back in, 2.2 of the
/// executable's 2.5 MiB of resident code within 10 ms. An adapter still
/// retrying its connection after this is running the code it will run
/// until it connects, which should stay.
pub const STARTUP_SETTLES: Duration = Duration::from_secs(5);

/// Unmaps the code only start-up ran, once every component has started
/// (`memory_release::code` says why that is safe and what it gives).
///
/// Called by the run loop on its own thread, not on a task of its own: what
/// runs after the `madvise` faults its code back in, 64 KB around each page,
/// and a task's tail (its future's last poll, its completion, dropping it,
/// a blocking thread's hand-back) is code nothing else runs, so it stayed
/// resident for good, about 300 KB of it. The run loop's code runs at every
/// tick anyway. The kernel's walk of the page tables took under a
/// millisecond, which the run loop's thread (signals, status line) can spare.
pub fn release_startup_code(code: &StartupCode) {
    match code.release() {
        Ok(0) => {}
        Ok(advised) => info!(
            code_mapped_kib = advised / 1024,
            "Running; released the memory of code only start-up used (code in use faults back in)."
        ),
        Err(e) => {
            warn!(error = %e, "Could not release the start-up code's pages; running with them resident.")
        }
    }
}

/// Unmaps the executable's and libraries' code once a burst has passed
/// (the heap was just released), as start-up's was: a burst runs code the
/// idle gateway does not (the batch paths, the window closing, the outbox
/// at full stretch), and its pages stayed resident for good: about 1.1 MB
/// of a shipped gateway's 5.1–5.2 MB once a 10 000 × 5 burst had passed
/// (issue 69). The pages are clean copies of the files: they stay in the
/// page cache, and what runs next faults its own back in from there
/// (minor faults), never from the disk. A release follows a heap release
/// only, at most one per heap check (2 s), and only once the allocator's
/// free bytes moved by a quarter of a MiB. Called on the run loop's thread
/// for the reason [`release_startup_code`] gives.
pub fn release_burst_code(code: &StartupCode) {
    match code.release() {
        Ok(advised) => debug!(
            code_mapped_kib = advised / 1024,
            "A burst passed; released the memory of the code it ran."
        ),
        Err(e) => debug!(error = %e, "Could not release the burst's code pages."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_is_asked_again_only_once_the_free_bytes_moved() {
        assert!(!worth_releasing(RELEASE_ABOVE - 1, None));
        assert!(worth_releasing(RELEASE_ABOVE, None));
        // Idle, the allocator holds under 100 KiB free: never released.
        assert!(!worth_releasing(100 << 10, None));
        // The least a 10 000 × 5 burst left free in the shipped build.
        assert!(worth_releasing(496 << 10, None));
        // Idle after a burst: the same free bytes (pages already given
        // back among them) are not released again and again.
        let after = RELEASE_ABOVE + 2 * RELEASE_AGAIN_AFTER;
        assert!(!worth_releasing(after, Some(after)));
        assert!(!worth_releasing(
            after + RELEASE_AGAIN_AFTER - 1,
            Some(after)
        ));
        // Another burst freed more, or reused the holes and freed others.
        assert!(worth_releasing(after + RELEASE_AGAIN_AFTER, Some(after)));
        assert!(worth_releasing(after - RELEASE_AGAIN_AFTER, Some(after)));
    }
}
