//! What both test binaries read of the process's own memory.

#![allow(clippy::unwrap_used)]

/// A `kB` line of `/proc/self/status`, e.g. `RssAnon` or `RssFile`.
pub fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap();
    line.split_whitespace().next().unwrap().parse().unwrap()
}
