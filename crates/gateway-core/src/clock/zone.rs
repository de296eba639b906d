//! The building's wall clock.
//!
//! Readings, windows and payloads stay in UTC. Only what follows people's
//! clocks needs the local time: an office's heating and lights come on at
//! 08:00 on its clocks, so in UTC their daily profile moves an hour at each
//! change of daylight saving time. The zone comes from `[gateway] timezone`
//! and the system's tzdata, read at start: nothing is compiled in.

use std::path::Path;
use std::sync::Arc;

/// What `[gateway] timezone` names when it names no zone: the machine's.
pub const LOCAL: &str = "local";
/// Where the machine's zone is configured on Debian and Raspberry Pi OS.
const LOCALTIME: &str = "/etc/localtime";

/// A `timezone` that names no zone this machine knows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown time zone \"{name}\": not a zone of /usr/share/zoneinfo (is the tzdata package installed?) \
     nor a POSIX TZ rule like \"CET-1CEST,M3.5.0,M10.5.0/3\"; use \"local\" for this machine's zone or \"UTC\""
)]
pub struct UnknownZone {
    pub name: String,
}

/// A time zone: its name and its rules (none for UTC).
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    rules: Option<Arc<tz::TimeZone>>,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Zone {
    pub fn utc() -> Self {
        Self {
            name: "UTC".into(),
            rules: None,
        }
    }

    /// The zone `[gateway] timezone` names: "UTC", "local" (the `TZ`
    /// variable, or else `/etc/localtime`, as the C library reads them), an
    /// IANA name like "Europe/Berlin", or a POSIX TZ rule.
    pub fn named(setting: &str) -> Result<Self, UnknownZone> {
        let setting = setting.trim();
        if setting == LOCAL {
            return Ok(Self::local());
        }
        let unknown = || UnknownZone {
            name: setting.to_string(),
        };
        // A name is looked up as a path under /usr/share/zoneinfo: no
        // climbing out of it, and no file named by its path.
        let name = setting.strip_prefix(':').unwrap_or(setting);
        if name.is_empty() || name.starts_with('/') || name.contains("..") {
            return Err(unknown());
        }
        if is_utc(name) {
            return Ok(Self::utc());
        }
        let rules = tz::TimeZone::from_posix_tz(name).map_err(|_| unknown())?;
        Ok(Self::with_rules(name.to_string(), rules))
    }

    /// This machine's zone. A `TZ` that names nothing and a machine with
    /// no `/etc/localtime` are UTC, as they are to the C library.
    pub fn local() -> Self {
        if let Some(tz) = std::env::var("TZ").ok().filter(|v| !v.trim().is_empty()) {
            // The environment may name a file by its path, as glibc allows.
            let tz = tz.trim();
            let name = tz.trim_start_matches(':');
            let name = name.rsplit_once("zoneinfo/").map_or(name, |(_, n)| n);
            return match tz::TimeZone::from_posix_tz(tz) {
                Ok(rules) => Self::with_rules(name.to_string(), rules),
                Err(_) => Self::utc(),
            };
        }
        let Ok(rules) = tz::TimeZone::local() else {
            return Self::utc();
        };
        // A copied file has no name; its rules are all there is.
        let name = zone_name_of(Path::new(LOCALTIME)).unwrap_or_else(|| LOCAL.into());
        Self::with_rules(name, rules)
    }

    fn with_rules(name: String, rules: tz::TimeZone) -> Self {
        if is_utc(&name) {
            return Self::utc();
        }
        Self {
            name,
            rules: Some(Arc::new(rules)),
        }
    }

    /// "UTC", the zone's IANA name, or the rule as configured: what the
    /// learned profiles were learned in, so that a change of zone is seen.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How far the wall clock is ahead of UTC at this instant.
    pub fn offset_ms(&self, utc_ms: i64) -> i64 {
        let Some(rules) = &self.rules else { return 0 };
        rules
            .find_local_time_type(utc_ms.div_euclid(1000))
            .map_or(0, |t| i64::from(t.ut_offset()) * 1000)
    }
}

fn is_utc(name: &str) -> bool {
    matches!(
        name,
        "UTC" | "utc" | "Etc/UTC" | "Universal" | "Etc/Universal" | "Zulu" | "Etc/Zulu" | "Z"
    )
}

/// The IANA name `/etc/localtime` links to (`…/zoneinfo/Europe/Berlin`).
fn zone_name_of(link: &Path) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    let target = target.to_str()?;
    let (_, name) = target.rsplit_once("zoneinfo/")?;
    Some(name.to_string())
}

/// A zone's offsets, looked up once per quarter hour: every change of a
/// zone's clocks in use today falls on a quarter hour, and a reading costs
/// no search of the zone's transitions.
#[derive(Debug, Clone)]
pub struct WallClock {
    zone: Zone,
    quarter: i64,
    offset_ms: i64,
}

const QUARTER_HOUR_MS: i64 = 900_000;

impl WallClock {
    pub fn new(zone: Zone) -> Self {
        Self {
            zone,
            quarter: i64::MIN,
            offset_ms: 0,
        }
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The wall clock's reading at this UTC instant, as milliseconds on a
    /// UTC scale (what a UTC clock would show at that local time).
    pub fn local_ms(&mut self, utc_ms: i64) -> i64 {
        let quarter = utc_ms.div_euclid(QUARTER_HOUR_MS);
        if quarter != self.quarter {
            self.quarter = quarter;
            self.offset_ms = self.zone.offset_ms(utc_ms);
        }
        utc_ms.saturating_add(self.offset_ms)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new(Zone::utc())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    /// 2026-03-29 01:00 UTC: Europe's clocks go forward.
    const SPRING_2026: i64 = 1_774_746_000_000;
    /// 2026-10-25 01:00 UTC: and back.
    const AUTUMN_2026: i64 = 1_792_890_000_000;
    const CENTRAL_EUROPE: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

    #[test]
    fn a_posix_rule_changes_the_offset_at_its_transitions() {
        let zone = Zone::named(CENTRAL_EUROPE).unwrap();
        assert_eq!(zone.offset_ms(SPRING_2026 - 1000), HOUR);
        assert_eq!(zone.offset_ms(SPRING_2026), 2 * HOUR);
        assert_eq!(zone.offset_ms(AUTUMN_2026 - 1000), 2 * HOUR);
        assert_eq!(zone.offset_ms(AUTUMN_2026), HOUR);
    }

    #[test]
    fn the_wall_clock_follows_the_change_within_the_quarter_hour() {
        let mut clock = WallClock::new(Zone::named(CENTRAL_EUROPE).unwrap());
        // Readings every minute across the change: the wall clock jumps
        // from 01:59 to 03:00 local.
        let mut jumps = Vec::new();
        let mut last = clock.local_ms(SPRING_2026 - HOUR);
        for m in 1..=120 {
            let utc = SPRING_2026 - HOUR + m * 60_000;
            let local = clock.local_ms(utc);
            if local - last != 60_000 {
                jumps.push((utc, local - last));
            }
            last = local;
        }
        assert_eq!(jumps, vec![(SPRING_2026, HOUR + 60_000)]);
    }

    #[test]
    fn utc_and_unknown_names() {
        assert_eq!(Zone::named("UTC").unwrap().offset_ms(SPRING_2026), 0);
        assert_eq!(Zone::named("Etc/UTC").unwrap().name(), "UTC");
        for bad in [
            "Europe/Berln",
            "",
            "../../etc/passwd",
            "/etc/passwd",
            "Berlin",
        ] {
            let e = Zone::named(bad).unwrap_err();
            assert!(e.to_string().contains("tzdata"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_iana_name_is_read_from_the_systems_tzdata() {
        // tzdata is in every Debian install (Priority: required), and the
        // test script installs it where it is missing.
        let zone = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(zone.name(), "Europe/Berlin");
        assert_eq!(zone.offset_ms(SPRING_2026 - 1000), HOUR);
        assert_eq!(zone.offset_ms(SPRING_2026), 2 * HOUR);
        let new_york = Zone::named("America/New_York").unwrap();
        assert_eq!(new_york.offset_ms(SPRING_2026), -4 * HOUR);
    }

    #[test]
    fn the_machines_zone_is_named_by_its_localtime_link() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("localtime");
        std::os::unix::fs::symlink("/usr/share/zoneinfo/Europe/Berlin", &link).unwrap();
        assert_eq!(zone_name_of(&link).as_deref(), Some("Europe/Berlin"));
        // A copied file names nothing.
        let copy = dir.path().join("copy");
        std::fs::write(&copy, b"TZif").unwrap();
        assert_eq!(zone_name_of(&copy), None);
    }
}
