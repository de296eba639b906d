//! Which `Host` a request reached over loopback may name: DNS rebinding.
//!
//! A web page the operator opens can point its own name at 127.0.0.1 and
//! read the dashboard, on loopback and open by default, as a page of its
//! own origin: the building's readings, alerts and command results. The
//! browser sends that name as `Host`, so a request that came over
//! loopback is answered only when its `Host` is an address, `localhost`
//! (or a name under it), or this machine's own name (Debian resolves it to
//! 127.0.1.1), never a name someone else's DNS answers for.

use std::net::IpAddr;
use std::sync::OnceLock;

/// Whether `host` (a `Host` header value, port and all) names this
/// machine or one of `allowed` (`[dashboard] allowed_hosts`); `None` (an
/// HTTP/1.0 request) does, no browser sends one.
pub fn names_this_machine(host: Option<&str>, hostname: &str, allowed: &[String]) -> bool {
    let Some(host) = host else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<IpAddr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
        || name == "localhost"
        || name.ends_with(".localhost")
        || (!hostname.is_empty()
            && (name == hostname || name.strip_suffix(".local") == Some(hostname)))
}

/// This machine's name, lower case, read once.
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|n| n.trim().to_ascii_lowercase())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_machine_pass() {
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:8080",
            "raspberrypi:8080",
            "raspberrypi.local",
            "192.168.1.20:8080",
        ] {
            assert!(names_this_machine(Some(host), "raspberrypi", &[]), "{host}");
        }
        assert!(names_this_machine(None, "raspberrypi", &[]));
        let proxy = ["building.example.com".to_string()];
        assert!(names_this_machine(
            Some("Building.example.com"),
            "pi",
            &proxy
        ));
        assert!(!names_this_machine(Some("other.example.com"), "pi", &proxy));
        for host in [
            "attacker.example:8080",
            "attacker.example",
            "raspberrypi.attacker.example",
            "localhost.attacker.example",
            "[evil]:80",
            "",
        ] {
            assert!(
                !names_this_machine(Some(host), "raspberrypi", &[]),
                "{host}"
            );
        }
        assert!(!names_this_machine(Some("x"), "", &[]), "no hostname known");
    }
}
