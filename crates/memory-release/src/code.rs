//! Dropping the pages of code that only start-up ran, the way the Linux
//! kernel frees its `__init` sections once it has booted.
//!
//! An idle gateway's resident memory is mostly its own machine code, not
//! data: 5 of its 9 MB, against 0.3 MB of heap. Start-up touches nearly
//! every part of the executable once (clap, the TOML reader and its
//! validation, every component's constructor), and the kernel maps the
//! 64 KB around each page touched, so those pages stay mapped for the life
//! of the process though the running gateway never executes them again.
//!
//! [`StartupCode::release`] tells the kernel the process no longer needs the
//! pages of its code mappings and the read-only constants beside them
//! (`MADV_DONTNEED`). For a read-only private file mapping that only unmaps
//! them: what the gateway still runs faults
//! straight back in from the page cache (a minor fault, no disk read), and
//! what it never runs again is no longer counted against it, and is the
//! first thing the kernel reclaims when memory runs short. The bytes the
//! process reads do not change; memory pressure can drop the same clean
//! pages at any moment.
//!
//! Which mappings qualify is decided by [`StartupCode::record`] before any
//! thread starts: read-only, private mappings of files without a single
//! anonymous (written) page. That leaves out the relocated pointers
//! (`.data.rel.ro`, read-only only once the loader wrote them) and any
//! code a text relocation patched: dropping those pages would lose what
//! was written. Those belong to the executable and the
//! libraries it was linked against, which stay mapped at the same addresses
//! until the process exits, so a later release cannot reach a mapping that
//! replaced them (a library loaded later could be unloaded, and its address
//! reused by data).

use std::ops::Range;

/// The code mappings that may be released: recorded once at start-up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StartupCode {
    mappings: Vec<Range<usize>>,
}

impl StartupCode {
    /// Records the process's code mappings. Call it before the process
    /// starts a thread or loads a library (first thing in `main`), where
    /// every mapping belongs to the executable or a library it was linked
    /// against. Where `/proc/self/smaps` cannot be read (not Linux, a
    /// sandbox without /proc), or does not describe the address space the
    /// process sees, nothing is recorded and [`release`](Self::release)
    /// does nothing.
    #[must_use]
    pub fn record() -> Self {
        let read = |path| std::fs::read_to_string(path).ok();
        match (read("/proc/self/maps"), read("/proc/self/smaps")) {
            (Some(maps), Some(smaps)) => Self::from_listings(&maps, &smaps),
            _ => Self::default(),
        }
    }

    /// The releasable mappings of an smaps listing, provided its file
    /// mappings are those `maps` lists. An emulator running the process
    /// (qemu-user, which runs the armhf and arm64 packages in CI) shows it
    /// its own `maps` but passes the host's `smaps` through: the host's
    /// view of the guest's pages, where code is not executable and the
    /// emulator's own libraries sit beside it. Its anonymous counts say
    /// nothing about what the guest wrote, and qemu 7.2's pass-through of
    /// `MADV_DONTNEED` on them leaves it crashing at exit; so a listing that
    /// disagrees with `maps` is not acted on.
    #[must_use]
    pub fn from_listings(maps: &str, smaps: &str) -> Self {
        let file_mappings = |listing: &'_ str| -> Vec<(Range<usize>, String, String)> {
            listing
                .lines()
                .filter_map(Mapping::parse)
                .filter(|m| m.path.starts_with('/'))
                .map(|m| (m.range, m.perms.to_owned(), m.path.trim_end().to_owned()))
                .collect()
        };
        let seen = file_mappings(maps);
        if seen.is_empty() || seen != file_mappings(smaps) {
            return Self::default();
        }
        Self::from_smaps(smaps)
    }

    /// The releasable mappings of an smaps listing.
    fn from_smaps(smaps: &str) -> Self {
        let mut mappings = Vec::new();
        let mut current: Option<Range<usize>> = None;
        for line in smaps.lines() {
            if let Some(header) = Mapping::parse(line) {
                // A new mapping: the last one had no `Anonymous:` line,
                // which no kernel that prints smaps leaves out; without
                // it, nothing says the mapping is clean.
                current = header.is_code().then_some(header.range);
            } else if let Some(kb) = line.strip_prefix("Anonymous:") {
                let clean = kb.trim().trim_end_matches("kB").trim() == "0";
                if let (Some(range), true) = (current.take(), clean) {
                    mappings.push(range);
                }
            }
        }
        Self { mappings }
    }

    /// Bytes of address space the recorded mappings cover.
    #[must_use]
    pub fn mapped_bytes(&self) -> usize {
        self.mappings.iter().map(|m| m.end - m.start).sum()
    }

    /// Unmaps the pages of every recorded mapping; pages still in use fault
    /// back in on their next use. The bytes of address space advised.
    pub fn release(&self) -> std::io::Result<usize> {
        let mut advised = 0;
        for mapping in &self.mappings {
            imp::drop_pages(mapping)?;
            advised += mapping.end - mapping.start;
        }
        Ok(advised)
    }
}

/// The header line of one mapping in `/proc/<pid>/smaps`:
/// `55626c4f3000-55626cd8b000 r-xp 00287000 fd:01 1234 /usr/bin/edge-gateway`.
struct Mapping<'a> {
    range: Range<usize>,
    perms: &'a str,
    path: &'a str,
}

impl<'a> Mapping<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let range = usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?;
        let perms = fields.next()?;
        if perms.len() != 4 || range.start >= range.end {
            return None;
        }
        let path = fields.nth(3).unwrap_or_default().trim_start();
        Some(Self { range, perms, path })
    }

    /// Readable, not writable, private, backed by a file: machine code
    /// and the constants beside it (`.rodata`, unwind tables), which a
    /// dropped page is read back from unchanged. Not `[vdso]` and the
    /// like, which are the kernel's.
    fn is_code(&self) -> bool {
        matches!(self.perms, "r-xp" | "r--p") && self.path.starts_with('/')
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ops::Range;

    #[allow(unsafe_code)]
    pub fn drop_pages(mapping: &Range<usize>) -> std::io::Result<()> {
        // SAFETY: the range is a whole mapping recorded at start-up: a
        // read-only, private file mapping with no anonymous page, of the executable or a library linked into it, so it is
        // still mapped, unchanged, for as long as the process lives.
        // MADV_DONTNEED on such a mapping only removes page table entries:
        // the next access reads the same bytes from the file's page cache.
        // A reference into it (a `&'static str` constant) reads the same
        // bytes before and after.
        let done = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
        if done == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn drop_pages(_: &std::ops::Range<usize>) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55626c26c000-55626c4f2000 r--p 00000000 fd:01 1234 /usr/bin/edge-gateway
Size:               2584 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
55626c4f3000-55626cd8b000 r-xp 00287000 fd:01 1234 /usr/bin/edge-gateway
Size:               8800 kB
Rss:                5244 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
55626cd8b000-55626ce37000 r--p 00b1f000 fd:01 1234 /usr/bin/edge-gateway
Anonymous:           688 kB
55626ce37000-55626ce40000 rw-p 00bcb000 fd:01 1234 /usr/bin/edge-gateway
Anonymous:            36 kB
556295295000-5562952d4000 rw-p 00000000 00:00 0                          [heap]
Anonymous:           164 kB
7f02fae9b000-7f02faff1000 r-xp 00028000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f02fb000000-7f02fb001000 r-xp 00001000 fd:01 78 /opt/lib/text relocated.so (deleted)
Anonymous:             4 kB
7f02fb002000-7f02fb003000 r-xp 00001000 fd:01 79 /opt/lib/with space.so (deleted)
Anonymous:             0 kB
7ffd1b5e0000-7ffd1b5e2000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
7f02fb100000-7f02fb101000 r-xp 00000000 00:00 0 
Anonymous:             0 kB
";

    #[test]
    fn only_clean_code_mappings_of_files_are_recorded() {
        let code = StartupCode::from_smaps(SMAPS);
        assert_eq!(
            code.mappings,
            vec![
                0x5562_6c26_c000..0x5562_6c4f_2000,
                0x5562_6c4f_3000..0x5562_6cd8_b000,
                0x7f02_fae9_b000..0x7f02_faff_1000,
                0x7f02_fb00_2000..0x7f02_fb00_3000,
            ],
            "the executable's constants and code, libc's code and the replaced \
             library's; not the relocated pointers, writable data or the heap, \
             not a page written by a text relocation, not the vDSO or an \
             anonymous executable mapping"
        );
        assert_eq!(
            code.mapped_bytes(),
            0x286_000 + 0x898_000 + 0x156_000 + 0x1000
        );
    }

    /// The header lines of [`SMAPS`]: what `/proc/self/maps` shows the
    /// same process.
    fn maps_of(smaps: &str) -> String {
        smaps
            .lines()
            .filter(|line| Mapping::parse(line).is_some())
            .map(|line| format!("{line}\n"))
            .collect()
    }

    #[test]
    fn a_listing_that_agrees_with_maps_is_used() {
        assert_eq!(
            StartupCode::from_listings(&maps_of(SMAPS), SMAPS),
            StartupCode::from_smaps(SMAPS)
        );
        assert_eq!(
            StartupCode::from_listings(&maps_of(SMAPS), SMAPS)
                .mappings
                .len(),
            4
        );
    }

    /// Taken from an armhf program under qemu-arm 7.2 (Debian 12), cut
    /// down: `maps` is the guest's, `smaps` the host's.
    #[test]
    fn an_emulators_host_listing_is_not_acted_on() {
        let maps = "\
3f6bc000-3f7c6000 r-xp 00000000 fe:00 959791                             /usr/arm-linux-gnueabihf/lib/libc.so.6
3f7c6000-3f7c8000 r--p 00109000 fe:00 959791                             /usr/arm-linux-gnueabihf/lib/libc.so.6
3f7c9000-3f7d5000 rw-p 00000000 00:00 0                                  
40000000-40001000 r-xp 00000000 fe:00 10011497                           /tmp/maps-arm
";
        let smaps = "\
3f6bd000-3f7c7000 r--p 00000000 fe:00 959791                             /usr/arm-linux-gnueabihf/lib/libc.so.6
Rss:                 704 kB
Anonymous:             0 kB
3f7c7000-3f7c9000 r--p 00109000 fe:00 959791                             /usr/arm-linux-gnueabihf/lib/libc.so.6
Anonymous:             8 kB
40001000-40002000 r--p 00000000 fe:00 10010725                           /tmp/maps-arm
Anonymous:             0 kB
55e9003a0000-55e900418000 r--p 00000000 fe:00 10199271                   /usr/bin/qemu-arm
Anonymous:             0 kB
";
        assert!(!StartupCode::from_smaps(smaps).mappings.is_empty());
        assert_eq!(
            StartupCode::from_listings(maps, smaps),
            StartupCode::default()
        );
        // The emulator's own mapping alone is enough to tell.
        let guest_view: String = maps_of(smaps)
            .lines()
            .filter(|line| !line.ends_with("/usr/bin/qemu-arm"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(
            StartupCode::from_listings(&guest_view, smaps),
            StartupCode::default()
        );
    }

    #[test]
    fn a_mapping_without_its_anonymous_line_is_not_trusted() {
        let smaps = "\
55626c4f3000-55626cd8b000 r-xp 00287000 fd:01 1234 /usr/bin/edge-gateway
Size:               8800 kB
7f02fae9b000-7f02faff1000 r-xp 00028000 fd:01 77 /usr/lib/libc.so.6
Anonymous:             0 kB
";
        assert_eq!(
            StartupCode::from_smaps(smaps).mappings,
            vec![0x7f02_fae9_b000..0x7f02_faff_1000]
        );
    }

    #[test]
    fn unreadable_listings_record_nothing() {
        for smaps in [
            "",
            "garbage\n",
            "zz-yy r-xp 0 0 0 /bin/x\nAnonymous: 0 kB\n",
        ] {
            assert_eq!(StartupCode::from_smaps(smaps), StartupCode::default());
        }
    }
}
