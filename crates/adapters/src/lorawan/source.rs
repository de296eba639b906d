//! The `semtech_udp` adapter's socket loop: datagrams from packet
//! forwarders in, ACKs back, uplinks through [`Dedup`] and then
//! [`uplink::prepare_batch`], readings into the pipeline once their
//! counters are on disk.
//!
//! PUSH_DATA is acknowledged on receipt once its header and gateway EUI
//! check out, before its JSON is read, as PROTOCOL.TXT §3 asks (the
//! forwarder never retransmits either way): the ACK says "datagram
//! received", not "frame accepted". A
//! forwarder's `stat` object becomes readings of a device whose id is the
//! gateway EUI (16 lower-case hex digits): `rxnb`, `rxok`, `rxfw`, `ackr`,
//! `dwnb`, `txnb`. Everything refused is counted by reason and logged
//! (rate-limited) with the gateway EUI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_core::command::CommandTarget;
use gateway_core::component::{AdapterFuture, AdapterStats};
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{
    Adapter, AdapterContext, AdapterError, DeviceId, Ingress, MetricName, Reading, TimeSource,
    Timestamp,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info};

use super::adr::Adr;
use super::class_a::{self, Queues};
use super::command::{Commands, LorawanTarget, Waiting};
use super::config::{LorawanDevice, Network, OtaaDevice, SemtechUdpConfig};
use super::dedup::{Dedup, Offer, Reception, Uplink};
use super::downlink::Links;
use super::downlink_feed::{self, FeedItem};
use super::fcnt::{FcntStore, StoreError};
use super::otaa::Joins;
use super::semtech::{self, EntryError, GatewayEui, PushData, Rxpk, Stat};
use super::uplink::{Devices, MetricNames};

/// Readings of uplinks due together sent as one pipeline message at
/// most: a burst's batch is bounded, not one message of every reading.
const MAX_READINGS_PER_MESSAGE: usize = 1024;
/// Frames awaiting their de-duplication window at once. This caps the
/// sustained rate at `MAX_PENDING` over the window plus a counters write
/// (25 ms at least): 4096 held a 200 ms window to 20 000 uplinks/s, and the
/// benchmark's burst lost four frames in five to it; 32 768 still refused
/// up to a tenth of a burst at the 150 000/s one sender reaches on two
/// cores (`dedup_full`, issue 69), which is also the raw receiver's rate
/// the gateway's is judged against. 65 536 allows about 290 000/s (a
/// site's forwarders carry a few hundred at most). A full table is about
/// 16 MB (240 bytes a frame: its queue entry, bytes and index slot), given
/// back once the burst has passed ([`Dedup`]).
const MAX_PENDING: usize = 65_536;

/// The least time from the start of one frame-counter write to the start
/// of the next. Under a steady flow every write took the uplinks that came
/// due during the last one, a few each: at 10 000 uplinks a second the
/// blocking threads' file create, two fsyncs and rename were 2.3-3.6 µs of
/// system time an uplink, the largest single cost of one (issue 69). With
/// the floor a write carries at least this long's uplinks; what is written
/// before a reading leaves is unchanged. Short beside the de-duplication
/// window (200 ms by default) and a Class A device's receive delay (1 s,
/// joins 5 s), and paid only when writes follow each other this closely.
const MIN_WRITE_GAP: Duration = Duration::from_millis(25);

/// When the next batch may be taken: its earliest uplink's deadline, but
/// not before [`MIN_WRITE_GAP`] after the last write began.
fn next_batch_at(deadline: Option<Instant>, last_write: Option<Instant>) -> Option<Instant> {
    let deadline = deadline?;
    Some(match last_write {
        Some(last) => deadline.max(last + MIN_WRITE_GAP),
        None => deadline,
    })
}

/// A runnable `semtech_udp` adapter.
pub struct SemtechUdpSource {
    config: SemtechUdpConfig,
    devices: Vec<LorawanDevice>,
    otaa: Vec<OtaaDevice>,
    network: Network,
    state_dir: PathBuf,
    /// Commands' downlinks, once the command target was asked for.
    commands: Option<mpsc::Receiver<FeedItem>>,
    waiting: Arc<Waiting>,
}

impl SemtechUdpSource {
    /// The adapter for `config`, verifying frames of `devices` and keeping
    /// their counters in `state_dir`; it binds when run.
    pub fn new(config: SemtechUdpConfig, devices: Vec<LorawanDevice>, state_dir: &Path) -> Self {
        Self {
            config,
            devices,
            otaa: Vec::new(),
            network: Network::default(),
            state_dir: state_dir.to_path_buf(),
            commands: None,
            waiting: Arc::default(),
        }
    }

    /// Also answers the join-requests of `otaa` devices, on `network`.
    #[must_use]
    pub fn with_otaa(mut self, otaa: Vec<OtaaDevice>, network: Network) -> Self {
        self.otaa = otaa;
        self.network = network;
        self
    }
}

impl Adapter for SemtechUdpSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(async move {
            let socket = crate::udp::bind(self.config.bind).await?;
            // Datagrams wait in the socket's buffer while the counters load.
            ctx.listening();
            if let Err(e) = std::fs::create_dir_all(&self.state_dir) {
                error!(adapter = %ctx.name, state_dir = %self.state_dir.display(), error = %e, "Cannot use the state directory: LoRaWAN uplinks will be refused, as their frame counters cannot be stored.");
            }
            let (store, problem) = FcntStore::open(&self.state_dir);
            if let Some(e) = problem {
                ctx.stats().error("fcnt_store");
                error!(adapter = %ctx.name, error = %e, "LoRaWAN frame counters of the last run are lost: frames sent before the restart could be accepted again until each device sends a new one.");
            }
            let codecs = (self.devices.iter().map(|d| (&d.id, &d.codec)))
                .chain(self.otaa.iter().map(|d| (&d.id, &d.codec)));
            for (id, codec) in codecs {
                if let super::config::DeviceCodec::Named(c) = codec {
                    if let Some((manufacturer, model)) = c.make() {
                        ctx.ingress.describe(id.as_str(), Some(manufacturer), model);
                    }
                }
            }
            let joins = Joins::new(self.otaa, self.network);
            let mut devices = Devices::new(self.devices);
            for joined in joins.sessions(&store) {
                devices.install(joined);
            }
            let commands = Commands {
                queue: self.commands,
                waiting: self.waiting,
            };
            serve(socket, self.config, devices, joins, store, commands, ctx).await
        })
    }

    fn serves_a_port(&self) -> bool {
        true
    }

    fn command_target(&mut self) -> Option<Arc<dyn CommandTarget>> {
        // A device whose codec encodes takes `{"id", "data": {…}}` too.
        let encoder = |codec: &super::config::DeviceCodec| {
            codec.script().filter(|s| s.entries().encode).cloned()
        };
        let devices = (self
            .devices
            .iter()
            .map(|d| (d.id.clone(), encoder(&d.codec))))
        .chain(self.otaa.iter().map(|d| (d.id.clone(), encoder(&d.codec))))
        .collect();
        let (target, rx) =
            LorawanTarget::new(devices, self.waiting.clone(), self.config.command_wait);
        self.commands = Some(rx);
        Some(target)
    }
}

/// Serves on a bound socket until `ctx.shutdown`; frames still in their
/// de-duplication window are processed before it returns.
///
/// Two tasks: a receiver that only reads datagrams (in batches), checks
/// their headers and sends the ACKs (`source_up.rs`), and this one, which parses
/// the JSON, checks frames and has the frame counters written. A counter
/// write is an fsync, milliseconds long (hundreds under load); done in the
/// receive loop it left the socket unread meanwhile, and a burst of
/// forwarders overflowed the kernel's receive buffer (a 2-core bench lost
/// nine datagrams in ten). It now runs on a blocking thread while this task
/// goes on parsing and de-duplicating; what the queue between the two
/// tasks cannot hold is counted (`overloaded`).
///
/// # Errors
/// [`AdapterError::PipelineClosed`] when the pipeline stops first.
pub async fn serve(
    socket: UdpSocket,
    config: SemtechUdpConfig,
    devices: Devices,
    joins: Joins,
    store: FcntStore,
    commands: Commands,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    if let Ok(addr) = socket.local_addr() {
        info!(adapter = %ctx.name, %addr, "Semtech UDP server listening.");
    }
    let socket = Arc::new(socket);
    let links = Arc::new(Mutex::new(Links::default()));
    let (tx, mut rx) = up::queue();
    // Stops the receiver when this side fails first (pipeline gone).
    let stop = ctx.shutdown.child_token();
    let receiver = tokio::spawn(receive(
        Arc::clone(&socket),
        config.gateways.clone(),
        ReceiverContext {
            name: ctx.name.clone(),
            stats: ctx.stats(),
            telemetry: ctx.telemetry.clone(),
            links: Arc::clone(&links),
            waiting: Arc::clone(&commands.waiting),
            stop: stop.clone(),
        },
        tx,
        up::MAX_DATAGRAM,
    ));
    let adapter = [("adapter", ctx.name.as_str())];
    let mut server = Server {
        uplinks: ctx
            .telemetry
            .counter("edge_gateway_lorawan_uplinks_total", &adapter),
        duplicates: ctx
            .telemetry
            .counter("edge_gateway_lorawan_duplicates_total", &adapter),
        stats: ctx.stats(),
        throttle: LogThrottle::default(),
        dedup: Dedup::new(config.dedup_window, MAX_PENDING),
        names: MetricNames::default(),
        scripts: Scripts::new(&ctx),
        devices,
        joins,
        store,
        socket,
        links,
        token: 0,
        queues: Queues::default(),
        waiting: commands.waiting,
        adr: Adr::default(),
        acked_again: HashMap::new(),
        recent_joins: HashMap::new(),
        ctx,
    };
    let mut feed = config.downlinks.clone().map(|feed_config| {
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(downlink_feed::run(
            feed_config,
            server.ctx.name.clone(),
            tx,
            stop.clone(),
        ));
        (rx, task)
    });
    let mut command_queue = commands.queue;
    let result = server
        .process(
            &mut rx,
            feed.as_mut().map(|(rx, _)| rx),
            command_queue.as_mut(),
        )
        .await;
    stop.cancel();
    let _ = receiver.await;
    if let Some((_, task)) = feed {
        let _ = task.await;
    }
    result?;
    info!(adapter = %server.ctx.name, "Stopped.");
    Ok(())
}

#[path = "source_down.rs"]
mod down;
#[path = "source_batch.rs"]
mod batch;
#[path = "source_script.rs"]
mod script;
#[path = "source_up.rs"]
mod up;

use batch::{written, InFlight};
use script::Scripts;
use up::{receive, QueueRx, ReceiverContext};

struct Server {
    /// Counted per uplink, so looked up once rather than by name each time.
    uplinks: Counter,
    duplicates: Counter,
    devices: Devices,
    joins: Joins,
    store: FcntStore,
    /// Shared with the receiver: PULL_RESP leaves from the port the
    /// forwarders talk to, as PROTOCOL.TXT expects.
    socket: Arc<UdpSocket>,
    links: Arc<Mutex<Links>>,
    /// Token of the last PULL_RESP.
    token: u16,
    /// Application downlinks waiting for each device's next uplink.
    queues: Queues,
    /// Commands whose result waits for their downlink to leave.
    waiting: Arc<Waiting>,
    adr: Adr,
    /// Per device, its confirmed uplink last answered: how it was heard
    /// (a late copy of it is not answered again) and how many times it
    /// was acknowledged again. One entry a configured device at most.
    acked_again: HashMap<gateway_core::DeviceId, class_a::Answered>,
    /// Per DevEUI, the DevNonce of its last accepted join-request, when it
    /// was first heard and the device's id: the same request from a slower
    /// forwarder after the de-duplication window is a copy, not a replay.
    /// One entry a configured OTAA device at most.
    recent_joins: HashMap<super::join::Eui, (u16, Instant, gateway_core::DeviceId)>,
    dedup: Dedup,
    names: MetricNames,
    /// Uplinks a `js:` codec is decoding: their results come back here.
    scripts: Scripts,
    stats: AdapterStats,
    throttle: LogThrottle,
    ctx: AdapterContext,
}

impl Server {
    /// Checks the frames the receiver passes on until it stops, then those
    /// still in their de-duplication window.
    async fn process(
        &mut self,
        rx: &mut QueueRx,
        mut feed: Option<&mut mpsc::Receiver<FeedItem>>,
        mut commands: Option<&mut mpsc::Receiver<FeedItem>>,
    ) -> Result<(), AdapterError> {
        // One timer, moved when the earliest deadline changes: a new one
        // per message re-registered it with the timer wheel every time.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        // The batch whose counters are being written, if any.
        let mut writing: Option<InFlight> = None;
        let mut last_write: Option<Instant> = None;
        loop {
            let deadline = next_batch_at(self.dedup.next_deadline(), last_write);
            if deadline != armed {
                if let Some(d) = deadline {
                    timer.as_mut().reset(d);
                }
                armed = deadline;
            }
            tokio::select! {
                biased;
                written = written(&mut writing), if writing.is_some() => {
                    if let Some(batch) = writing.take() {
                        self.settle(batch, written).await?;
                    }
                }
                // Not while a write is in flight: the next batch is judged
                // by the counters of this one, and the store writes one
                // file at a time.
                _ = &mut timer, if armed.is_some() && writing.is_none() => {
                    // Everything due now goes in one batch: one fsync of the
                    // counters for all of them, so a burst (or uplinks that
                    // came due during the last write) does not queue behind
                    // one disk write each.
                    armed = None;
                    let due = self.dedup.pop_all_due(Instant::now());
                    writing = self.begin(due).await?;
                    if writing.is_some() {
                        last_write = Some(Instant::now());
                    }
                }
                Some(done) = self.scripts.rx.recv() => self.script_done(done).await?,
                item = next_feed_item(&mut feed) => match item {
                    Some(item) => self.queue_downlink(item),
                    None => feed = None,
                },
                item = next_feed_item(&mut commands) => match item {
                    Some(item) => self.queue_downlink(item),
                    None => commands = None,
                },
                batch = rx.recv() => match batch {
                    Some(batch) => {
                        // One arrival time for the batch: its datagrams were
                        // read within a wake-up, and two clock reads per
                        // datagram were 2 % of the CPU.
                        let arrived = (self.ctx.clock.now(), Instant::now());
                        for (pushed, body) in batch.iter() {
                            match semtech::push_data(body) {
                                Ok(PushData { rxpk, stat }) => {
                                    // Awaited only for a `stat`: a future of
                                    // the whole body was built, and copied,
                                    // for every datagram (callgrind, issue 69).
                                    if let Some(stat) = stat {
                                        self.push_stat(pushed.gateway, stat).await?;
                                    }
                                    self.push_rxpk(pushed.gateway, rxpk, arrived);
                                }
                                Err(e) => self.report(e.kind(), &pushed.peer.to_string(), &e.to_string()),
                            }
                        }
                        rx.recycle(batch);
                    }
                    None => break,
                },
            }
        }
        if let Some(mut batch) = writing.take() {
            let done = (&mut batch.write).await;
            self.settle(batch, done.unwrap_or(Err(StoreError::WriteAborted)))
                .await?;
        }
        let waiting = self.dedup.drain();
        self.finish(waiting).await?;
        self.drain_scripts().await
    }

    /// A PUSH_DATA's `stat` object: its readings sent, or its error counted.
    async fn push_stat(
        &mut self,
        gateway: GatewayEui,
        stat: Result<Stat, EntryError>,
    ) -> Result<(), AdapterError> {
        match stat {
            Ok(stat) => self.gateway_stats(gateway, &stat).await,
            Err(e) => {
                self.report(&format!("stat_{}", e.kind()), &gateway.to_string(), &e.to_string());
                Ok(())
            }
        }
    }

    /// A PUSH_DATA's frames, offered for de-duplication. `arrived`: the
    /// wall time and the instant the datagram was taken.
    fn push_rxpk(
        &mut self,
        gateway: GatewayEui,
        mut rxpk: Vec<Result<Rxpk, EntryError>>,
        arrived: (Timestamp, Instant),
    ) {
        // The EUI's text only when something is reported: formatting it
        // for every datagram was 3 % of the adapter's CPU.
        let eui = || gateway.to_string();
        let (now, arrived) = arrived;
        // Entries read in place, only their payload and data rate taken:
        // moved out of the list, an entry (about 170 bytes) was copied
        // twice an uplink.
        for rx in &mut rxpk {
            let rx = match rx {
                Ok(rx) => rx,
                Err(e) => {
                    self.report(e.kind(), &eui(), &e.to_string());
                    continue;
                }
            };
            if !rx.crc_ok() {
                let kind = if rx.stat == -1 { "crc_error" } else { "no_crc" };
                self.report(kind, &eui(), &format!("rxpk stat {}", rx.stat));
                continue;
            }
            let reception = Reception {
                gateway,
                rssi: rx.best_rssi(),
                snr: rx.best_snr(),
                tmst: rx.tmst,
                freq: rx.freq,
                datr: match rx.datr.take() {
                    Some(semtech::DataRate::Lora(d)) => Some(d),
                    _ => None,
                },
                rfch: rx.rfch,
            };
            match self.dedup.offer(std::mem::take(&mut rx.data), reception, now, arrived) {
                Offer::New => {}
                Offer::Duplicate => self.duplicates.inc(),
                Offer::Full => self.report("dedup_full", &eui(), "too many frames pending"),
            }
        }
    }

    /// A forwarder's `stat` object as readings of the gateway itself.
    async fn gateway_stats(
        &mut self,
        gateway: GatewayEui,
        stat: &Stat,
    ) -> Result<(), AdapterError> {
        let Ok(device) = DeviceId::new(gateway.to_string()) else {
            return Ok(());
        };
        let now = self.ctx.clock.now();
        let values = [
            ("rxnb", stat.rxnb.map(f64::from)),
            ("rxok", stat.rxok.map(f64::from)),
            ("rxfw", stat.rxfw.map(f64::from)),
            ("ackr", stat.ackr),
            ("dwnb", stat.dwnb.map(f64::from)),
            ("txnb", stat.txnb.map(f64::from)),
        ];
        let readings: Vec<Reading> = values
            .into_iter()
            .filter_map(|(m, v)| {
                let metric = MetricName::new(m).ok()?;
                Reading::new(device.clone(), metric, v?, now, TimeSource::Arrival)
                    .ok()
                    .map(Reading::of_infrastructure)
            })
            .collect();
        self.send(readings).await
    }

    /// Processes uplinks whose de-duplication windows closed, waiting for
    /// their counters' write (at shutdown).
    async fn finish(&mut self, due: Vec<Uplink>) -> Result<(), AdapterError> {
        if let Some(mut batch) = self.begin(due).await? {
            let done = (&mut batch.write).await;
            self.settle(batch, done.unwrap_or(Err(StoreError::WriteAborted)))
                .await?;
        }
        Ok(())
    }

    async fn send(&self, readings: Vec<Reading>) -> Result<(), AdapterError> {
        if readings.is_empty() {
            return Ok(());
        }
        self.stats.readings.add(readings.len() as u64);
        self.ctx
            .ingress
            .send(Ingress::Readings(readings))
            .await
            .map_err(|_| AdapterError::PipelineClosed)
    }

    fn report(&self, kind: &str, gateway: &str, detail: &str) {
        gateway_core::refuse!(self.stats, self.throttle, kind;
            adapter = %self.ctx.name, gateway, detail, "Dropping LoRaWAN input.");
    }
}

/// The next downlink of the feed; never, without one.
async fn next_feed_item(feed: &mut Option<&mut mpsc::Receiver<FeedItem>>) -> Option<FeedItem> {
    match feed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The forwarders that heard an uplink, for logs: built only when one is
/// written, not for every uplink.
fn gateway_list(up: &Uplink) -> String {
    up.gateways()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_starts_no_sooner_than_the_gap_after_the_last() {
        let t0 = Instant::now();
        let soon = t0 + Duration::from_millis(3);
        assert_eq!(
            next_batch_at(Some(soon), Some(t0)),
            Some(t0 + MIN_WRITE_GAP),
            "uplinks due during the gap wait for its end, to be written together"
        );
        let later = t0 + MIN_WRITE_GAP + Duration::from_millis(40);
        assert_eq!(next_batch_at(Some(later), Some(t0)), Some(later));
        assert_eq!(next_batch_at(Some(soon), None), Some(soon), "the first write waits for nothing");
        assert_eq!(next_batch_at(None, Some(t0)), None, "nothing due, nothing to write");
    }
}
