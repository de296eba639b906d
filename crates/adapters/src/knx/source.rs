//! The `knx` adapter: one link (tunnel or routing) and this loop, which
//! turns group telegrams into readings by the adapter's groups, and asks
//! the bus for values: the `read_on_start` addresses on every connect
//! (so again after a reconnect), and each `poll` address that often,
//! all through the link's pace.
//!
//! GroupValueWrite and GroupValueResponse carry readings; a telegram to
//! an address no group names is counted (`unknown_address`), never
//! stored; a payload its DPT cannot read is counted (`undecodable`, and
//! `edge_gateway_knx_undecodable_total{dpt}`); a 16.x text is a text
//! field beside the numbers (counted once per device and metric, not an
//! error). Commands from the cloud ([`super::writer`]) use the same link.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::command::CommandTarget;
use gateway_core::component::AdapterFuture;
use gateway_core::link_status::LinkStatus;
use gateway_core::telemetry::Counter;
use gateway_core::{
    Adapter, AdapterContext, AdapterError, Ingress, Reading, TimeSource, Timestamp,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::address::GroupAddress;
use super::cemi::GroupService;
use super::config::{KnxConfig, Transport};
use super::dpt::Value;
use super::groups::KnxGroup;
use super::link::{ArrivalClock, Faults, GroupTelegram, LinkEvent, Outbox, Outgoing};
use super::routing::{self, RoutingSettings};
use super::tunnel::{self, TunnelSettings};
use super::writer::KnxTarget;

/// Payloads a DPT could not read, by `dpt`.
pub const KNX_UNDECODABLE: &str = "edge_gateway_knx_undecodable_total";
/// Group telegrams seen, by `service` (`read`, `response`, `write`).
pub const KNX_TELEGRAMS: &str = "edge_gateway_knx_telegrams_total";
/// A 16.000/16.001 string's text, as a label (`{adapter, device, metric,
/// text}` = 1, replaced when the text changes), as Modbus shows its
/// string registers: readings are numbers, and a display's text is for an
/// operator to see, not to aggregate.
pub const KNX_TEXT: &str = "edge_gateway_knx_text_info";

/// Events waiting for this loop; the link waits beyond.
const EVENT_QUEUE: usize = 1024;
/// Telegrams turned into readings per message to the pipeline, at most.
const BATCH: usize = 256;

pub struct KnxSource {
    config: KnxConfig,
    groups: Vec<KnxGroup>,
    /// Writes, for the command target.
    writes: mpsc::Sender<Outgoing>,
    /// Reads, one at a time.
    reads: mpsc::Sender<Outgoing>,
    outbox: Outbox,
}

impl KnxSource {
    pub fn new(config: KnxConfig, groups: Vec<KnxGroup>) -> Self {
        let (writes, reads, outbox) = Outbox::new();
        Self {
            config,
            groups,
            writes,
            reads,
            outbox,
        }
    }
}

impl Adapter for KnxSource {
    /// Its tunnel or routing socket: a telegram on the bus before it is up
    /// is never seen.
    fn holds_a_link(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(*self, ctx))
    }

    fn command_target(&mut self) -> Option<Arc<dyn CommandTarget>> {
        let target = KnxTarget::new(&self.groups, self.writes.clone())?;
        Some(target)
    }
}

/// What the loop knows of its groups.
struct Groups {
    list: Vec<KnxGroup>,
    /// Address and state address → index in `list`.
    by_address: HashMap<GroupAddress, usize>,
}

impl Groups {
    fn new(mut list: Vec<KnxGroup>) -> Self {
        let mut by_address = HashMap::with_capacity(list.len() * 2);
        for (i, g) in list.iter_mut().enumerate() {
            // Stamped on every reading: a clone then costs no reference count.
            g.device = g.device.interned();
            g.metric = g.metric.interned();
            by_address.insert(g.address, i);
            if let Some(s) = g.state_address {
                by_address.insert(s, i);
            }
        }
        Self { list, by_address }
    }
}

async fn run(source: KnxSource, ctx: AdapterContext) -> Result<(), AdapterError> {
    let KnxSource {
        config,
        groups,
        writes,
        reads: link_reads,
        outbox,
    } = source;
    // The command target holds its own clone; this one would keep the
    // link's queue open after the target is gone.
    drop(writes);
    let faults = Faults::new(&ctx.name, ctx.stats());
    let (events_tx, mut events) = mpsc::channel(EVENT_QUEUE);
    let stop = ctx.shutdown.child_token();
    let link = match config.transport {
        Transport::Udp(remote) | Transport::Tcp(remote) => {
            let settings = TunnelSettings {
                remote,
                tcp: matches!(config.transport, Transport::Tcp(_)),
                local_ip: config.local_ip,
                nat: config.nat,
                heartbeat: config.heartbeat,
                timeout: config.timeout,
                max_backoff: config.max_backoff,
                refresh_after_silence: config.refresh_after_silence,
                pace: config.pace,
                clock: ArrivalClock(ctx.clock.clone()),
            };
            tokio::spawn(tunnel::run(
                settings,
                outbox,
                events_tx,
                faults.clone(),
                stop.clone(),
            ))
        }
        Transport::Routing(group) => {
            let interface = routing::interface_address(config.interface.as_deref())
                .map_err(|e| AdapterError::Setup(format!("interface: {e}")))?;
            let socket = routing::bind(group, interface).map_err(|source| AdapterError::Bind {
                addr: format!("{group} on {interface}"),
                source,
            })?;
            let settings = RoutingSettings {
                group,
                interface: config.interface.clone(),
                address: config.individual_address,
                pace: config.pace,
                clock: ArrivalClock(ctx.clock.clone()),
            };
            tokio::spawn(routing::run(
                settings,
                outbox,
                events_tx,
                faults.clone(),
                stop.clone(),
                socket,
            ))
        }
    };
    // The export's rows left out are among the config's notes, which
    // `run` logs at start.
    if groups.is_empty() {
        warn!(adapter = %ctx.name, "No [[knx.group]] and no group_addresses on this adapter: every telegram will count as an unknown address.");
    }
    let mut units: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for g in &groups {
        if let Some(unit) = &g.unit {
            units
                .entry(g.device.as_str())
                .or_default()
                .insert(g.metric.as_str().to_string(), unit.clone());
        }
    }
    for (device, units) in units {
        ctx.ingress.report_units(device, units);
    }
    let groups = Groups::new(groups);
    let services = Services::new(&ctx);
    info!(adapter = %ctx.name, groups = groups.list.len(), "KNX adapter started.");
    // /health names what is missing in the link's words: the interface,
    // and why there is no tunnel to it (no slot free, no answer, …).
    let mut status = LinkStatus::new(&ctx, super::kind::INTERFACE.name);
    let mut reads: VecDeque<GroupAddress> = VecDeque::new();
    let mut polls: Vec<(usize, Duration, Instant)> = Vec::new();
    let mut poll_tick = tokio::time::interval(Duration::from_secs(1));
    poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut is_connected = false;
    let mut batch: Vec<Reading> = Vec::new();
    let mut seen = Seen {
        texts: HashMap::new(),
        stamps: Stamps::new(groups.list.len()),
    };
    let result = loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break Ok(()),
            ev = events.recv() => {
                let Some(mut ev) = ev else { break Ok(()) };
                // Everything waiting goes in one message.
                let mut taken = 0;
                loop {
                    match ev {
                        LinkEvent::Telegram(t) => telegram(&t, &groups, &services, &ctx, &faults, &mut seen, &mut batch),
                        LinkEvent::Connected(address) => {
                            is_connected = true;
                            status.up();
                            let now = Instant::now();
                            reads.clear();
                            let mut queued = HashSet::new();
                            for g in groups.list.iter().filter(|g| g.read_on_start) {
                                if queued.insert(g.read_address()) {
                                    reads.push_back(g.read_address());
                                }
                            }
                            polls = groups.list.iter().enumerate()
                                .filter_map(|(i, g)| Some((i, g.poll?, now + g.poll?)))
                                .collect();
                            info!(adapter = %ctx.name, address = %address, reads = reads.len(), "KNX bus reachable; reading the read_on_start addresses.");
                        }
                        LinkEvent::Down(problem) => {
                            is_connected = false;
                            status.down(&problem);
                            reads.clear();
                        }
                    }
                    taken += 1;
                    if taken >= BATCH {
                        break;
                    }
                    match events.try_recv() {
                        Ok(next) => ev = next,
                        Err(_) => break,
                    }
                }
                if !batch.is_empty() {
                    let n = batch.len() as u64;
                    if ctx.ingress.send(Ingress::Readings(std::mem::take(&mut batch))).await.is_err() {
                        break Err(AdapterError::PipelineClosed);
                    }
                    faults.stats.readings.add(n);
                }
            }
            _ = poll_tick.tick(), if is_connected && !polls.is_empty() => {
                let now = Instant::now();
                for (i, every, due) in &mut polls {
                    if *due <= now {
                        *due = now + *every;
                        let address = groups.list[*i].read_address();
                        if !reads.contains(&address) {
                            reads.push_back(address);
                        }
                    }
                }
            }
            permit = link_reads.reserve(), if is_connected && !reads.is_empty() => {
                let Ok(permit) = permit else { break Ok(()) };
                if let Some(address) = reads.pop_front() {
                    permit.send(Outgoing::read(address));
                }
            }
        }
    };
    stop.cancel();
    let _ = link.await;
    status.stopped();
    info!(adapter = %ctx.name, "Stopped.");
    result
}

/// The counters of each group service, looked up once.
struct Services([Counter; 3]);

impl Services {
    fn new(ctx: &AdapterContext) -> Self {
        let c = |service: GroupService| {
            ctx.telemetry.counter(
                KNX_TELEGRAMS,
                &[
                    ("adapter", ctx.name.as_str()),
                    ("service", service.as_str()),
                ],
            )
        };
        Self([
            c(GroupService::Read),
            c(GroupService::Response),
            c(GroupService::Write),
        ])
    }

    fn count(&self, service: GroupService) {
        let i = match service {
            GroupService::Read => 0,
            GroupService::Response => 1,
            GroupService::Write => 2,
        };
        self.0[i].inc();
    }
}

/// One group telegram: a reading of its group, or a count of why not.
/// A text is no reading: like the text fields of other adapters it is
/// counted once per device and key, and shown in [`KNX_TEXT`]. One label
/// set per group at most, whatever the bus sends.
fn show_text(
    i: usize,
    g: &KnxGroup,
    text: String,
    texts: &mut HashMap<usize, String>,
    ctx: &AdapterContext,
    faults: &Faults,
) {
    let old = texts.insert(i, text.clone());
    if old.as_deref() == Some(text.as_str()) {
        return;
    }
    debug!(adapter = %ctx.name, device = %g.device, metric = %g.metric, text, "KNX text value.");
    faults
        .stats
        .ignored_field(g.device.as_str(), g.metric.as_str());
    let (adapter, device, metric) = (ctx.name.as_str(), g.device.as_str(), g.metric.as_str());
    if let Some(old) = &old {
        ctx.telemetry.remove_gauge(
            KNX_TEXT,
            &[
                ("adapter", adapter),
                ("device", device),
                ("metric", metric),
                ("text", old),
            ],
        );
    }
    ctx.telemetry
        .gauge(
            KNX_TEXT,
            &[
                ("adapter", adapter),
                ("device", device),
                ("metric", metric),
                ("text", &text),
            ],
        )
        .set(1.0);
}

/// What the loop remembers of each group between telegrams.
struct Seen {
    /// The text last shown per group, so that a changed one replaces it.
    texts: HashMap<usize, String>,
    stamps: Stamps,
}

fn telegram(
    t: &GroupTelegram,
    groups: &Groups,
    services: &Services,
    ctx: &AdapterContext,
    faults: &Faults,
    seen: &mut Seen,
    batch: &mut Vec<Reading>,
) {
    faults.stats.received.inc();
    services.count(t.service);
    if t.service == GroupService::Read {
        return;
    }
    let Some(&i) = groups.by_address.get(&t.destination) else {
        faults.count(
            "unknown_address",
            format!("Telegrams to group addresses no [[knx.group]] or ETS export names are counted, not stored (this one: {} from {}).", t.destination, t.source),
        );
        return;
    };
    let g = &groups.list[i];
    match g.dpt.decode(t.data.as_data()) {
        Ok(Value::Number(v)) => {
            if let Ok(r) = Reading::new(
                g.device.clone(),
                g.metric.clone(),
                v,
                seen.stamps.stamp(i, t.at),
                TimeSource::Arrival,
            ) {
                batch.push(r);
            }
        }
        Ok(Value::Text(text)) => show_text(i, g, text, &mut seen.texts, ctx, faults),
        Err(e) => {
            let dpt = g.dpt.to_string();
            ctx.telemetry
                .counter(
                    KNX_UNDECODABLE,
                    &[("adapter", ctx.name.as_str()), ("dpt", dpt.as_str())],
                )
                .inc();
            faults.count(
                "undecodable",
                format!(
                    "A telegram to {} ({} {}) did not decode: {e} (raw {}).",
                    t.destination,
                    g.device,
                    g.metric,
                    t.data.as_data().hex()
                ),
            );
        }
    }
}

/// How far a series' times may run ahead of the clock to stay strictly
/// increasing; a clock stepped back further than this is taken as it is.
const STAMP_LEAD_MS: i64 = 1000;

/// Each reading's time: its telegram's arrival, made strictly increasing
/// per group. Consumers tell readings apart by (device, metric, time), and
/// a burst of telegrams to one address can arrive within one millisecond:
/// each after the first is then stamped 1 ms after the one before.
struct Stamps {
    last: Vec<Option<Timestamp>>,
}

impl Stamps {
    fn new(groups: usize) -> Self {
        Self {
            last: vec![None; groups],
        }
    }

    fn stamp(&mut self, group: usize, at: Timestamp) -> Timestamp {
        let Some(last) = self.last.get_mut(group) else {
            return at;
        };
        let at = match *last {
            Some(l) if at <= l && l.as_millis() - at.as_millis() < STAMP_LEAD_MS => {
                l.saturating_add_millis(1)
            }
            _ => at,
        };
        *last = Some(at);
        at
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
