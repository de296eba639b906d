//! The task that takes pushes while the gateway runs: judges each message
//! (signature, digest, serial), validates a trusted one exactly as
//! `validate` does and against `[remote_config] allow`, writes its layer,
//! stages it in the journal and asks the run loop for a restart; after a
//! start on a candidate it runs the health gate and commits or rolls
//! back. Every state it reaches is journaled before it is reported, and
//! reported through the upstream's outbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use gateway_core::config::layers::PushedLayer;
use gateway_core::event::{ConfigStateEvent, SinkEvent};
use gateway_core::{Clock, Telemetry};
use remote_config::{allow, DesiredMessage, Journal, Judged, Pushed};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::gate::{self, Verdict};
use super::store::{label, Store};
use super::{hold, listener, Env, CONFIG_APPLIED};
use crate::settings::{self, GatewayConfig, LoadError};

/// What a start hands the controller: the journal as the start left it,
/// and the candidate it runs, when it must be judged.
#[derive(Debug)]
pub struct Booted {
    pub store: Store,
    pub journal: Journal,
    pub checking: Option<Pushed>,
    /// What the start found wrong with the replay mark, counted once the
    /// telemetry exists.
    pub mark_errors: Vec<MarkError>,
}

/// Problems with the replay mark, counted in [`MARK_ERRORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkError {
    /// No readable file proves the mark: every push is refused.
    Lost,
    /// `mark.json` was damaged or unreadable at a start.
    Unreadable,
    /// `mark.json` could not be written (a full or read-only state
    /// directory); a push is then not staged.
    Write,
}

impl MarkError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lost => "lost",
            Self::Unreadable => "unreadable",
            Self::Write => "write",
        }
    }
}

/// Problems with the replay mark, by `error_type` (`lost`, `unreadable`,
/// `write`): `lost` means the gateway refuses every push until an operator
/// resets `state_dir/remote-config/` (`docs/fleet.md`).
pub const MARK_ERRORS: &str = "edge_gateway_remote_config_mark_errors_total";

impl Booted {
    /// The candidate could not even start (a component that cannot be
    /// configured): rolled back at once; the next start runs the previous
    /// configuration and reports it.
    pub fn roll_back_unstarted(mut self, error: &anyhow::Error) {
        let ts = gateway_core::Timestamp::now().to_rfc3339();
        self.journal.roll_back("start", &format!("{error:#}"), &ts);
        if let Err(e) = self.store.save(&self.journal) {
            error!(error = %e, "Cannot journal the rollback; the next start rolls back.");
        }
    }
}

/// The running controller.
pub struct Controller {
    stop: CancellationToken,
    task: JoinHandle<()>,
    restart: Option<oneshot::Receiver<()>>,
    dropped: mpsc::UnboundedSender<String>,
}

/// What the controller works with.
pub struct Context<'a> {
    pub config: &'a GatewayConfig,
    pub config_path: &'a Path,
    pub env: Env,
    pub telemetry: Telemetry,
    /// The upstream's urgent lane: reports go through its outbox.
    pub reports: Option<mpsc::Sender<SinkEvent>>,
    pub clock: Arc<dyn Clock>,
}

impl Controller {
    /// Starts the subscription and the controller.
    ///
    /// # Errors
    /// The upstream connection cannot be configured (a missing password
    /// variable).
    pub fn start(booted: Booted, ctx: Context<'_>) -> anyhow::Result<Self> {
        let config = ctx.config;
        let keys: Vec<VerifyingKey> = config
            .remote_config
            .public_keys
            .iter()
            .filter_map(|k| remote_config::message::parse_public_key(k).ok())
            .collect();
        let opts = listener::options(config)?;
        let topic = remote_config::report::config_topic(&config.topic_prefix(), &config.gateway.id);
        let stop = CancellationToken::new();
        let (trusted, trusted_rx) = watch::channel(None);
        let (other, other_rx) = watch::channel(None);
        tokio::spawn(listener::run(
            opts,
            topic,
            listener::Lanes::new(
                trusted,
                other,
                keys.clone(),
                config.gateway.id.clone(),
                &ctx.telemetry,
            ),
            config.upstream.broker.max_backoff,
            stop.clone(),
        ));
        for e in &booted.mark_errors {
            ctx.telemetry
                .counter(MARK_ERRORS, &[("error_type", e.as_str())])
                .inc();
        }
        let (restart_tx, restart_rx) = oneshot::channel();
        let (dropped, dropped_rx) = mpsc::unbounded_channel();
        let worker = Worker {
            path: ctx.config_path.to_path_buf(),
            env: ctx.env,
            store: booted.store,
            journal: booted.journal,
            keys,
            gateway_id: config.gateway.id.clone(),
            allow: config.remote_config.allow.clone(),
            health_timeout: config.remote_config.health_timeout,
            topic: config_topic(config),
            reports: ctx.reports,
            telemetry: ctx.telemetry,
            clock: ctx.clock,
            stop: stop.clone(),
            shown: None,
        };
        let task = tokio::spawn(worker.run(
            booted.checking,
            (trusted_rx, other_rx),
            dropped_rx,
            restart_tx,
        ));
        Ok(Self {
            stop,
            task,
            restart: Some(restart_rx),
            dropped,
        })
    }

    /// A reload (SIGHUP) left the pushed layer out, `why`: the local
    /// files alone run now, which the journal and the report must say, as
    /// a start that leaves it out does.
    pub fn layer_dropped(&self, why: String) {
        let _ = self.dropped.send(why);
    }

    /// Resolves once the controller needs the gateway restarted (a push
    /// staged, or a rollback); never, otherwise.
    pub async fn restart_requested(&mut self) {
        if let Some(rx) = &mut self.restart {
            if rx.await.is_ok() {
                return;
            }
            self.restart = None;
        }
        std::future::pending::<()>().await;
    }

    /// Stops the controller and its subscription.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// `{prefix}/gateway/{id}/config` of a config.
pub fn config_topic(config: &GatewayConfig) -> String {
    remote_config::report::config_topic(&config.topic_prefix(), &config.gateway.id)
}

struct Worker {
    path: PathBuf,
    env: Env,
    store: Store,
    journal: Journal,
    keys: Vec<VerifyingKey>,
    /// Pushes signed for another gateway are refused (`gateway`).
    gateway_id: String,
    allow: Option<Vec<String>>,
    health_timeout: Duration,
    /// The topic pushes come from: no push may move it.
    topic: String,
    reports: Option<mpsc::Sender<SinkEvent>>,
    telemetry: Telemetry,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
    /// The labels of the applied-version gauge last set.
    shown: Option<Vec<(String, String)>>,
}

/// After a refused message that moved nothing (unsigned, forged, stale,
/// damaged), before the next one is looked at.
const UNTRUSTED_PAUSE: Duration = Duration::from_secs(1);

/// The listener's two lanes: validly signed pushes (serial, payload), and
/// the rest.
type Lanes = (
    watch::Receiver<Option<(u64, Vec<u8>)>>,
    watch::Receiver<Option<Vec<u8>>>,
);

/// Why a trusted push is refused before it runs: the reported reason and
/// the detail.
type Refusal = (&'static str, String);

/// The refusal's reason when the local files do not load: the push is not
/// processed (its serial does not become the mark).
const LOCAL: &str = "local";

impl Worker {
    /// Judges the candidate a start runs, then takes messages: trusted
    /// ones as they come, the others (which can only be refused) paced.
    async fn run(
        mut self,
        checking: Option<Pushed>,
        (mut trusted, mut other): Lanes,
        mut dropped: mpsc::UnboundedReceiver<String>,
        restart: oneshot::Sender<()>,
    ) {
        self.report().await;
        if let Some(candidate) = checking {
            if self.judge_health(&candidate).await {
                let _ = restart.send(());
                return;
            }
        }
        let mut refused: Option<Vec<u8>> = None;
        let mut next_refusal = Instant::now();
        loop {
            let restart_now = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                changed = trusted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let payload = trusted.borrow_and_update().clone();
                    match payload {
                        Some((_, payload)) => self.handle(&payload).await,
                        None => false,
                    }
                }
                changed = other.changed(), if refused.is_none() => {
                    if changed.is_err() {
                        return;
                    }
                    refused = other.borrow_and_update().clone();
                    false
                }
                Some(why) = dropped.recv() => {
                    self.layer_dropped(&why).await;
                    false
                }
                () = tokio::time::sleep_until(next_refusal), if refused.is_some() => {
                    if let Some(payload) = refused.take() {
                        self.handle(&payload).await;
                    }
                    // Such a flood costs one report a second; the lane
                    // keeps the latest.
                    next_refusal = Instant::now() + UNTRUSTED_PAUSE;
                    false
                }
            };
            if restart_now {
                let _ = restart.send(());
                return;
            }
        }
    }

    fn now(&self) -> String {
        self.clock.now().to_rfc3339()
    }

    /// Handles one message; true when the gateway must restart on it.
    async fn handle(&mut self, payload: &[u8]) -> bool {
        match self.journal.judge(payload, &self.keys, &self.gateway_id) {
            Judged::Same => false,
            Judged::Refuse {
                pushed,
                reason,
                detail,
                signed,
            } => {
                warn!(version = ?pushed.as_ref().map(|p| &p.version), serial = ?pushed.as_ref().map(|p| p.serial), reason, %detail, "Configuration push refused; the running configuration stays.");
                let ts = self.now();
                self.journal.refuse(pushed, reason, &detail, signed, &ts);
                // Nothing of the gateway's changed: no journal write (a
                // flood of forged messages must not wear the flash out).
                self.report().await;
                false
            }
            Judged::Take(message) => self.take(&message).await,
        }
    }

    /// A trusted, newer push: validated, written, staged.
    async fn take(&mut self, message: &DesiredMessage) -> bool {
        let pushed = Pushed::of(message);
        info!(version = %pushed.version, serial = pushed.serial, "Configuration pushed: validating it over the local files.");
        if let Err((reason, detail)) = self.validate(&pushed, &message.config) {
            warn!(version = %pushed.version, serial = pushed.serial, reason, %detail, "Configuration push rejected; the running configuration stays.");
            let ts = self.now();
            // The local files not loading (an edit half done, a drop-in
            // unreadable) is no fault of the push: like a layer that could
            // not be written, it is not processed, and the retained push is
            // taken again at the next connection or start, once they load.
            // Spent, it would never apply, however soon the files are fixed.
            let processed = reason != LOCAL;
            self.journal
                .refuse(Some(pushed), reason, &detail, processed, &ts);
            self.save_and_report().await;
            return false;
        }
        if let Err(e) = self.store.write_layer(&pushed, &message.config) {
            // Not processed: the retained message is taken again at the
            // next connection, when the disk may have room.
            error!(error = %e, "Cannot write the pushed configuration; the running configuration stays.");
            let ts = self.now();
            self.journal
                .refuse(Some(pushed), "state_dir", &e.to_string(), false, &ts);
            self.report().await;
            return false;
        }
        hold("written").await;
        let before = self.journal.clone();
        let ts = self.now();
        self.journal.stage(pushed.clone(), &ts);
        if let Err(e) = self.store.save(&self.journal) {
            self.count_mark_error(&e);
            error!(error = %e, "Cannot journal the pushed configuration; the running configuration stays.");
            self.journal = before;
            let ts = self.now();
            self.journal
                .refuse(Some(pushed), "state_dir", &e.to_string(), false, &ts);
            self.report().await;
            return false;
        }
        hold("staged").await;
        info!(version = %pushed.version, serial = pushed.serial, "Configuration staged: restarting on it.");
        self.report().await;
        true
    }

    /// The checks `validate` makes, on the local files with this layer,
    /// then what the layer changes against `allow`.
    fn validate(&self, pushed: &Pushed, text: &str) -> Result<(), Refusal> {
        let name = label(pushed);
        let layer = PushedLayer { label: &name, text };
        let (before_cfg, before) =
            settings::load_layers(&self.path, self.env.clone()).map_err(|e| {
                (
                    LOCAL,
                    format!("the local configuration does not load: {}", one_line(&e)),
                )
            })?;
        let (after_cfg, after) =
            settings::load_layers_pushed(&self.path, Some(layer), self.env.clone()).map_err(
                |e| match e {
                    LoadError::Invalid { .. } => ("schema", one_line(&e)),
                    LoadError::Read(_) => (LOCAL, one_line(&e)),
                },
            )?;
        let table: toml::Table = toml::from_str(text).map_err(|e| ("schema", e.to_string()))?;
        let mut refused: Vec<String> =
            allow::check(before.root(), after.root(), &table, self.allow.as_deref())
                .iter()
                .map(ToString::to_string)
                .collect();
        let moved = config_topic(&after_cfg);
        if moved != self.topic || config_topic(&before_cfg) != self.topic {
            let key = if before_cfg.upstream.forwarding.topic_prefix
                != after_cfg.upstream.forwarding.topic_prefix
            {
                "upstream.topic_prefix"
            } else {
                "gateway.site"
            };
            refused.push(format!(
                "{key}: a push cannot move the topic pushes come from ({} would become {moved})",
                self.topic
            ));
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(("not_allowed", refused.join("; ")))
        }
    }

    /// After a start on `candidate`: commit it once healthy, or roll back
    /// (true: restart on the previous configuration).
    async fn judge_health(&mut self, candidate: &Pushed) -> bool {
        info!(version = %candidate.version, serial = candidate.serial, timeout = %humantime::format_duration(self.health_timeout), "Judging the pushed configuration's health.");
        match gate::judge(&self.telemetry, self.health_timeout, &self.stop).await {
            Verdict::Healthy => {
                hold("healthy").await;
                let ts = self.now();
                self.journal.commit(&ts);
                if let Err(e) = self.store.save(&self.journal) {
                    // The journal still says `checking`: the next start
                    // rolls back, and says why then.
                    error!(error = %e, "Cannot journal the commit of the pushed configuration.");
                    return false;
                }
                hold("committed").await;
                info!(version = %candidate.version, serial = candidate.serial, "Pushed configuration applied: healthy.");
                self.report().await;
                self.store.forget_other_layers(&self.journal);
                false
            }
            Verdict::Failed(detail) => {
                warn!(version = %candidate.version, serial = candidate.serial, %detail, "Pushed configuration unhealthy: rolling back.");
                let ts = self.now();
                self.journal.roll_back("health", &detail, &ts);
                if let Err(e) = self.store.save(&self.journal) {
                    error!(error = %e, "Cannot journal the rollback; restarting: the next start rolls back.");
                }
                hold("rolled_back").await;
                self.report().await;
                true
            }
            // A clean stop (SIGTERM, a reload of the service) before the
            // verdict is no crash: the next start judges it again. Only a
            // start that never got this far finds `checking` and rolls back.
            Verdict::Stopped => {
                self.journal.restage();
                if let Err(e) = self.store.save(&self.journal) {
                    error!(error = %e, "Cannot journal the stop; the next start rolls the pushed configuration back.");
                }
                false
            }
        }
    }

    /// The running gateway no longer merges the applied layer (a reload
    /// found it no longer combines with the local files, or damaged):
    /// journaled and reported as `rolled_back`, reason `layer`, as a start
    /// does, so the state no longer claims it runs.
    async fn layer_dropped(&mut self, why: &str) {
        if self.journal.applied.is_none() {
            return;
        }
        warn!(%why, "The applied pushed configuration is left out after the reload: the local files alone run.");
        let ts = self.now();
        self.journal.drop_applied("layer", why, &ts);
        self.save_and_report().await;
    }

    async fn save_and_report(&mut self) {
        if let Err(e) = self.store.save(&self.journal) {
            self.count_mark_error(&e);
            error!(error = %e, "Cannot journal the configuration's state.");
        }
        self.report().await;
    }

    /// A save that failed on `mark.json` (a full or read-only state
    /// directory) is counted: nothing raising the mark is journaled then.
    fn count_mark_error(&self, e: &super::store::StoreError) {
        if e.is_mark() {
            self.telemetry
                .counter(MARK_ERRORS, &[("error_type", MarkError::Write.as_str())])
                .inc();
        }
    }

    /// Publishes the journal's state (retained, through the outbox) and
    /// shows it on `/health` and the dashboard.
    async fn report(&mut self) {
        let Some(report) = self.journal.report.clone() else {
            return;
        };
        let serial = report
            .applied_serial
            .map_or(String::new(), |s| s.to_string());
        let labels = vec![
            (
                "applied".to_string(),
                report.applied.clone().unwrap_or_default(),
            ),
            ("serial".to_string(), serial),
            ("status".to_string(), report.status.as_str().to_string()),
            (
                "desired".to_string(),
                report.desired.clone().unwrap_or_default(),
            ),
        ];
        if let Some(old) = self.shown.take() {
            let old: Vec<(&str, &str)> =
                old.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            self.telemetry.remove_gauge(CONFIG_APPLIED, &old);
        }
        let shown: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.telemetry.gauge(CONFIG_APPLIED, &shown).set(1.0);
        self.shown = Some(labels);
        let Some(reports) = &self.reports else { return };
        let payload = serde_json::to_value(&report).unwrap_or_default();
        let _ = reports
            .send(SinkEvent::ConfigState(ConfigStateEvent { payload }))
            .await;
    }
}

/// A load error as one line (problems joined), for the reported detail.
fn one_line(e: &LoadError) -> String {
    match e {
        LoadError::Invalid { problems, .. } => problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        LoadError::Read(e) => e.to_string(),
    }
}
