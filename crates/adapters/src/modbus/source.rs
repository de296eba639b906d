//! The `modbus` adapter: one task owns the bus (a TCP connection or a
//! serial port) and serves its units one request at a time, in the order
//! the [`poller`](super::poller) schedules them. Everything that reaches a
//! device goes through this task's queue, so on RS-485 no two requests
//! ever overlap; writes (commands from the cloud, [`super::writer`]) join
//! the same loop as another kind of [`Job`].
//!
//! Faults are counted in `edge_gateway_adapter_errors_total{error_type}`
//! (`timeout`, `exception`, `connection`, `crc`, `protocol`), exceptions
//! also by device and code in `edge_gateway_modbus_exceptions_total`, and
//! logged at most once per interval per device and reason. None stops the
//! adapter: a silent device is retried with backoff while the others go
//! on, a lost connection or port is reopened with backoff, and the bus's
//! `edge_gateway_adapter_connected` says which state it is in.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::command::{CommandTarget, Refusal, WriteOutcome};
use gateway_core::component::{AdapterFuture, ADAPTER_CONNECTED};
use gateway_core::telemetry::{Gauge, LogThrottle};
use gateway_core::{
    Adapter, AdapterContext, AdapterError, AdapterStats, DeviceId, DeviceState, Ingress,
    MetricName, Reading, StatusChange, TimeSource,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::config::{ModbusConfig, Transport};
use super::devices::ModbusDevice;
use super::link::Link;
use super::poller::{first_slot, next_due, Fault, Unit, Verdict};
use super::writer::{execute, ModbusTarget, WriteJob};

/// Requests a bus has sent, by adapter: with the answers received
/// (`edge_gateway_adapter_received_messages_total`) it shows how well the
/// reads are grouped and how many go unanswered.
pub const MODBUS_REQUESTS: &str = "edge_gateway_modbus_requests_total";
/// Exception responses, by adapter, device and code.
pub const MODBUS_EXCEPTIONS: &str = "edge_gateway_modbus_exceptions_total";
/// Registers a device refused alone (exception 1, 2 or 3), now skipped.
pub const MODBUS_DISABLED: &str = "edge_gateway_modbus_disabled_registers";
/// 1 while a device answers its polls, 0 once it failed
/// [`OFFLINE_AFTER`](super::poller::OFFLINE_AFTER) in a row.
pub const MODBUS_DEVICE_UP: &str = "edge_gateway_modbus_device_up";

/// First wait before reconnecting; doubles up to `max_backoff`.
const FIRST_RECONNECT: Duration = Duration::from_millis(200);

/// A runnable `modbus` adapter.
pub struct ModbusSource {
    config: ModbusConfig,
    devices: Vec<ModbusDevice>,
    /// Writes from the command target, once it was asked for.
    writes: Option<mpsc::Receiver<WriteJob>>,
}

impl ModbusSource {
    pub fn new(config: ModbusConfig, devices: Vec<ModbusDevice>) -> Self {
        Self {
            config,
            devices,
            writes: None,
        }
    }
}

impl Adapter for ModbusSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(self.config, self.devices, self.writes, ctx))
    }

    fn command_target(&mut self) -> Option<Arc<dyn CommandTarget>> {
        let (target, writes) = ModbusTarget::new(&self.devices)?;
        self.writes = Some(writes);
        Some(target)
    }
}

/// What the bus task does next.
#[derive(Debug)]
enum Job {
    /// Read device `index` (into the bus's devices).
    Poll(usize),
    /// A command's write, then its read-back.
    Write(WriteJob),
}

/// A device as the task needs it beside its schedule.
struct Member {
    id: DeviceId,
    metrics: Vec<MetricName>,
    up: Gauge,
    disabled: Gauge,
    /// The state last reported.
    state: Option<DeviceState>,
}

struct Bus {
    name: String,
    transport: Transport,
    units: Vec<Unit>,
    members: Vec<Member>,
    stats: AdapterStats,
    throttle: LogThrottle,
}

async fn run(
    config: ModbusConfig,
    devices: Vec<ModbusDevice>,
    mut writes: Option<mpsc::Receiver<WriteJob>>,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    let connected = ctx
        .telemetry
        .gauge(ADAPTER_CONNECTED, &[("adapter", &ctx.name)]);
    connected.set(0.0);
    let reconnects = ctx.telemetry.counter(
        "edge_gateway_adapter_reconnects_total",
        &[("adapter", &ctx.name)],
    );
    let requests = ctx
        .telemetry
        .counter(MODBUS_REQUESTS, &[("adapter", &ctx.name)]);
    let mut bus = Bus::new(&config, devices, &ctx);
    if bus.units.is_empty() {
        warn!(adapter = %ctx.name, "No [[modbus.device]] on this bus: nothing to read.");
    }
    let mut backoff = Backoff::new(FIRST_RECONNECT, config.max_backoff);
    let mut link: Option<Link> = None;
    // Said once per outage, not at every retry.
    let mut down_logged = false;
    loop {
        let due = bus.next_job();
        // A write waits for no poll: it is taken as soon as the bus is free.
        let job = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            w = async { writes.as_mut()?.recv().await }, if writes.is_some() => match w {
                Some(w) => Job::Write(w),
                None => {
                    writes = None;
                    continue;
                }
            },
            i = wait_due(&bus, due) => Job::Poll(i),
        };
        let i = match job {
            Job::Poll(i) => i,
            Job::Write(w) => {
                if link.is_none() {
                    match Link::open(&config.transport, config.timeout).await {
                        Ok(l) => {
                            connected.set(1.0);
                            link = Some(l);
                        }
                        Err(e) => {
                            bus.stats.error(Fault::Connection.label());
                            let _ = w.reply.send(WriteOutcome::Failed(Refusal::new(
                                "connection",
                                format!("cannot open the bus: {e}"),
                            )));
                            continue;
                        }
                    }
                }
                let Some(open) = link.as_mut() else { continue };
                requests.inc();
                let written = execute(open, &w).await;
                if written.drop_link {
                    link = None;
                    connected.set(0.0);
                    reconnects.inc();
                }
                let _ = w.reply.send(written.outcome);
                continue;
            }
        };
        if link.is_none() {
            match Link::open(&config.transport, config.timeout).await {
                Ok(l) => {
                    info!(adapter = %ctx.name, bus = %config.transport.describe(), "Modbus bus open.");
                    connected.set(1.0);
                    down_logged = false;
                    link = Some(l);
                }
                Err(e) => {
                    bus.stats.error(Fault::Connection.label());
                    if !down_logged {
                        warn!(adapter = %ctx.name, bus = %config.transport.describe(), error = %e, "Cannot open the Modbus bus; retrying with backoff.");
                        down_logged = true;
                    }
                    bus.link_down(&ctx).await?;
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            }
        }
        let Some(open) = link.as_mut() else { continue };
        let outcome = bus.poll(i, open, &ctx, &requests).await?;
        if outcome.answered {
            backoff.reset();
        }
        if outcome.drop_link {
            link = None;
            connected.set(0.0);
            reconnects.inc();
            if outcome.link_failed {
                if !down_logged {
                    warn!(adapter = %ctx.name, bus = %config.transport.describe(), "Modbus bus lost; reconnecting with backoff.");
                    down_logged = true;
                }
                bus.link_down(&ctx).await?;
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    connected.set(0.0);
    info!(adapter = %ctx.name, "Stopped.");
    Ok(())
}

/// Waits until device `due` (the next to poll) is due; never, with none.
async fn wait_due(bus: &Bus, due: Option<usize>) -> usize {
    match due {
        Some(i) => {
            tokio::time::sleep_until(bus.units[i].due()).await;
            i
        }
        None => std::future::pending().await,
    }
}

/// How one poll ended.
struct PollOutcome {
    /// The device answered at least one read.
    answered: bool,
    /// The link must be dropped (and opened again before the next read).
    drop_link: bool,
    /// ... because it failed, not only because it cannot be trusted.
    link_failed: bool,
}

impl Bus {
    fn new(config: &ModbusConfig, devices: Vec<ModbusDevice>, ctx: &AdapterContext) -> Self {
        let start = Instant::now();
        let n = devices.len();
        let mut units = Vec::with_capacity(n);
        let mut members = Vec::with_capacity(n);
        for (i, d) in devices.into_iter().enumerate() {
            let period = d.poll.unwrap_or(config.poll);
            let labels = [("adapter", ctx.name.as_str()), ("device", d.id.as_str())];
            let metrics = d
                .registers
                .iter()
                // Checked when the config was read.
                .filter_map(|r| MetricName::new(r.metric.as_str()).ok())
                .collect::<Vec<_>>();
            let (manufacturer, model) = d
                .profile
                .map_or((None, super::kind::MODBUS.info.model), |p| {
                    (Some(p.manufacturer), p.model)
                });
            ctx.ingress.describe(d.id.as_str(), manufacturer, model);
            let up = ctx.telemetry.gauge(MODBUS_DEVICE_UP, &labels);
            up.set(0.0);
            let disabled = ctx.telemetry.gauge(MODBUS_DISABLED, &labels);
            disabled.set(0.0);
            members.push(Member {
                id: d.id.interned(),
                metrics,
                up,
                disabled,
                state: None,
            });
            units.push(Unit::new(
                d.unit,
                d.registers,
                d.max_gap.unwrap_or(config.max_gap),
                period,
                first_slot(start, period, i, n),
                Backoff::new(period.min(config.max_backoff), config.max_backoff),
            ));
        }
        Self {
            name: ctx.name.clone(),
            transport: config.transport.clone(),
            units,
            members,
            stats: ctx.stats(),
            throttle: LogThrottle::default(),
        }
    }

    fn next_job(&self) -> Option<usize> {
        next_due(&self.units)
    }

    /// Reads every register of device `i` once.
    async fn poll(
        &mut self,
        i: usize,
        link: &mut Link,
        ctx: &AdapterContext,
        requests: &gateway_core::telemetry::Counter,
    ) -> Result<PollOutcome, AdapterError> {
        let mut queue: VecDeque<_> = self.units[i].plan.reads().iter().cloned().collect();
        let mut readings = Vec::new();
        let mut outcome = PollOutcome {
            answered: false,
            drop_link: false,
            link_failed: false,
        };
        let mut fault = None;
        while let Some(read) = queue.pop_front() {
            requests.inc();
            let answer = link.read(self.units[i].unit, &read).await;
            let now = ctx.clock.now();
            let verdict = self.units[i].judge(&read, answer);
            match verdict {
                Verdict::Values(values) => {
                    self.stats.received.inc();
                    outcome.answered = true;
                    let member = &self.members[i];
                    for (m, value) in values {
                        let Some(metric) = member.metrics.get(m) else {
                            continue;
                        };
                        if let Ok(r) = Reading::new(
                            member.id.clone(),
                            metric.clone(),
                            value,
                            now,
                            TimeSource::Arrival,
                        ) {
                            readings.push(r);
                        }
                    }
                }
                Verdict::Split { code, reads } => {
                    self.stats.received.inc();
                    outcome.answered = true;
                    self.exception(i, code, ctx);
                    queue.extend(reads);
                }
                Verdict::Disabled { member, code } => {
                    self.stats.received.inc();
                    outcome.answered = true;
                    self.exception(i, code, ctx);
                    let unit = &self.units[i];
                    let r = &unit.registers[member];
                    warn!(adapter = %self.name, device = %self.members[i].id.as_str(), unit = unit.unit, metric = %r.metric, table = r.table.as_str(), address = r.address, code, "The device refuses this register: it is no longer read. Check its address and table in the register map.");
                    self.members[i]
                        .disabled
                        .set(unit.plan.disabled().len() as f64);
                }
                Verdict::DeviceFault(f) => {
                    if let Fault::Exception(code) = f {
                        self.stats.received.inc();
                        self.exception(i, code, ctx);
                    }
                    fault = Some(f);
                    // Over TCP an answer may still come for the request
                    // that timed out; a new connection cannot receive it.
                    if matches!(f, Fault::Timeout) && !link.is_serial() {
                        outcome.drop_link = true;
                    }
                    break;
                }
                Verdict::LinkFault(f) => {
                    fault = Some(f);
                    outcome.drop_link = true;
                    outcome.link_failed = f == Fault::Connection;
                    break;
                }
            }
        }
        if let Some(f) = fault {
            let key = format!("{}:{}", f.label(), self.members[i].id.as_str());
            if let Some(suppressed) = self.stats.refuse_per(&self.throttle, f.label(), &key) {
                warn!(adapter = %self.name, bus = %self.transport.describe(), device = %self.members[i].id.as_str(), unit = self.units[i].unit, fault = f.label(), suppressed, "Modbus device did not answer; retrying with backoff, the other devices go on.");
            }
        }
        let n = readings.len();
        if n > 0 {
            self.stats.readings.add(n as u64);
            send(ctx, Ingress::Readings(readings)).await?;
        }
        // A device that refused a register still answered; a poll cut
        // short by a fault failed, even after some reads.
        let state = self.units[i].finish(Instant::now(), fault.is_none());
        self.report(i, state, ctx).await?;
        Ok(outcome)
    }

    fn exception(&self, i: usize, code: u8, ctx: &AdapterContext) {
        self.stats.error(Fault::Exception(code).label());
        ctx.telemetry
            .counter(
                MODBUS_EXCEPTIONS,
                &[
                    ("adapter", self.name.as_str()),
                    ("device", self.members[i].id.as_str()),
                    ("code", &code.to_string()),
                ],
            )
            .inc();
    }

    /// Every device fails this poll when the link does.
    async fn link_down(&mut self, ctx: &AdapterContext) -> Result<(), AdapterError> {
        let now = Instant::now();
        for i in 0..self.units.len() {
            if self.units[i].due() <= now {
                let state = self.units[i].finish(now, false);
                self.report(i, state, ctx).await?;
            }
        }
        Ok(())
    }

    async fn report(
        &mut self,
        i: usize,
        state: Option<DeviceState>,
        ctx: &AdapterContext,
    ) -> Result<(), AdapterError> {
        let Some(state) = state else { return Ok(()) };
        let member = &mut self.members[i];
        let before = member.state.replace(state);
        member.up.set(if state == DeviceState::Online {
            1.0
        } else {
            0.0
        });
        if state == DeviceState::Offline {
            warn!(adapter = %self.name, device = %member.id.as_str(), unit = self.units[i].unit, "Modbus device offline: it stopped answering.");
        } else if before == Some(DeviceState::Offline) {
            info!(adapter = %self.name, device = %member.id.as_str(), "Modbus device answers again.");
        } else {
            info!(adapter = %self.name, device = %member.id.as_str(), unit = self.units[i].unit, "Modbus device answers.");
        }
        send(
            ctx,
            Ingress::Status(StatusChange {
                device: member.id.clone(),
                state,
                time: ctx.clock.now(),
            }),
        )
        .await
    }
}

async fn send(ctx: &AdapterContext, ingress: Ingress) -> Result<(), AdapterError> {
    ctx.ingress
        .send(ingress)
        .await
        .map_err(|_| AdapterError::PipelineClosed)
}
