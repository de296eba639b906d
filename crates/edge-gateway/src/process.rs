//! Process figures for `/metrics`, read from `/proc/self` (Linux only; the
//! series are simply absent elsewhere). Names follow the Prometheus client
//! libraries' process collector, so existing dashboards work unchanged.

use std::fmt::Write;

/// Appends `process_*` series to a Prometheus text body.
pub fn render(out: &mut String) {
    if let Some(rss) = resident_bytes() {
        let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(out, "# TYPE process_open_fds gauge");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
}

/// Resident set size in bytes. `VmRSS` of `/proc/self/status` is in kB,
/// which avoids needing the page size that `statm` counts in.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc_status() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t    4321 kB\nThreads:\t3\n"),
            Some(4321 * 1024)
        );
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().is_some_and(|b| b > 0));
        }
    }
}
