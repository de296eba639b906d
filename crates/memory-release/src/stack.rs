//! Giving back the stack pages a thread touched once and no longer uses.
//!
//! A thread's stack stays resident as deep as it ever went: the kernel
//! maps a page on the first touch and never takes it back while the
//! thread lives. Start-up runs deep on the main thread (the command line,
//! gateway.toml and its validation, every component's constructor) and a
//! burst runs deep on the runtime's workers; afterwards the main thread
//! only waits for signals and timers and a worker only polls tasks a few
//! frames down. Measured on an idle gateway: 140 KiB of the main thread's
//! stack and 36 KiB of each worker's resident, for a few KiB in use.
//!
//! Everything below a thread's stack pointer is free by the ABI (nothing
//! may point there; a signal handler that runs later builds its frame
//! afresh), so [`release_below_here`] advises `MADV_DONTNEED` on the
//! stack's pages from its lowest one up to a margin below the caller's
//! frame. The pages become unmapped anonymous memory again, and the next
//! call that goes that deep faults in zeroed pages, as on a new thread.
//! It acts only on the calling thread's own stack: no other thread's
//! stack pointer is known.
//!
//! Releases are asked for ([`ask`]) by whoever knows a burst or start-up
//! has passed; each thread acts on the request the next time it calls
//! [`release_if_asked`] (the runtime's workers do before they park), so a
//! busy worker never pays more than one atomic load per park.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What is kept below the caller's frame: the frames of the calls made on
/// the way to the system call (a few hundred bytes: the bounds are looked
/// up before, and returned from) and x86-64's 128-byte red zone below the
/// last, with room to spare. Each KiB here is a KiB resident per thread.
const MARGIN: usize = 4 * 1024;

/// Requests so far; a thread releases when it has not seen the latest.
static ASKED: AtomicU64 = AtomicU64::new(0);
/// Off until [`enable`]: a process that never checked that it may act on
/// its own address space (see `code::StartupCode::from_listings`, qemu-user)
/// never releases.
static ENABLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The last request this thread acted on.
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// Allows releases from now on. Called once the process has checked that
/// `/proc/self` describes the address space it runs in.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Asks every thread that calls [`release_if_asked`] to release its
/// stack's unused pages once.
pub fn ask() {
    ASKED.fetch_add(1, Ordering::Relaxed);
}

/// Releases the calling thread's unused stack pages if a release was asked
/// for since it last did; the bytes of address space advised. One atomic
/// load when there is nothing to do: cheap enough for a worker's park.
#[inline]
pub fn release_if_asked() -> usize {
    let asked = ASKED.load(Ordering::Relaxed);
    if SEEN.with(Cell::get) == asked {
        return 0;
    }
    SEEN.with(|s| s.set(asked));
    release_below_here()
}

/// Releases the calling thread's stack pages below its current frame (less
/// [`MARGIN`]); the bytes of address space advised, 0 when releases are
/// not enabled or the stack's bounds are not known.
#[inline(never)]
pub fn release_below_here() -> usize {
    if !ENABLED.load(Ordering::Relaxed) {
        return 0;
    }
    let here = std::hint::black_box(0u8);
    let frame = std::ptr::addr_of!(here) as usize;
    let Some(lowest) = imp::lowest_usable() else {
        return 0;
    };
    match unused_pages(lowest, frame, imp::page_size()) {
        Some((start, len)) if imp::drop_pages(start, len) => len,
        _ => 0,
    }
}

/// The whole pages from `lowest` (the stack's lowest usable byte) up to
/// [`MARGIN`] below `frame`: (start, length), or `None` when there is not a
/// page between them.
fn unused_pages(lowest: usize, frame: usize, page: usize) -> Option<(usize, usize)> {
    let start = lowest.checked_next_multiple_of(page)?;
    let end = frame.checked_sub(MARGIN)? / page * page;
    (end > start).then(|| (start, end - start))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub fn page_size() -> usize {
        // SAFETY: sysconf reads a constant of the system; no preconditions.
        #[allow(unsafe_code)]
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096).max(4096)
    }

    /// The lowest address of this thread's stack above its guard, from
    /// glibc's record of the thread. For the main thread glibc takes the
    /// stack size limit below the top, cut at the end of the mapping below
    /// (`pthread_getattr_np` reads `/proc/self/maps` for it): addresses
    /// the stack may grow into and no other mapping holds. Looked up on
    /// each release, not kept: a mapping placed in that gap later would
    /// make a kept bound wrong.
    pub fn lowest_usable() -> Option<usize> {
        look_up()
    }

    #[allow(unsafe_code)]
    fn look_up() -> Option<usize> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let (mut size, mut guard) = (0usize, 0usize);
        // SAFETY: pthread_getattr_np initialises `attr` for the calling
        // thread when it returns 0, and only then is it read and destroyed;
        // the getters write into the locals passed.
        unsafe {
            if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
                return None;
            }
            let ok = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) == 0
                && libc::pthread_attr_getguardsize(attr.as_ptr(), &mut guard) == 0;
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            // Whether the guard is counted inside the reported stack differs
            // between glibc versions; skipping it either way only leaves a
            // page or so alone.
            ok.then(|| (addr as usize).saturating_add(guard))
                .filter(|&a| a > guard)
        }
    }

    #[allow(unsafe_code)]
    pub fn drop_pages(start: usize, len: usize) -> bool {
        // SAFETY: [start, start + len) lies in the calling thread's own
        // stack, below its current frame by more than the red zone and the
        // frames of this call: no live value is stored there, and nothing
        // may hold a pointer to it. MADV_DONTNEED on private anonymous
        // memory makes the next touch read zeroes, as a fresh stack page
        // would. Parts of the range the stack has not grown into yet (the
        // main thread's) are not mapped: the kernel skips them and reports
        // ENOMEM after advising the rest, which is what is wanted. No other
        // mapping lies in the range: glibc bounds the main thread's stack
        // by the mapping below it, and a thread's own stack is its own
        // mapping.
        let done = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        done == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM)
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn page_size() -> usize {
        4096
    }

    pub fn lowest_usable() -> Option<usize> {
        None
    }

    pub fn drop_pages(_: usize, _: usize) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_pages_below_the_margin_are_released() {
        let page = 4096;
        // Not page-aligned at either end: rounded inwards.
        let (start, len) = unused_pages(0x1_0010, 0x2_0000 + MARGIN + 100, page).unwrap();
        assert_eq!((start, start + len), (0x1_1000, 0x2_0000));
        // The caller's frame too close to the bottom: nothing.
        assert_eq!(unused_pages(0x1_0000, 0x1_0000 + MARGIN + 4095, page), None);
        assert_eq!(unused_pages(0x1_0000, 100, page), None);
    }

    /// Resident KiB of the mapping holding `addr` (`/proc/self/smaps`).
    fn resident_kib_around(addr: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let header = line.split(' ').next().and_then(|r| r.split_once('-'));
            if let Some((start, end)) = header {
                if let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                ) {
                    inside = (start..end).contains(&addr);
                    continue;
                }
            }
            if let Some(kb) = line.strip_prefix("Rss:").filter(|_| inside) {
                return kb.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
        None
    }

    /// A thread that went deep, released, and went deep again reads what it
    /// writes: the released pages come back zeroed and usable. And they
    /// were given back: the stack's resident size fell.
    #[test]
    fn a_thread_runs_on_after_its_stack_is_released() {
        fn deep(n: u32) -> u64 {
            let buf = std::hint::black_box([n as u8; 4096]);
            if n == 0 {
                u64::from(buf[17])
            } else {
                deep(n - 1) + u64::from(buf[4095])
            }
        }
        enable();
        let (released, before, after) = std::thread::spawn(|| {
            let here = std::hint::black_box(0u8);
            let stack = std::ptr::addr_of!(here) as usize;
            let first = deep(64);
            let before = resident_kib_around(stack);
            let released = release_below_here();
            let after = resident_kib_around(stack);
            assert_eq!(deep(64), first);
            ask();
            assert!(release_if_asked() > 0);
            assert_eq!(release_if_asked(), 0, "acts once per request");
            (released, before, after)
        })
        .join()
        .unwrap();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released >= 64 * 4096, "released {released} bytes");
            let (before, after) = (before.unwrap(), after.unwrap());
            assert!(
                before >= 256 && after + 200 <= before,
                "stack resident {before} KiB before the release, {after} KiB after"
            );
        }
    }
}
