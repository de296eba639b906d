//! `[[sink]] type = "jsonl"`: its keys, their defaults and their checks.

use std::path::PathBuf;

use gateway_core::config::load::{self, join};
use gateway_core::config::values::byte_size;
use gateway_core::config::{FullPolicy, Problems};
use serde::Deserialize;

/// What a line can be; `write` picks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Series {
    /// Every accepted reading (late ones too).
    Readings,
    /// Each closed window, as the upstream's `aggregated` payload.
    Aggregates,
    /// Raised and cleared alerts, as the upstream's `alerts` payload.
    Alerts,
    /// Devices' online/offline, as the upstream's `status` payload.
    Statuses,
}

impl Series {
    /// The `type` of its lines.
    pub fn line_type(self) -> &'static str {
        match self {
            Self::Readings => "reading",
            Self::Aggregates => "aggregate",
            Self::Alerts => "alert",
            Self::Statuses => "status",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlConfig {
    pub name: String,
    /// The file written; rotated files are `path.1` (newest) … `path.<keep>`.
    pub path: PathBuf,
    pub write: Vec<Series>,
    /// The file is rotated before a line would take it past this size.
    #[serde(deserialize_with = "byte_size::deserialize")]
    pub rotate_bytes: u64,
    /// Rotated files kept; `0` keeps none (the file starts afresh).
    pub keep: u32,
    /// Its own outbox, as `[outbox]`'s.
    #[serde(deserialize_with = "byte_size::deserialize")]
    pub max_bytes: u64,
    pub policy: FullPolicy,
}

/// Smallest `rotate_bytes`: a line of a window with many metrics must fit.
pub const MIN_ROTATE_BYTES: u64 = 4096;
/// Most rotated files kept.
pub const MAX_KEEP: u32 = 1000;

impl Default for JsonlConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            path: PathBuf::new(),
            write: vec![Series::Aggregates, Series::Alerts, Series::Statuses],
            rotate_bytes: 64 * 1024 * 1024,
            keep: 5,
            max_bytes: 64 * 1024 * 1024,
            policy: FullPolicy::DropOldest,
        }
    }
}

impl JsonlConfig {
    pub fn writes(&self, s: Series) -> bool {
        self.write.contains(&s)
    }

    /// Parses and validates one `[[sink]]` table.
    pub fn parse(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let config = load::section::<Self>(table, path, problems)?;
        let before = problems.len();
        config.validate(path, problems);
        (problems.len() == before).then_some(config)
    }

    /// Every problem under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let key = |k: &str| join(path, k);
        if self.name.is_empty() {
            problems.push(key("name"), "missing required key");
        }
        if self.path.as_os_str().is_empty() {
            problems.push(key("path"), "missing required key");
        } else if !self.path.is_absolute() {
            problems.push(
                key("path"),
                format!(
                    "expected an absolute path (the service's working directory is not yours), got \"{}\"",
                    self.path.display()
                ),
            );
        } else if self.path.file_name().is_none() {
            problems.push(key("path"), "expected a file, not a directory");
        }
        if self.write.is_empty() {
            problems.push(
                key("write"),
                "writes nothing: name at least one of readings, aggregates, alerts, statuses",
            );
        }
        if self.rotate_bytes < MIN_ROTATE_BYTES {
            problems.push(
                key("rotate_bytes"),
                format!("expected at least {MIN_ROTATE_BYTES} bytes"),
            );
        }
        if self.keep > MAX_KEEP {
            problems.push(key("keep"), format!("expected at most {MAX_KEEP}"));
        }
        // As [outbox] and the InfluxDB sink's: under one segment of the
        // outbox store, every event was dropped and the file stayed empty.
        if self.max_bytes < 64 * 1024 {
            problems.push(key("max_bytes"), "expected at least 64KiB");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let mut p = Problems::default();
        let table: toml::Value = toml::from_str(text).unwrap();
        JsonlConfig::parse(table, "sink[0]", &mut p);
        p.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_minimal_sink_is_a_name_and_an_absolute_path() {
        assert!(problems("name = \"f\"\npath = \"/var/log/x.jsonl\"\n").is_empty());
        let p = problems("name = \"f\"\npath = \"/x.jsonl\"\nsize = 3\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("sink[0].size"), "{p:?}");
        let p = problems(
            "name = \"f\"\npath = \"x.jsonl\"\nrotate_bytes = \"1KiB\"\nkeep = 5000\nwrite = []\nmax_bytes = \"1KiB\"\n",
        );
        // max_bytes under one outbox segment: every event was dropped.
        for key in ["path", "rotate_bytes", "keep", "write", "max_bytes"] {
            assert!(
                p.iter().any(|p| p.contains(&format!("sink[0].{key}"))),
                "{key}: {p:?}"
            );
        }
    }
}
