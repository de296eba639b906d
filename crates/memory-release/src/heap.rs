//! Giving the allocator's free memory back to the system after a burst.
//!
//! glibc keeps what a thread frees in that thread's arena and returns it to
//! the system only from the arena's top. After a burst of messages, the
//! chunks the burst used sit free between long-lived ones (series keys,
//! window accumulators that opened during the burst) and stay resident
//! for good: 2.4 MB of a 17 MB gateway after 10 000 devices × 5 metrics
//! arrived at once, measured with `malloc_stats`. `malloc_trim` releases
//! the whole free pages inside every arena (`MADV_DONTNEED`), which the
//! arenas' automatic trimming never does.
//!
//! Only glibc needs or offers this; elsewhere both calls are no-ops.

/// Bytes the allocator holds free in its arenas (`mallinfo2().fordblks`,
/// summed over every arena), or `None` where that is not known. Free bytes
/// are not all releasable: only whole free pages are.
#[must_use]
pub fn free_bytes_held() -> Option<usize> {
    imp::free_bytes_held()
}

/// Releases the whole free pages of every arena to the system. True if
/// any memory was released. Walks and locks each arena in turn, so
/// threads allocating meanwhile wait for it: call it off the hot path,
/// on a blocking thread.
pub fn release_free_pages() -> bool {
    imp::release_free_pages()
}

/// Sets the allocator up for bursts, once, before the runtime's threads
/// start: one arena, whose top keeps up to `hold` bytes free.
///
/// glibc gave a burst's buffers back as soon as 128 KiB lay free at an
/// arena's top, and the next batch faulted them in again page by page:
/// on acknowledged TCP lines, page faults were 6-7 % of the gateway's CPU
/// (`perf`), 5 000-15 000 per million lines. Holding them keeps the pages
/// warm for the next batch. Only the main arena's top is given back by
/// [`release_free_pages`]; a worker's own arena would hold its top until
/// it grew past `hold` again. With one arena the timer's release gives
/// everything back once the burst has passed. What it costs: the threads
/// share one lock for allocations their per-thread cache does not serve.
/// True if the allocator took both settings.
pub fn tune_for_bursts(hold: usize) -> bool {
    imp::tune_for_bursts(hold)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    #[allow(unsafe_code)]
    pub fn tune_for_bursts(hold: usize) -> bool {
        let Ok(hold) = libc::c_int::try_from(hold) else {
            return false;
        };
        // SAFETY: mallopt takes two integers and changes a parameter under
        // the main arena's lock; both take any positive value.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, hold) == 1
        }
    }

    #[allow(unsafe_code)]
    pub fn free_bytes_held() -> Option<usize> {
        // SAFETY: mallinfo2 takes no arguments, reads the allocator's own
        // state under the arenas' locks and returns a plain struct by
        // value (glibc 2.33+; the gateway already needs 2.34).
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks)
    }

    #[allow(unsafe_code)]
    pub fn release_free_pages() -> bool {
        // SAFETY: malloc_trim has no preconditions on its caller: it takes
        // each arena's lock itself and only releases pages of free chunks.
        unsafe { libc::malloc_trim(0) != 0 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn tune_for_bursts(_hold: usize) -> bool {
        false
    }

    pub fn free_bytes_held() -> Option<usize> {
        None
    }

    pub fn release_free_pages() -> bool {
        false
    }
}
