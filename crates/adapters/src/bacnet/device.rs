//! One device's task: find it (Who-Is, or its configured address), read
//! its object list and each object's name and units, then poll its
//! present values (and status flags) every period, with COV subscriptions
//! when asked for, renewed at half their lifetime and made again whenever
//! the device comes back. A device that stops answering goes offline and
//! is looked for again with backoff; the adapter's other devices, each in
//! its own task, go on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle, Telemetry};
use gateway_core::{
    AdapterContext, AdapterError, AdapterStats, DeviceId, DeviceState, Ingress, MetricName,
    Reading, StatusChange,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::binding::{Answers, Binding};
use super::client::{Client, ClientError};
use super::config::BacnetConfig;
use super::devices::BacnetDevice;
use super::names;
use super::point::{Point, PolledUse};
use super::reader::{self, Capabilities, ObjectInfo, NOT_A_NUMBER};
use super::services::{CovNotification, ErrorCode, IAm};
use super::tags::ObjectId;
use super::units;
use super::values::{cov_silent, not_finite, push_sample, take_cov, COV_BATCH};

/// 1 while a device answers, 0 once it stopped.
pub const BACNET_DEVICE_UP: &str = "edge_gateway_bacnet_device_up";
/// Objects read from a device.
pub const BACNET_OBJECTS: &str = "edge_gateway_bacnet_objects";
/// Values that came with a status flag set, by flag (`in_alarm`,
/// `fault`, `overridden`, `out_of_service`). Values flagged `fault` or
/// `out_of_service` are not readings: not live, they would be averaged
/// into the windows as if they were.
pub const BACNET_STATUS_FLAGS: &str = "edge_gateway_bacnet_status_flags_total";
/// Objects with a status flag set at the last read, by device.
pub const BACNET_FLAGGED: &str = "edge_gateway_bacnet_flagged_objects";
/// Errors a device answered, by class and code (`object/unknown-object`).
pub const BACNET_ERRORS: &str = "edge_gateway_bacnet_errors_total";
/// COV notifications turned into readings.
pub const BACNET_COV_NOTIFICATIONS: &str = "edge_gateway_bacnet_cov_notifications_total";
/// Objects of a device followed by COV (the others are polled).
pub const BACNET_COV_SUBSCRIBED: &str = "edge_gateway_bacnet_cov_subscriptions";

/// Failed polls in a row before a device is offline and looked for again.
const OFFLINE_AFTER: u32 = 2;

/// What the adapter's receive side passes to a device's task.
#[derive(Debug)]
pub enum DeviceEvent {
    IAm(SocketAddr, IAm),
    Cov(CovNotification),
}

pub struct DeviceTask {
    pub config: BacnetConfig,
    /// Where the device answers and its objects' metrics, for commands.
    pub link: std::sync::Arc<super::writer::DeviceLink>,
    pub device: BacnetDevice,
    pub client: Client,
    pub events: mpsc::Receiver<DeviceEvent>,
}

pub(super) struct State {
    pub(super) id: DeviceId,
    pub(super) label: String,
    pub(super) adapter: String,
    pub(super) stats: AdapterStats,
    telemetry: Telemetry,
    up: Gauge,
    objects: Gauge,
    flagged: Gauge,
    cov_count: Gauge,
    /// Looked up once: a busy device sends hundreds a second.
    pub(super) cov_notifications: Counter,
    pub(super) throttle: LogThrottle,
    status: Option<DeviceState>,
    binding: Binding,
}

impl DeviceTask {
    pub async fn run(mut self, ctx: AdapterContext) -> Result<(), AdapterError> {
        let labels = [
            ("adapter", ctx.name.as_str()),
            ("device", self.device.id.as_str()),
        ];
        let mut st = State {
            id: self.device.id.interned(),
            label: self.device.id.as_str().to_string(),
            adapter: ctx.name.clone(),
            stats: ctx.stats(),
            telemetry: ctx.telemetry.clone(),
            up: ctx.telemetry.gauge(BACNET_DEVICE_UP, &labels),
            objects: ctx.telemetry.gauge(BACNET_OBJECTS, &labels),
            flagged: ctx.telemetry.gauge(BACNET_FLAGGED, &labels),
            cov_count: ctx.telemetry.gauge(BACNET_COV_SUBSCRIBED, &labels),
            cov_notifications: ctx
                .telemetry
                .counter(BACNET_COV_NOTIFICATIONS, &[("adapter", ctx.name.as_str())]),
            throttle: LogThrottle::default(),
            status: None,
            binding: Binding::new(
                self.device.instance,
                self.device.address,
                self.link.clone(),
                ctx.stats(),
                &ctx.name,
                self.device.id.as_str(),
            ),
        };
        st.up.set(0.0);
        ctx.ingress.describe(
            self.device.id.as_str(),
            None,
            super::kind::BACNET.info.model,
        );
        let period = self.device.poll.unwrap_or(self.config.poll);
        let mut backoff = Backoff::new(
            self.config.timeout.min(self.config.max_backoff),
            self.config.max_backoff,
        );
        loop {
            let outcome = tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                o = self.session(&mut st, &ctx, period) => o?,
            };
            self.link.lost();
            // The session ended: the device went silent (or was never
            // found). Look again after a backoff.
            if outcome {
                backoff.reset();
            }
            report(&mut st, &ctx, DeviceState::Offline).await?;
            let wait = backoff.next_delay();
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Finds the device and reads it until it stops answering; `true`
    /// when it answered at least once.
    async fn session(
        &mut self,
        st: &mut State,
        ctx: &AdapterContext,
        period: Duration,
    ) -> Result<bool, AdapterError> {
        let Some((peer, caps)) = self.locate(st).await else {
            return Ok(false);
        };
        let mut caps = caps;
        let points = match self.prepare(st, ctx, peer, &mut caps).await {
            Ok(p) => p,
            Err(e) => {
                self.fault(st, &e, "reading its object list");
                return Ok(false);
            }
        };
        let mut points = points;
        let index: HashMap<ObjectId, usize> =
            points.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        let lifetime = self.config.cov_lifetime;
        let mut renew_at = Instant::now();
        let mut next_poll = Instant::now();
        let mut failures = 0u32;
        loop {
            if self.device.cov && Instant::now() >= renew_at {
                if let Err(e) = self.subscribe(st, peer, &mut points).await {
                    // Silent at renewal: on a long poll, this is how a
                    // vanished device is noticed.
                    self.fault(st, &e, "renewing its COV subscriptions");
                    return Ok(true);
                }
                renew_at = Instant::now() + lifetime / 2;
            }
            if Instant::now() >= next_poll {
                let polled: Vec<ObjectId> = points
                    .iter()
                    .filter(|p| p.wants_poll())
                    .map(|p| p.id)
                    .collect();
                // A device whose every object is notified by COV is still
                // read at each period, so that its silence is noticed; the
                // values are no readings (`point`).
                let read: Vec<ObjectId> = if polled.is_empty() {
                    points.iter().map(|p| p.id).collect()
                } else {
                    polled
                };
                match reader::poll(&self.client, peer, &read, &mut caps).await {
                    Ok(polled) => {
                        failures = 0;
                        st.stats.received.inc();
                        report(st, ctx, DeviceState::Online).await?;
                        self.discrepancies(st, &polled.discrepancies);
                        let mut readings = Vec::with_capacity(polled.samples.len());
                        for (id, s) in polled.samples {
                            let Some(&i) = index.get(&id) else { continue };
                            match points[i].polled() {
                                PolledUse::Presence => continue,
                                PolledUse::ReadingCovSilent => cov_silent(st, id),
                                PolledUse::Reading => {}
                            }
                            match s {
                                Ok(s) => push_sample(st, ctx, &mut points[i], &s, &mut readings),
                                Err(code) => self.object_error(st, ctx, id, code),
                            }
                        }
                        st.flagged
                            .set(points.iter().filter(|p| p.flagged).count() as f64);
                        send_readings(st, ctx, readings).await?;
                    }
                    Err(e) => {
                        self.fault(st, &e, "polling");
                        failures += 1;
                        if failures >= OFFLINE_AFTER {
                            return Ok(true);
                        }
                        if matches!(e, ClientError::Timeout) {
                            // One retry at once before calling it offline.
                            continue;
                        }
                    }
                }
                next_poll = Instant::now() + period;
            }
            let wake = if self.device.cov {
                next_poll.min(renew_at)
            } else {
                next_poll
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                ev = self.events.recv() => match ev {
                    None => return Ok(true),
                    Some(DeviceEvent::Cov(n)) => {
                        // The notifications already queued behind this one
                        // (a burst of changes, a device reporting many
                        // objects at once) go to the pipeline as one
                        // message: a trip through it per notification was
                        // most of a notification's cost (issue 69).
                        let mut readings = Vec::new();
                        let mut next = Some(n);
                        let mut taken = 0;
                        let mut ambiguous = false;
                        while let Some(n) = next.take() {
                            take_cov(st, ctx, &index, &mut points, &n, &mut readings);
                            taken += 1;
                            if taken == COV_BATCH {
                                break;
                            }
                            match self.events.try_recv() {
                                Ok(DeviceEvent::Cov(n)) => next = Some(n),
                                Ok(DeviceEvent::IAm(from, _)) => {
                                    if !st.binding.heard(peer, from) {
                                        ambiguous = true;
                                        break;
                                    }
                                    if from == peer && self.device.cov {
                                        renew_at = Instant::now();
                                    }
                                }
                                Err(_) => {}
                            }
                        }
                        send_readings(st, ctx, readings).await?;
                        if ambiguous {
                            return Ok(true);
                        }
                    }
                    Some(DeviceEvent::IAm(from, _)) => {
                        // Another address answering for the instance:
                        // no more reads until one answers alone.
                        if !st.binding.heard(peer, from) {
                            return Ok(true);
                        }
                        // A device announcing itself has (re)started:
                        // its subscriptions are gone, renew them now.
                        if from == peer && self.device.cov {
                            renew_at = Instant::now();
                        }
                    }
                },
            }
        }
    }

    /// The device's address and what it can do: from the one address
    /// whose I-Am answered a Who-Is for its instance (sent to its address,
    /// the broadcast addresses or the BBMD; `binding` when several do),
    /// or its configured address alone.
    async fn locate(&mut self, st: &mut State) -> Option<(SocketAddr, Capabilities)> {
        let instance = self.device.instance;
        let range = Some((instance, instance));
        match (self.device.address, self.config.bbmd) {
            (Some(a), _) => self.client.who_is(a, range, false, false).await,
            (None, Some(bbmd)) => self.client.who_is(bbmd, range, true, true).await,
            (None, None) => {
                let default = [SocketAddr::from((
                    [255, 255, 255, 255],
                    super::config::DEFAULT_PORT,
                ))];
                let targets = if self.config.broadcast.is_empty() {
                    &default[..]
                } else {
                    &self.config.broadcast[..]
                };
                for t in targets {
                    self.client.who_is(*t, range, true, false).await;
                }
            }
        }
        let deadline = Instant::now() + self.config.timeout;
        let mut answers = Answers::default();
        loop {
            let ev = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                ev = self.events.recv() => ev?,
            };
            let DeviceEvent::IAm(from, i_am) = ev else {
                continue;
            };
            if i_am.device != instance {
                continue;
            }
            match self.device.address {
                Some(a) if from == a => return Some((a, Capabilities::new(i_am.max_apdu))),
                Some(a) => {
                    st.binding.heard(a, from);
                }
                // The whole round is heard: the first answer may be a
                // forger's, or one of two controllers at one instance.
                None => answers.add(from, i_am.max_apdu),
            }
        }
        // A device at a configured address that ignores Who-Is is still
        // read: what it can do is learnt from its answers.
        if let Some(a) = self.device.address {
            return Some((a, Capabilities::new(super::apdu::MAX_APDU_IP)));
        }
        if answers.verdict() != super::binding::Verdict::Silent {
            let (a, max_apdu) = st.binding.settle(&answers)?;
            return Some((a, Capabilities::new(max_apdu)));
        }
        gateway_core::refuse!(st.stats, st.throttle, "timeout", per "locate";
            adapter = %st.adapter, device = %st.label, instance, "BACnet device not found: no I-Am answered Who-Is; looking again with backoff.");
        None
    }

    /// The objects to read, named.
    async fn prepare(
        &mut self,
        st: &mut State,
        ctx: &AdapterContext,
        peer: SocketAddr,
        caps: &mut Capabilities,
    ) -> Result<Vec<Point>, ClientError> {
        let wanted: Vec<ObjectId> = match &self.device.objects {
            Some(list) => reader::distinct(list.clone()),
            None => reader::object_list(&self.client, peer, self.device.instance, caps)
                .await?
                .into_iter()
                .filter(|o| reader::is_point(o.kind))
                .collect(),
        };
        let wanted: Vec<ObjectId> = wanted
            .into_iter()
            .filter(|o| !self.device.exclude.contains(o))
            .collect();
        let infos = reader::describe(&self.client, peer, &wanted, caps).await?;
        let (ok, bad): (Vec<ObjectInfo>, Vec<ObjectInfo>) =
            infos.into_iter().partition(|i| i.error.is_none());
        for b in &bad {
            if let Some(code) = b.error {
                self.object_error(st, ctx, b.id, code);
            }
        }
        let named: Vec<(ObjectId, Option<String>)> =
            ok.iter().map(|i| (i.id, i.name.clone())).collect();
        let metrics = names::metric_names(&named);
        let mut points = Vec::with_capacity(ok.len());
        let mut stated = BTreeMap::new();
        for (info, metric) in ok.iter().zip(metrics) {
            let Ok(m) = MetricName::new(metric.as_str()) else {
                continue;
            };
            let unit = info.units.map(units::name).unwrap_or_default();
            tracing::debug!(adapter = %st.adapter, device = %st.label, object = %info.id, metric = %metric, unit = %unit, "BACnet object read as a metric.");
            if let Some(symbol) = info.units.and_then(units::symbol) {
                stated.insert(metric.clone(), symbol.to_string());
            }
            points.push(Point::new(info.id, m.interned(), info.states));
        }
        // Before the first reading: Home Assistant announces a sensor's
        // unit when it first hears of it.
        ctx.ingress.report_units(self.device.id.as_str(), stated);
        st.objects.set(points.len() as f64);
        // Before saying it is found: from then on it can be written to.
        self.link.found(
            peer,
            points.iter().map(|p| (p.metric.as_str().to_string(), p.id)),
        );
        info!(adapter = %st.adapter, device = %st.label, instance = self.device.instance, address = %peer, objects = points.len(), rpm = caps.rpm, whole_list = caps.whole_list, "BACnet device found.");
        Ok(points)
    }

    /// Subscribes every point; a refusal leaves the object polled, no
    /// answer at all is the device gone.
    async fn subscribe(
        &mut self,
        st: &mut State,
        peer: SocketAddr,
        points: &mut [Point],
    ) -> Result<(), ClientError> {
        let lifetime = Some(self.config.cov_lifetime);
        for p in points.iter_mut() {
            match self
                .client
                .subscribe_cov(peer, self.device.instance, p.id, false, lifetime)
                .await
            {
                Ok(()) => p.subscribed(),
                Err(e @ ClientError::Timeout) => return Err(e),
                Err(e) => {
                    p.refused();
                    gateway_core::refuse!(st.stats, st.throttle, "cov_refused", per format!("cov:{}", p.id);
                        adapter = %st.adapter, device = %st.label, object = %p.id, error = %e, "COV subscription refused: the object is polled instead.");
                }
            }
        }
        st.cov_count
            .set(points.iter().filter(|p| p.is_cov()).count() as f64);
        Ok(())
    }

    fn fault(&self, st: &State, e: &ClientError, doing: &str) {
        if let ClientError::Error(code) = e {
            count_error(st, code);
        }
        gateway_core::refuse!(st.stats, st.throttle, e.label(), per format!("fault:{}", e.label());
            adapter = %st.adapter, device = %st.label, instance = self.device.instance, error = %e, "BACnet device failed while {doing}; the other devices go on.");
    }

    /// Counts and logs what the poll's answers held that was not asked
    /// for, or lacked (`reader::Discrepancies`).
    fn discrepancies(&self, st: &State, d: &reader::Discrepancies) {
        if d.is_empty() {
            return;
        }
        for (label, n) in d.counts() {
            for _ in 0..n {
                st.stats.error(label);
            }
        }
        if let Some(suppressed) = st.throttle.allow("discrepancies") {
            warn!(adapter = %st.adapter, device = %st.label, instance = self.device.instance, duplicate = d.duplicate, unasked = d.unasked, missing = d.missing, suppressed, "The device's ReadPropertyMultiple answer does not match the request (an object twice, objects not asked, or objects left out): only the first result of each object asked is used.");
        }
    }

    fn object_error(&self, st: &State, _ctx: &AdapterContext, id: ObjectId, code: ErrorCode) {
        if code == NOT_A_NUMBER {
            not_finite(st, id);
            return;
        }
        count_error(st, &code);
        gateway_core::refuse!(st.stats, st.throttle, "error", per format!("object:{id}");
            adapter = %st.adapter, device = %st.label, object = %id, error = %code.describe(), "The device refuses this object: check `objects` in its [[bacnet.device]].");
    }
}

fn count_error(st: &State, code: &ErrorCode) {
    let d = code.describe();
    let (class, code) = d.split_once('/').unwrap_or((d.as_str(), ""));
    st.telemetry
        .counter(
            BACNET_ERRORS,
            &[
                ("adapter", st.adapter.as_str()),
                ("device", st.label.as_str()),
                ("class", class),
                ("code", code),
            ],
        )
        .inc();
}

async fn send_readings(
    st: &State,
    ctx: &AdapterContext,
    readings: Vec<Reading>,
) -> Result<(), AdapterError> {
    if readings.is_empty() {
        return Ok(());
    }
    st.stats.readings.add(readings.len() as u64);
    ctx.ingress
        .send(Ingress::Readings(readings))
        .await
        .map_err(|_| AdapterError::PipelineClosed)
}

async fn report(
    st: &mut State,
    ctx: &AdapterContext,
    state: DeviceState,
) -> Result<(), AdapterError> {
    let before = st.status.replace(state);
    if before == Some(state) || (before.is_none() && state == DeviceState::Offline) {
        // Never online yet: nothing to say offline about, but the gauge.
        if before.is_none() {
            st.status = None;
        }
        return Ok(());
    }
    st.up.set(if state == DeviceState::Online {
        1.0
    } else {
        0.0
    });
    if state == DeviceState::Offline {
        warn!(adapter = %st.adapter, device = %st.label, "BACnet device offline: it stopped answering.");
    } else {
        info!(adapter = %st.adapter, device = %st.label, "BACnet device answers.");
    }
    ctx.ingress
        .send(Ingress::Status(StatusChange {
            device: st.id.clone(),
            state,
            time: ctx.clock.now(),
        }))
        .await
        .map_err(|_| AdapterError::PipelineClosed)
}
