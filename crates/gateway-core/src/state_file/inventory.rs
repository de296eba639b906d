//! Everything the gateway keeps under `gateway.state_dir`, named once.
//!
//! Writers take their file names from here, and `docs/architecture.md`'s
//! table of what lives on disk is checked against [`IN_STATE_DIR`], so a
//! new state file cannot appear without an operator being told what it is
//! and whether deleting it is safe.

/// `flock`ed for the process's life ([`super::dir_lock`]).
pub const LOCK: &str = super::dir_lock::LOCK_FILE;
/// The open windows, replaced atomically with the previous generation kept.
pub const CHECKPOINT: &str = "windows.ckpt";
pub const CHECKPOINT_PREVIOUS: &str = "windows.prev.ckpt";
/// `ingress-N.journal`: the acknowledged readings since checkpoint epoch N.
pub const JOURNAL_PREFIX: &str = "ingress-";
pub const JOURNAL_SUFFIX: &str = ".journal";
/// The upstream forwarder's outbox (segments and its own lock).
pub const UPSTREAM_OUTBOX: &str = "outbox";
/// `sink-<name>/`: one `[[sink]]`'s outbox and dead letters.
pub const SINK_DIR_PREFIX: &str = "sink-";
/// The dashboard's window and alert history.
pub const HISTORY: &str = "history";
/// JSON documents ([`super::json::JsonStateFile`]).
pub const ALERTS: &str = "alerts.json";
pub const BLE_COUNTERS: &str = "ble-counters.json";
pub const DEVICE_ADAPTERS: &str = "device-adapters.json";
pub const DASHBOARD_LATEST: &str = "dashboard-latest.json";
pub const HOME_ASSISTANT: &str = "home-assistant.json";
pub const LORAWAN_FCNT: &str = "lorawan-fcnt.json";
pub const MQTT_SUBSCRIPTIONS: &str = "mqtt-subscriptions.json";
/// `[commands]`' directory; its `journal` holds command ids and results.
pub const COMMANDS: &str = "commands";
/// `[remote_config]`'s directory: the apply journal and the pushed layers.
pub const REMOTE_CONFIG: &str = "remote-config";
pub const REMOTE_CONFIG_JOURNAL: &str = "remote-config/journal.json";
/// The replay mark alone, apart from the journal: it survives a damaged one.
pub const REMOTE_CONFIG_MARK: &str = "remote-config/mark.json";

/// One row of the on-disk table: the name as `docs/architecture.md` writes
/// it (patterns with `N` or `<name>`), and who writes it.
#[derive(Debug, Clone, Copy)]
pub struct StateFile {
    pub name: &'static str,
    pub written_by: &'static str,
}

/// What may be found in `state_dir`, in the docs' order.
pub const IN_STATE_DIR: &[StateFile] = &[
    StateFile {
        name: "gateway.lock",
        written_by: "edge-gateway run",
    },
    StateFile {
        name: "windows.ckpt",
        written_by: "pipeline",
    },
    StateFile {
        name: "windows.prev.ckpt",
        written_by: "pipeline",
    },
    StateFile {
        name: "ingress-N.journal",
        written_by: "pipeline",
    },
    StateFile {
        name: "outbox/seg-N.log",
        written_by: "upstream forwarder",
    },
    StateFile {
        name: "outbox/LOCK",
        written_by: "upstream forwarder",
    },
    StateFile {
        name: "sink-<name>/outbox/…",
        written_by: "that [[sink]]",
    },
    StateFile {
        name: "sink-<name>/dead-letter.lp",
        written_by: "that [[sink]]",
    },
    StateFile {
        name: "history/",
        written_by: "dashboard writer",
    },
    StateFile {
        name: "alerts.json",
        written_by: "pipeline (alert rules)",
    },
    StateFile {
        name: "ble-counters.json",
        written_by: "BLE adapter",
    },
    StateFile {
        name: "device-adapters.json",
        written_by: "dashboard writer",
    },
    StateFile {
        name: "dashboard-latest.json",
        written_by: "dashboard writer",
    },
    StateFile {
        name: "home-assistant.json",
        written_by: "[home_assistant]",
    },
    StateFile {
        name: "lorawan-fcnt.json",
        written_by: "LoRaWAN adapter",
    },
    StateFile {
        name: "mqtt-subscriptions.json",
        written_by: "MQTT adapter",
    },
    StateFile {
        name: "commands/journal",
        written_by: "[commands]",
    },
    StateFile {
        name: "remote-config/journal.json",
        written_by: "[remote_config]",
    },
    StateFile {
        name: "remote-config/mark.json",
        written_by: "[remote_config]",
    },
    StateFile {
        name: "remote-config/<sha256>.toml",
        written_by: "[remote_config]",
    },
    StateFile {
        name: "*.damaged",
        written_by: "whoever found it",
    },
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The first column of the table under "What lives on disk".
    fn documented() -> Vec<String> {
        let doc = include_str!("../../../../docs/architecture.md");
        let table = doc
            .split("## What lives on disk")
            .nth(1)
            .unwrap()
            .split("\n## ")
            .next()
            .unwrap();
        table
            .lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| {
                let first = l.split('|').nth(1).unwrap();
                first
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_architecture_docs_list_exactly_the_files_in_the_state_dir() {
        let listed: Vec<&str> = IN_STATE_DIR.iter().map(|f| f.name).collect();
        let documented = documented();
        assert_eq!(documented, listed, "docs/architecture.md's on-disk table");
    }

    #[test]
    fn the_named_constants_are_in_the_list() {
        let listed: Vec<&str> = IN_STATE_DIR.iter().map(|f| f.name).collect();
        for name in [
            LOCK,
            CHECKPOINT,
            CHECKPOINT_PREVIOUS,
            ALERTS,
            BLE_COUNTERS,
            LORAWAN_FCNT,
        ] {
            assert!(listed.contains(&name), "{name}");
        }
        let journal = format!("{JOURNAL_PREFIX}N{JOURNAL_SUFFIX}");
        assert!(listed.contains(&journal.as_str()));
        assert!(listed
            .iter()
            .any(|n| n.starts_with(&format!("{UPSTREAM_OUTBOX}/"))));
        assert!(listed.iter().any(|n| n.starts_with(SINK_DIR_PREFIX)));
        assert!(listed.contains(&format!("{HISTORY}/").as_str()));
    }

    /// Every source path `docs/architecture.md` names, outside its on-disk
    /// table: a module that moved must take the doc with it.
    #[test]
    fn the_architecture_docs_name_only_paths_that_exist() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let doc = include_str!("../../../../docs/architecture.md");
        let (before, after) = doc.split_once("## What lives on disk").unwrap();
        let after = after.split_once("\n## ").map_or("", |(_, rest)| rest);
        let mut files: Vec<String> = Vec::new();
        collect_files(&root.join("crates"), &root, &mut files);
        let mut missing = Vec::new();
        for text in [before, after] {
            for name in text.split('`').skip(1).step_by(2) {
                let looks_like_path = name.ends_with(".rs")
                    || name.ends_with(".toml")
                    || name.ends_with(".sh")
                    || (name.ends_with('/') && !name.contains(' '))
                    || name.starts_with("crates/");
                if !looks_like_path || name.contains(' ') || name.starts_with("state_dir/") {
                    continue;
                }
                // `crates/adapters/src/<kind>/`: its parent must exist.
                let concrete = name.split("/<").next().unwrap_or(name);
                let exists = if root.join(concrete).exists() {
                    true
                } else if concrete.starts_with("crates/")
                    || concrete.starts_with("scripts/")
                    || concrete.starts_with("fuzz/")
                    || concrete.starts_with("docs/")
                {
                    root.join(concrete).exists()
                } else {
                    let tail = format!("/{}", concrete.trim_end_matches('/'));
                    files.iter().any(|f| f.ends_with(&tail))
                };
                if !exists {
                    missing.push(name.to_string());
                }
            }
        }
        assert!(missing.is_empty(), "docs/architecture.md names {missing:?}");
    }

    /// A JSON state file written beside the one home would skip its
    /// version, quarantine or directory fsync: only `state_file` itself
    /// may call the atomic replace directly.
    #[test]
    fn only_the_state_file_module_replaces_files_directly() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files: Vec<String> = Vec::new();
        collect_files(&root.join("crates"), &root, &mut files);
        let offenders: Vec<&String> = files
            .iter()
            .filter(|f| f.contains("/src/") && f.ends_with(".rs"))
            .filter(|f| !f.contains("/gateway-core/src/state_file/"))
            .filter(|f| {
                std::fs::read_to_string(root.join(f.trim_start_matches('/')))
                    .is_ok_and(|text| text.contains("replace_atomically("))
            })
            .collect();
        assert!(offenders.is_empty(), "use JsonStateFile in {offenders:?}");
    }

    /// Files and directories below `dir`, as paths from `root`.
    fn collect_files(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            if let Ok(rel) = path.strip_prefix(root) {
                out.push(format!("/{}", rel.to_string_lossy()));
            }
            if path.is_dir() {
                collect_files(&path, root, out);
            }
        }
    }
}
