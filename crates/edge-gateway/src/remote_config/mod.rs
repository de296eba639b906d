//! `[remote_config]`: a configuration pushed from the cloud, applied
//! safely, rolled back on failure, reported (issue 71; `docs/fleet.md`).
//!
//! An apply is a controlled restart of the process on the new layer
//! (`exec` of itself, same PID, so systemd and a supervisor see one
//! service): adapters, devices, rules, outputs, aggregation, `[log]` and
//! `[metrics]` all change, and the open windows, the outbox and the
//! journals carry over exactly as across any restart (the gateway stops
//! cleanly first, checkpointing its windows). What a start runs is decided
//! by the journal ([`remote_config::journal`]), so a kill -9 at any step
//! leaves the old configuration or the new one, whole.
//!
//! - [`store`]: the journal and the pushed layers in `state_dir`;
//! - [`controller`]: takes pushes while running, judges health after a
//!   start on a candidate, commits or rolls back, reports;
//! - [`listener`]: the subscription on the upstream broker;
//! - [`gate`]: the health gate;
//! - here: loading the config with the layer the journal names (for
//!   `run`, `validate` and a reload), the start's journal step, the
//!   restart, and the crash tests' fault hook.

pub mod controller;
pub mod gate;
pub mod listener;
pub mod store;

use std::ffi::OsString;
use std::path::Path;

use gateway_core::config::layers::PushedLayer;
use gateway_core::config::Layers;
use remote_config::{Boot, Journal, Pushed};
use tracing::{error, warn};

pub use controller::{Booted, Context, Controller, MarkError};
use store::{label, Recovered, Store};

use crate::settings::{self, GatewayConfig, LoadError};

/// The process environment, read once: the config is loaded from it again
/// for every push validated.
pub type Env = Vec<(OsString, OsString)>;

/// The applied configuration as `/metrics`, `/health` and the dashboard
/// show it: labels `applied` (version; empty for the local files alone),
/// `serial`, `status` and `desired` of the last report.
pub const CONFIG_APPLIED: &str = "edge_gateway_remote_config_applied";

/// `/health`'s `config`: `{"applied", "serial", "status", "desired"}` of
/// the last report, when `[remote_config]` has reported anything.
pub fn health_view(t: &gateway_core::Telemetry) -> Option<serde_json::Value> {
    let (labels, _) = t
        .gauges(CONFIG_APPLIED)
        .into_iter()
        .find(|(_, v)| *v > 0.5)?;
    let get = |k: &str| {
        labels
            .iter()
            .find(|(n, _)| n == k)
            .map_or(String::new(), |(_, v)| v.clone())
    };
    let applied = get("applied");
    Some(serde_json::json!({
        "applied": (!applied.is_empty()).then_some(applied),
        "serial": get("serial").parse::<u64>().ok(),
        "status": get("status"),
        "desired": get("desired"),
    }))
}

/// How long a restart in place waits for the gateway to stop. A clean
/// stop takes milliseconds; what takes longer is the forwarder trying to
/// deliver to an upstream that does not answer (the very thing a rollback
/// may be about), up to its drain timeout. By then the pipeline has saved
/// its windows and the outboxes hold what it sent, so nothing is lost by
/// not waiting; and should the stop be cut earlier, the start after it
/// recovers from the journals exactly as after a kill -9.
pub const RESTART_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// Fault hook for the crash tests: the step of an apply at which to stop
/// and wait to be killed (`written`, `marked`, `staged`, `stopped`, `checking`,
/// `healthy`, `committed`, `rolled_back`). Unset, nothing waits.
pub const HOLD_ENV: &str = "EDGE_GATEWAY_FAULT_REMOTE_CONFIG_HOLD";

fn holds_at(step: &str) -> bool {
    std::env::var(HOLD_ENV).is_ok_and(|s| s == step)
}

/// The fault hook in async code: waits forever at `step` when asked to.
pub async fn hold(step: &str) {
    if holds_at(step) {
        warn!(
            step,
            "Fault hook: holding at this step of the apply until killed."
        );
        std::future::pending::<()>().await;
    }
}

/// The fault hook before the runtime runs.
fn hold_blocking(step: &str) {
    if holds_at(step) {
        warn!(
            step,
            "Fault hook: holding at this step of the apply until killed."
        );
        loop {
            std::thread::park();
        }
    }
}

/// A config as the gateway runs it.
#[derive(Debug)]
pub struct Loaded {
    pub config: GatewayConfig,
    pub layers: Layers,
    /// The pushed layer merged, if any.
    pub layer: Option<Pushed>,
    /// Why the layer the journal names was left out (the local files run).
    pub dropped: Option<String>,
}

/// The pushed layer a running gateway has merged: the candidate it is
/// judging, else the applied one.
pub fn running(journal: &Journal) -> Option<Pushed> {
    match &journal.candidate {
        Some(c) if c.step == remote_config::journal::Step::Checking => Some(c.pushed.clone()),
        _ => journal.applied.clone(),
    }
}

/// The local files, the pushed layer the journal names (as `running`
/// chooses it) and the environment: what `validate` checks and a reload
/// reads. A layer that no longer loads is left out and said so.
///
/// # Errors
/// The local files do not load.
pub fn load(path: &Path, env: &Env) -> Result<Loaded, LoadError> {
    let (config, layers) = settings::load_layers(path, env.clone())?;
    if !config.remote_config.enabled {
        return Ok(local(config, layers, None));
    }
    let store = Store::new(&config.gateway.state_dir);
    let journal = match store.load() {
        Ok(j) => j,
        Err(e) => return Ok(local(config, layers, Some(e.to_string()))),
    };
    match running(&journal) {
        None => Ok(local(config, layers, None)),
        Some(layer) => Ok(with_layer(path, env, &store, layer)
            .unwrap_or_else(|why| local(config, layers, Some(why)))),
    }
}

fn local(config: GatewayConfig, layers: Layers, dropped: Option<String>) -> Loaded {
    Loaded {
        config,
        layers,
        layer: None,
        dropped,
    }
}

fn with_layer(path: &Path, env: &Env, store: &Store, layer: Pushed) -> Result<Loaded, String> {
    let text = store.read_layer(&layer).map_err(|e| e.to_string())?;
    let name = label(&layer);
    match settings::load_layers_pushed(
        path,
        Some(PushedLayer {
            label: &name,
            text: &text,
        }),
        env.clone(),
    ) {
        Ok((config, layers)) => Ok(Loaded {
            config,
            layers,
            layer: Some(layer),
            dropped: None,
        }),
        Err(LoadError::Invalid { problems, .. }) => Err(format!(
            "{name} no longer validates over the local files: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A start's plan, made before the state directory is locked (the config
/// decides the logging) and written once it is.
#[derive(Debug)]
pub struct Start {
    pub loaded: Loaded,
    /// `None` without `[remote_config]`.
    plan: Option<Plan>,
}

#[derive(Debug)]
struct Plan {
    store: Store,
    /// As read.
    read: Journal,
    /// As this start leaves it.
    journal: Journal,
    checking: Option<Pushed>,
    /// Why `mark.json` could not be read.
    mark_unreadable: Option<String>,
}

impl Start {
    /// Reads the journal and decides what this start runs (nothing is
    /// written yet): a staged candidate, to be judged; the applied layer
    /// otherwise, a candidate the last process died judging rolled back.
    ///
    /// # Errors
    /// The local files do not load.
    pub fn prepare(path: &Path, env: &Env) -> Result<Self, LoadError> {
        let (config, layers) = settings::load_layers(path, env.clone())?;
        if !config.remote_config.enabled {
            return Ok(Self {
                loaded: local(config, layers, None),
                plan: None,
            });
        }
        let store = Store::new(&config.gateway.state_dir);
        let ts = gateway_core::Timestamp::now().to_rfc3339();
        let Recovered {
            read,
            mut journal,
            dropped,
            mark_unreadable,
        } = store.recover(&ts);
        let mut checking = None;
        let mut loaded = None;
        match journal.boot(&ts) {
            Boot::Check(candidate) => match with_layer(path, env, &store, candidate.clone()) {
                Ok(l) => {
                    loaded = Some(l);
                    checking = Some(candidate);
                }
                Err(why) => journal.roll_back("schema", &why, &ts),
            },
            Boot::Run(_) => {}
        }
        let loaded = match loaded {
            Some(l) => l,
            None => applied_only(
                path,
                env,
                &store,
                &mut journal,
                (config, layers),
                dropped,
                &ts,
            ),
        };
        Ok(Self {
            loaded,
            plan: Some(Plan {
                store,
                read,
                journal,
                checking,
                mark_unreadable,
            }),
        })
    }

    /// With the state directory locked: journals this start's step (a
    /// candidate `checking`, a rollback) and hands the controller its
    /// state. When the journal changed since [`Start::prepare`] read it
    /// (a predecessor finished meanwhile), the plan is made again.
    ///
    /// # Errors
    /// The local files no longer load.
    pub fn settle(self, path: &Path, env: &Env) -> Result<(Self, Option<Booted>), LoadError> {
        let Some(plan) = &self.plan else {
            return Ok((self, None));
        };
        let start = match plan.store.load() {
            Ok(now) if now != plan.read => Self::prepare(path, env)?,
            _ => self,
        };
        let Some(mut plan) = start.plan else {
            return Ok((start, None));
        };
        let mut loaded = start.loaded;
        if plan.journal != plan.read {
            if let Err(e) = plan.store.save(&plan.journal) {
                match plan.checking.take() {
                    // A candidate gets one start, and only the journal's
                    // `checking` says it had it: run without that mark and
                    // crash (or be killed) while being judged, and the next
                    // start finds it still `staged` and runs it again, in a
                    // loop for as long as the state directory is full or
                    // read-only. It stays staged, and this start runs what
                    // ran before; a start that can journal the step judges it.
                    Some(candidate) => {
                        error!(error = %e, version = %candidate.version, serial = candidate.serial, "Cannot journal that the pushed configuration is being judged: not starting on it; the previous configuration runs, and the push stays staged.");
                        let (config, layers) = settings::load_layers(path, env.clone())?;
                        let ts = gateway_core::Timestamp::now().to_rfc3339();
                        let mut journal = plan.read.clone();
                        loaded = applied_only(
                            path,
                            env,
                            &plan.store,
                            &mut journal,
                            (config, layers),
                            None,
                            &ts,
                        );
                        plan.journal = journal;
                    }
                    None => {
                        warn!(error = %e, "Cannot journal this start's step of the pushed configuration.");
                    }
                }
            }
        }
        let mut mark_errors = Vec::new();
        if plan.journal.mark_lost {
            error!(
                detail = remote_config::journal::MARK_LOST_DETAIL,
                "No readable record of the pushed configuration's replay mark: refusing every push."
            );
            mark_errors.push(MarkError::Lost);
        }
        if let Some(problem) = &plan.mark_unreadable {
            warn!(%problem, "The replay mark's own file is unusable; writing it again from the journal.");
            mark_errors.push(MarkError::Unreadable);
        }
        // Written again here (a first start after an upgrade, a damaged
        // mark file), not only when the mark next rises: until then a
        // damaged journal would have nothing to recover the mark from.
        if let Err(e) = plan.store.keep_mark(&plan.journal) {
            error!(error = %e, "Cannot write the pushed configuration's replay mark apart from the journal.");
            mark_errors.push(MarkError::Write);
        }
        if plan.checking.is_some() {
            hold_blocking("checking");
        }
        let booted = Booted {
            store: plan.store,
            journal: plan.journal,
            checking: plan.checking,
            mark_errors,
        };
        Ok((Self { loaded, plan: None }, Some(booted)))
    }
}

/// What a start runs when it does not judge a candidate: the applied
/// layer over the local files (`config`, `layers`), or the local files
/// alone when there is none or it no longer loads (then journaled as
/// dropped, reason `layer`); `dropped`: why the journal itself was left out.
fn applied_only(
    path: &Path,
    env: &Env,
    store: &Store,
    journal: &mut Journal,
    (config, layers): (GatewayConfig, Layers),
    dropped: Option<String>,
    ts: &str,
) -> Loaded {
    match journal.applied.clone() {
        None => local(config, layers, dropped),
        Some(applied) => match with_layer(path, env, store, applied) {
            Ok(l) => l,
            Err(why) => {
                journal.drop_applied("layer", &why, ts);
                local(config, layers, Some(why))
            }
        },
    }
}

/// EX_TEMPFAIL: the service manager starts the gateway again.
const EX_TEMPFAIL: u8 = 75;

/// Replaces this process with a new start of the same command line (the
/// same PID, so systemd and a test harness see one service); returns only
/// if that failed, with the exit code that makes systemd restart it (an
/// upgraded binary whose old file is gone, say).
pub fn restart() -> std::process::ExitCode {
    use std::os::unix::process::CommandExt as _;
    // exec resets the reload handler to SIGHUP's default (terminate); a
    // blocked SIGHUP stays pending across it until the new start listens.
    crate::hangup::hold();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe).args(args).exec(),
        Err(e) => e,
    };
    tracing::error!(error = %error, "Cannot restart in place; exiting for the service manager to restart the gateway.");
    std::process::ExitCode::from(EX_TEMPFAIL)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use remote_config::message::sha256_hex;
    use remote_config::Status;

    use super::*;

    const LOCAL: &str = r#"
[gateway]
id = "gw-t"
state_dir = "@STATE@"
[upstream]
url = "mqtt://127.0.0.1:1883"
[remote_config]
enabled = true
[[adapter]]
type = "mqtt"
name = "building"
topics = ["s/{device}/{metric}"]
"#;

    fn site() -> (tempfile::TempDir, std::path::PathBuf, Store) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            LOCAL.replace("@STATE@", &state.display().to_string()),
        )
        .unwrap();
        (dir, path, Store::new(&state))
    }

    fn layer(store: &Store, version: &str, serial: u64, text: &str) -> Pushed {
        let p = Pushed {
            version: version.into(),
            serial,
            sha256: sha256_hex(text),
        };
        store.write_layer(&p, text).unwrap();
        p
    }

    #[test]
    fn a_staged_candidate_that_no_longer_loads_is_rolled_back_before_it_runs() {
        let (_dir, path, store) = site();
        let good = layer(&store, "v1", 1, "[aggregation]\nwindow = \"2m\"\n");
        let bad = layer(
            &store,
            "v2",
            2,
            "[[adapter]]\ntype = \"mqtt\"\nname = \"building\"\n",
        );
        let mut j = Journal::default();
        j.stage(good.clone(), "t");
        j.boot("t");
        j.commit("t");
        j.stage(bad, "t");
        store.save(&j).unwrap();
        let start = Start::prepare(&path, &Env::new()).unwrap();
        assert_eq!(start.loaded.layer, Some(good.clone()));
        assert_eq!(start.loaded.config.aggregation.window.as_secs(), 120);
        let (_, booted) = start.settle(&path, &Env::new()).unwrap();
        let booted = booted.unwrap();
        assert_eq!(booted.checking, None);
        let saved = store.load().unwrap();
        assert_eq!(saved.candidate, None);
        let report = saved.report.unwrap();
        assert_eq!(
            (report.status, report.reason.as_str()),
            (Status::RolledBack, "schema")
        );
        assert!(
            report.detail.contains("adapter[1].name"),
            "{}",
            report.detail
        );
        assert_eq!(report.applied.as_deref(), Some("v1"));
    }

    /// A full or read-only state directory at the start that would judge
    /// a staged push: without `checking` journaled, a candidate that
    /// crashed the gateway would be started again at every start.
    #[test]
    fn a_staged_candidate_is_not_started_when_its_one_start_cannot_be_journaled() {
        let (_dir, path, store) = site();
        let good = layer(&store, "v1", 1, "[aggregation]\nwindow = \"2m\"\n");
        let next = layer(&store, "v2", 2, "[aggregation]\nwindow = \"3m\"\n");
        let mut j = Journal::default();
        j.stage(good.clone(), "t");
        j.boot("t");
        j.commit("t");
        j.stage(next.clone(), "t");
        store.save(&j).unwrap();
        // The journal cannot be replaced (its temporary file cannot be made).
        let tmp = store.layer_file("x").with_file_name("journal.json.tmp");
        std::fs::create_dir(&tmp).unwrap();
        let start = Start::prepare(&path, &Env::new()).unwrap();
        let (start, booted) = start.settle(&path, &Env::new()).unwrap();
        let booted = booted.unwrap();
        assert_eq!(booted.checking, None, "the candidate is not judged");
        assert_eq!(start.loaded.layer, Some(good.clone()));
        assert_eq!(start.loaded.config.aggregation.window.as_secs(), 120);
        // Still staged on disk: a start that can journal the step judges it.
        std::fs::remove_dir(&tmp).unwrap();
        assert_eq!(
            store.load().unwrap().candidate.map(|c| (c.pushed, c.step)),
            Some((next.clone(), remote_config::journal::Step::Staged))
        );
        let (start, booted) = Start::prepare(&path, &Env::new())
            .unwrap()
            .settle(&path, &Env::new())
            .unwrap();
        assert_eq!(booted.unwrap().checking, Some(next.clone()));
        assert_eq!(start.loaded.layer, Some(next));
    }

    #[test]
    fn an_applied_layer_that_is_damaged_leaves_the_local_files_running_and_says_so() {
        let (_dir, path, store) = site();
        let v1 = layer(&store, "v1", 1, "[aggregation]\nwindow = \"2m\"\n");
        let mut j = Journal::default();
        j.stage(v1.clone(), "t");
        j.boot("t");
        j.commit("t");
        store.save(&j).unwrap();
        // validate and a reload read it too.
        assert_eq!(load(&path, &Env::new()).unwrap().layer, Some(v1.clone()));
        std::fs::write(
            store.layer_file(&v1.sha256),
            "[aggregation]\nwindow = \"3m\"\n",
        )
        .unwrap();
        let loaded = load(&path, &Env::new()).unwrap();
        assert_eq!(loaded.layer, None);
        assert!(loaded.dropped.unwrap().contains("SHA-256"));
        let (start, _) = Start::prepare(&path, &Env::new())
            .unwrap()
            .settle(&path, &Env::new())
            .unwrap();
        // The local files' default, not the pushed 2m nor the damaged 3m.
        assert_eq!(start.loaded.config.aggregation.window.as_secs(), 300);
        let saved = store.load().unwrap();
        assert_eq!(saved.applied, None);
        let report = saved.report.unwrap();
        assert_eq!(
            (report.status, report.reason.as_str()),
            (Status::RolledBack, "layer")
        );
    }
}
