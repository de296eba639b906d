//! The `modbus` adapter: one task owns the bus (a TCP connection or a
//! serial port) and serves its units one request at a time, in the order
//! the [`poller`](super::poller) schedules them. Everything that reaches a
//! device goes through this task's queue, so on RS-485 no two requests
//! ever overlap; writes (commands from the cloud, [`super::writer`]) join
//! the same loop as another kind of [`Job`].
//!
//! Faults are counted in `edge_gateway_adapter_errors_total{error_type}`
//! (`timeout`, `exception`, `connection`, `crc`, `protocol`,
//! `out_of_step`, `echo` and `bad_echo` for an RS-485 adapter's echo
//! unexpected or missing, `late_answer` for a TCP answer to a request already
//! settled, dropped, and `not_finite` for a NaN or infinite value), exceptions
//! also by device and code in `edge_gateway_modbus_exceptions_total`, and
//! logged at most once per interval per device and reason. None stops the
//! adapter: a silent device is asked again cheaply while the others go
//! on, a lost connection or port is reopened with backoff, and the bus's
//! `edge_gateway_adapter_connected` (with what is wrong, for `/health`)
//! says which state it is in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::command::{CommandTarget, Refusal, WriteOutcome};
use gateway_core::component::{AdapterFuture, LINK_SERIAL_PORT};
use gateway_core::config::values::duration;
use gateway_core::link_status::{LinkStatus, LINK_TCP_SERVER};
use gateway_core::telemetry::{Gauge, LogThrottle};
use gateway_core::{
    Adapter, AdapterContext, AdapterError, AdapterStats, DeviceId, DeviceState, Ingress,
    MetricName, Reading, TimeSource,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::config::{ModbusConfig, Transport};
use super::devices::ModbusDevice;
use super::link::{lost_problem, open_problem, Link};
use super::plan::Read;
use super::poller::{first_slot, next_due, Fault, Unit, Verdict, REPROBE_FIRST};
use super::writer::{execute, ModbusTarget, WriteJob};

/// Requests a bus has sent, by adapter: with the answers received
/// (`edge_gateway_adapter_received_messages_total`) it shows how well the
/// reads are grouped and how many go unanswered.
pub const MODBUS_REQUESTS: &str = "edge_gateway_modbus_requests_total";
/// Exception responses, by adapter, device and code.
pub const MODBUS_EXCEPTIONS: &str = "edge_gateway_modbus_exceptions_total";
/// Registers a device refused alone (exception 1, 2 or 3), now skipped.
pub const MODBUS_DISABLED: &str = "edge_gateway_modbus_disabled_registers";
/// A string register's text, as a label (`{adapter, device, metric,
/// text}` = 1, replaced when the text changes): readings are numbers, and
/// a serial number or a status spelt out is still worth seeing.
pub const MODBUS_TEXT: &str = "edge_gateway_modbus_text_info";
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
    /// Its bus (a TCP server or a serial port): until it is open, no unit
    /// is read and a command has nothing to go out on.
    fn holds_a_link(&self) -> bool {
        true
    }

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
    /// The text last read from each string register, by index.
    texts: HashMap<usize, String>,
}

struct Bus {
    name: String,
    transport: Transport,
    units: Vec<Unit>,
    members: Vec<Member>,
    stats: AdapterStats,
    throttle: LogThrottle,
    /// What is wrong with the bus while it is down.
    problem: Option<String>,
    /// The bus was open at least once since the start.
    opened_once: bool,
    /// The shortest poll period of its devices.
    shortest_period: Duration,
}

async fn run(
    config: ModbusConfig,
    devices: Vec<ModbusDevice>,
    mut writes: Option<mpsc::Receiver<WriteJob>>,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    let mut status = LinkStatus::new(
        &ctx,
        match config.transport {
            Transport::Tcp { .. } => LINK_TCP_SERVER,
            Transport::Rtu(_) => LINK_SERIAL_PORT,
        },
    );
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
                            status.up();
                            link = Some(l);
                        }
                        Err(e) => {
                            bus.stats.error(Fault::Connection.label());
                            let problem = open_problem(&config.transport, &e);
                            status.down(&problem);
                            let _ = w.reply.send(WriteOutcome::Failed(Refusal::new(
                                "connection",
                                format!("the bus {problem}"),
                            )));
                            continue;
                        }
                    }
                }
                let Some(open) = link.as_mut() else { continue };
                requests.inc();
                let written = execute(open, &w).await;
                bus.count_strays(open);
                if written.drop_link {
                    link = None;
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
                    status.up();
                    bus.problem = None;
                    bus.opened_once = true;
                    down_logged = false;
                    link = Some(l);
                }
                Err(e) => {
                    bus.stats.error(Fault::Connection.label());
                    let problem = open_problem(&config.transport, &e);
                    status.down(&problem);
                    if !down_logged {
                        warn!(adapter = %ctx.name, problem = %problem, "The Modbus bus cannot be opened; retrying with backoff.");
                        down_logged = true;
                    }
                    bus.problem = Some(problem);
                    bus.link_down(&ctx).await?;
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(bus.reconnect_delay(&mut backoff)) => continue,
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
            reconnects.inc();
            if let Some(detail) = outcome.link_failed {
                let problem = lost_problem(&config.transport, &detail);
                status.down(&problem);
                if !down_logged {
                    warn!(adapter = %ctx.name, problem = %problem, "Modbus bus lost; reconnecting with backoff.");
                    down_logged = true;
                }
                bus.problem = Some(problem);
                bus.link_down(&ctx).await?;
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(bus.reconnect_delay(&mut backoff)) => {}
                }
            }
        }
    }
    status.stopped();
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
    /// ... because it failed (how), not only because it cannot be trusted.
    link_failed: Option<String>,
}

#[path = "source_notices.rs"]
mod notices;

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
                texts: HashMap::new(),
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
        let shortest_period = units.iter().map(Unit::period).min().unwrap_or(config.poll);
        Self {
            name: ctx.name.clone(),
            transport: config.transport.clone(),
            units,
            members,
            stats: ctx.stats(),
            throttle: LogThrottle::default(),
            problem: None,
            opened_once: false,
            shortest_period,
        }
    }

    /// How long to wait before opening the bus again: the backoff, but
    /// no longer than a poll period once the bus has worked (a server
    /// restarted is read again at the next period, as Telegraf would).
    fn reconnect_delay(&self, backoff: &mut Backoff) -> Duration {
        let delay = backoff.next_delay();
        if self.opened_once {
            delay.min(self.shortest_period)
        } else {
            delay
        }
    }

    fn next_job(&self) -> Option<usize> {
        next_due(&self.units)
    }

    /// Reads every register of device `i` once (while it fails: one
    /// cheap read first, the rest once that is answered), then asks the
    /// registers it refused again when their time has come.
    async fn poll(
        &mut self,
        i: usize,
        link: &mut Link,
        ctx: &AdapterContext,
        requests: &gateway_core::telemetry::Counter,
    ) -> Result<PollOutcome, AdapterError> {
        let mut queue: VecDeque<Read> = self.units[i].reads_for_poll().into();
        let mut cheap = self.units[i].is_failing();
        let mut reprobes_asked = false;
        let mut readings = Vec::new();
        let mut outcome = PollOutcome {
            answered: false,
            drop_link: false,
            link_failed: None,
        };
        let mut fault = None;
        while let Some(read) = queue.pop_front() {
            requests.inc();
            let answer = link.read(self.units[i].unit, &read).await;
            self.count_strays(link);
            let connection = match &answer {
                super::poller::Answer::Connection(e) => Some(e.clone()),
                _ => None,
            };
            let now = ctx.clock.now();
            let verdict = self.units[i].judge(&read, answer, Instant::now());
            match verdict {
                Verdict::Values {
                    values,
                    not_finite,
                    texts,
                } => {
                    self.stats.received.inc();
                    outcome.answered = true;
                    self.readings(i, &values, now, &mut readings);
                    self.not_finite(i, &not_finite);
                    self.texts(i, texts, ctx);
                }
                Verdict::Restored { member, values } => {
                    self.stats.received.inc();
                    outcome.answered = true;
                    self.readings(i, &values, now, &mut readings);
                    let unit = &self.units[i];
                    let r = &unit.registers[member];
                    info!(adapter = %self.name, device = %self.members[i].id.as_str(), unit = unit.unit, metric = %r.metric, table = r.table.as_str(), address = r.address, "The device answers a register it refused before: it is read again.");
                    self.members[i]
                        .disabled
                        .set(unit.plan.disabled().len() as f64);
                }
                Verdict::Split { code, reads } => {
                    self.stats.received.inc();
                    outcome.answered = true;
                    self.exception(i, code, ctx);
                    queue.extend(reads);
                }
                Verdict::Disabled {
                    member,
                    code,
                    retry,
                } => {
                    self.stats.received.inc();
                    outcome.answered = true;
                    self.exception(i, code, ctx);
                    let unit = &self.units[i];
                    let r = &unit.registers[member];
                    let retry_in = duration::render(retry);
                    if retry == REPROBE_FIRST {
                        warn!(adapter = %self.name, device = %self.members[i].id.as_str(), unit = unit.unit, metric = %r.metric, table = r.table.as_str(), address = r.address, code, retry_in = %retry_in, "The device refuses this register: it is not read for now, and asked again later. Check its table and address in the register map: addresses are 0-based protocol addresses (a manual's input register 30001 or holding register 40001 is address 0).");
                    } else {
                        info!(adapter = %self.name, device = %self.members[i].id.as_str(), unit = unit.unit, metric = %r.metric, table = r.table.as_str(), address = r.address, code, retry_in = %retry_in, "The device still refuses this register; asked again later.");
                    }
                    self.members[i]
                        .disabled
                        .set(unit.plan.disabled().len() as f64);
                }
                Verdict::Skipped { code } => {
                    self.stats.received.inc();
                    outcome.answered = true;
                    self.exception(i, code, ctx);
                    // Counted by `exception` above; the log once per
                    // interval per device.
                    let key = format!("skipped:{}", self.members[i].id.as_str());
                    if let Some(suppressed) = self.throttle.allow(&key) {
                        warn!(adapter = %self.name, device = %self.members[i].id.as_str(), unit = self.units[i].unit, code, table = read.table.as_str(), start = read.start, count = read.count, suppressed,
                            "The device could not do this read now (exception 4: device failure, 5: acknowledge, 6: busy); its other registers go on, and this one is asked again at the next poll.");
                    }
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
                    if f == Fault::Connection {
                        outcome.link_failed =
                            Some(connection.unwrap_or_else(|| "connection lost".into()));
                    }
                    break;
                }
            }
            // It answered the cheap read: the rest of its map, now.
            if cheap && outcome.answered {
                cheap = false;
                let rest: Vec<Read> = self.units[i]
                    .rest_of_poll(&read)
                    .into_iter()
                    .filter(|r| !queue.contains(r))
                    .collect();
                queue.extend(rest);
            }
            if queue.is_empty() && !reprobes_asked {
                reprobes_asked = true;
                queue.extend(self.units[i].reprobes_due(Instant::now()));
            }
        }
        if let Some(f) = fault {
            if f == Fault::OutOfStep {
                self.out_of_step(i);
            } else if matches!(f, Fault::Echo | Fault::BadEcho) {
                self.echo_fault(i, f);
            } else {
                let key = format!("{}:{}", f.label(), self.members[i].id.as_str());
                gateway_core::refuse!(self.stats, self.throttle, f.label(), per key;
                    adapter = %self.name, bus = %self.transport.describe(), device = %self.members[i].id.as_str(), unit = self.units[i].unit, fault = f.label(), "Modbus device did not answer; asked again at its next poll, the other devices go on.");
            }
        }
        let n = readings.len();
        if n > 0 {
            self.stats.readings.add(n as u64);
            send(ctx, Ingress::Readings(readings)).await?;
        }
        // A device that refused a register still answered, and so did one
        // whose poll a fault cut short after some of its reads: it is
        // there (the fault is counted and logged above). Only a poll
        // without any answer failed.
        let state = self.units[i].finish(Instant::now(), outcome.answered);
        self.report(i, state, ctx).await?;
        Ok(outcome)
    }

    fn readings(
        &self,
        i: usize,
        values: &[(usize, f64)],
        now: gateway_core::Timestamp,
        out: &mut Vec<Reading>,
    ) {
        let member = &self.members[i];
        for &(m, value) in values {
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
                out.push(r);
            }
        }
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
}

async fn send(ctx: &AdapterContext, ingress: Ingress) -> Result<(), AdapterError> {
    ctx.ingress
        .send(ingress)
        .await
        .map_err(|_| AdapterError::PipelineClosed)
}
