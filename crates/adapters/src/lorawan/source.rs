//! The `semtech_udp` adapter's socket loop: datagrams from packet
//! forwarders in, ACKs back, uplinks through [`Dedup`] and then
//! [`uplink::process`], readings into the pipeline.
//!
//! PUSH_DATA is acknowledged on receipt once its header and gateway EUI
//! check out, before its JSON is read, as PROTOCOL.TXT §3 asks (the
//! forwarder never retransmits either way): the ACK says "datagram
//! received", not "frame accepted". A
//! forwarder's `stat` object becomes readings of a device whose id is the
//! gateway EUI (16 lower-case hex digits): `rxnb`, `rxok`, `rxfw`, `ackr`,
//! `dwnb`, `txnb`. Everything refused is counted by reason and logged
//! (rate-limited) with the gateway EUI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gateway_core::component::{AdapterFuture, AdapterStats};
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{
    Adapter, AdapterContext, AdapterError, DeviceId, Ingress, MetricName, Reading, TimeSource,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::adr::Adr;
use super::class_a::{self, Queues};
use super::config::{LorawanDevice, Network, OtaaDevice, SemtechUdpConfig};
use super::dedup::{Dedup, Offer, Reception, Uplink};
use super::downlink::{self, Links};
use super::downlink_feed::{self, FeedItem};
use super::fcnt::FcntStore;
use super::otaa::{self, Joins};
use super::semtech::{self, Datagram, GatewayEui, PushData, Stat};
use super::uplink::{self, Accepted, Devices};

/// Largest datagram read: lora_pkt_fwd's buffer is 4096 bytes; one more
/// tells a truncated datagram apart.
const MAX_DATAGRAM: usize = 65_536;
/// Frames awaiting their de-duplication window at once. This caps the
/// sustained rate at `MAX_PENDING / dedup_window`: 4096 held a 200 ms window
/// to 20 000 uplinks/s, and the benchmark's burst lost four frames in five
/// to it. 32 768 allows 160 000/s (a site's forwarders carry a few hundred
/// at most); a full table is about 5 MB (frame bytes, receptions).
const MAX_PENDING: usize = 32_768;

/// A runnable `semtech_udp` adapter.
pub struct SemtechUdpSource {
    config: SemtechUdpConfig,
    devices: Vec<LorawanDevice>,
    otaa: Vec<OtaaDevice>,
    network: Network,
    state_dir: PathBuf,
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
            serve(socket, self.config, devices, joins, store, ctx).await
        })
    }
}

/// Serves on a bound socket until `ctx.shutdown`; frames still in their
/// de-duplication window are processed before it returns.
///
/// Two tasks: a receiver that only reads datagrams, parses them and sends
/// the ACKs, and this one, which checks frames and writes the frame
/// counters. A counter write is an fsync, milliseconds long; done in the
/// receive loop it left the socket unread meanwhile, and a burst of
/// forwarders overflowed the kernel's receive buffer (a 2-core bench lost
/// nine datagrams in ten). Now a stalled write only lengthens the queue
/// between the two, whose overflow is counted (`overloaded`).
///
/// # Errors
/// [`AdapterError::PipelineClosed`] when the pipeline stops first.
pub async fn serve(
    socket: UdpSocket,
    config: SemtechUdpConfig,
    devices: Devices,
    joins: Joins,
    store: FcntStore,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    if let Ok(addr) = socket.local_addr() {
        info!(adapter = %ctx.name, %addr, "Semtech UDP server listening.");
    }
    let socket = Arc::new(socket);
    let links = Arc::new(Mutex::new(Links::default()));
    let (tx, mut rx) = mpsc::channel(QUEUE);
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
            stop: stop.clone(),
        },
        tx,
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
        devices,
        joins,
        store,
        socket,
        links,
        token: 0,
        queues: Queues::default(),
        adr: Adr::default(),
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
    let result = server
        .process(&mut rx, feed.as_mut().map(|(rx, _)| rx))
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

/// Datagrams parsed and acknowledged, waiting for their frames to be
/// checked: about a second of a busy site, a few MB at most.
const QUEUE: usize = 16_384;

/// Reads per wake-up before yielding, so one busy socket cannot starve the
/// other tasks on this worker.
const READS_PER_WAKE: usize = 256;

struct ReceiverContext {
    name: String,
    stats: AdapterStats,
    telemetry: gateway_core::telemetry::Telemetry,
    /// Written on PULL_DATA, read by the processor to send downlinks.
    links: Arc<Mutex<Links>>,
    stop: CancellationToken,
}

/// The receive loop: ACKs at once, PUSH_DATA on to the processor. Ends on
/// `stop`; dropping `tx` then tells the processor to finish.
async fn receive(
    socket: Arc<UdpSocket>,
    allowed: Vec<GatewayEui>,
    ctx: ReceiverContext,
    tx: mpsc::Sender<Pushed>,
) {
    let throttle = LogThrottle::default();
    let report = |kind: &str, gateway: &str, detail: &str| {
        ctx.stats.error(kind);
        if let Some(suppressed) = throttle.allow(kind) {
            warn!(adapter = %ctx.name, gateway, error_type = kind, detail, suppressed, "Dropping LoRaWAN input.");
        }
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let first = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let mut next = Some(first);
        let mut reads = 0;
        // Take what else is already queued without going back to the
        // reactor: one wake-up per burst, not per datagram.
        while let Some(r) = next.take() {
            match r {
                Ok((n, peer)) => {
                    ctx.stats.received.inc();
                    let (reply, push, event) = datagram(&buf[..n], peer, &allowed, &report);
                    if let Some(event) = event {
                        downlink_event(event, peer, &socket, &ctx, &throttle);
                    }
                    if let Some(reply) = reply {
                        match socket.try_send_to(&reply, peer) {
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                if let Err(e) = socket.send_to(&reply, peer).await {
                                    report("send", &peer.to_string(), &e.to_string());
                                }
                            }
                            Err(e) => report("send", &peer.to_string(), &e.to_string()),
                        }
                    }
                    if let Some(pushed) = push {
                        match tx.try_send(pushed) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(p)) => report(
                                "overloaded",
                                &p.gateway.to_string(),
                                "frames arrive faster than they can be checked and their counters stored",
                            ),
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => report("recv", "", &e.to_string()),
            }
            reads += 1;
            if reads < READS_PER_WAKE {
                next = Some(socket.try_recv_from(&mut buf))
                    .filter(|r| !matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
            }
        }
        if reads >= READS_PER_WAKE {
            tokio::task::yield_now().await;
        }
    }
}

/// One datagram: the ACK to send, if any, and a PUSH_DATA's body to pass
/// on. PUSH_DATA is acknowledged on receipt, before its JSON is parsed, as
/// PROTOCOL.TXT §3 asks ("acknowledge immediately all the PUSH_DATA packets
/// received"): the ACK feeds the forwarder's `ackr` statistic and is never
/// a promise about the frames inside. The parse happens in the processor,
/// so this loop stays a receive and a send.
fn datagram(
    bytes: &[u8],
    peer: SocketAddr,
    allowed: &[GatewayEui],
    report: &impl Fn(&str, &str, &str),
) -> (Option<[u8; 4]>, Option<Pushed>, Option<DownlinkEvent>) {
    if bytes.len() == MAX_DATAGRAM {
        report("truncated", &peer.to_string(), "datagram fills the buffer");
        return (None, None, None);
    }
    let envelope = match semtech::envelope(bytes) {
        Ok(e) => e,
        Err(e) => {
            report(e.kind(), &peer.to_string(), &e.to_string());
            return (None, None, None);
        }
    };
    let gateway = envelope.gateway;
    if !allowed.is_empty() && !allowed.contains(&gateway) {
        report(
            "unknown_gateway",
            &gateway.to_string(),
            &format!("not in `gateways` (from {peer})"),
        );
        return (None, None, None);
    }
    if envelope.is_push_data() {
        let pushed = Pushed {
            gateway,
            peer,
            body: envelope.body.to_vec(),
        };
        return (Some(semtech::push_ack(envelope.header)), Some(pushed), None);
    }
    match semtech::parse(bytes) {
        Ok(Datagram::PullData { header, .. }) => (
            Some(semtech::pull_ack(header)),
            None,
            Some(DownlinkEvent::Pulled {
                gateway,
                version: header.version,
            }),
        ),
        Ok(Datagram::TxAck { header, error, .. }) => (
            None,
            None,
            Some(DownlinkEvent::TxAck {
                gateway,
                token: header.token,
                error: error.filter(|e| e != "NONE" && !e.is_empty()),
            }),
        ),
        Ok(Datagram::PushData { .. }) => (None, None, None),
        Err(e) => {
            report(e.kind(), &peer.to_string(), &e.to_string());
            (None, None, None)
        }
    }
}

/// What a datagram says about the downlink path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DownlinkEvent {
    /// A PULL_DATA: the forwarder can be sent PULL_RESP at its address.
    Pulled { gateway: GatewayEui, version: u8 },
    /// A TX_ACK, with the forwarder's error if the downlink was not sent.
    TxAck {
        gateway: GatewayEui,
        /// The PULL_RESP's token, echoed.
        token: [u8; 2],
        error: Option<String>,
    },
}

fn downlink_event(
    event: DownlinkEvent,
    peer: SocketAddr,
    socket: &UdpSocket,
    ctx: &ReceiverContext,
    throttle: &LogThrottle,
) {
    let adapter = ctx.name.as_str();
    match event {
        DownlinkEvent::Pulled { gateway, version } => ctx
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pulled(gateway, peer, version, Instant::now()),
        DownlinkEvent::TxAck { error: None, .. } => ctx
            .telemetry
            .counter(
                "edge_gateway_lorawan_downlinks_acked_total",
                &[("adapter", adapter)],
            )
            .inc(),
        DownlinkEvent::TxAck {
            gateway,
            token,
            error: Some(error),
        } => {
            let reason = downlink::tx_ack_reason(&error);
            let fallback = downlink::retry_in_rx2(reason)
                .then(|| {
                    ctx.links
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take_fallback(gateway, token, Instant::now())
                })
                .flatten();
            if let Some(f) = fallback {
                // Non-blocking: the receive loop never waits on a send.
                match socket.try_send_to(&f.datagram, f.addr) {
                    Ok(_) => ctx
                        .telemetry
                        .counter(
                            "edge_gateway_lorawan_downlink_rx2_retries_total",
                            &[("adapter", adapter)],
                        )
                        .inc(),
                    Err(e) => ctx.stats.error(&format!("downlink_send_{}", e.kind())),
                }
            }
            ctx.telemetry
                .counter(
                    "edge_gateway_lorawan_tx_ack_errors_total",
                    &[("adapter", adapter), ("reason", reason)],
                )
                .inc();
            ctx.stats.error(&format!("tx_ack_{reason}"));
            if let Some(suppressed) = throttle.allow(reason) {
                warn!(adapter, gateway = %gateway, error = %error, suppressed, "The forwarder did not send a downlink.");
            }
        }
    }
}

/// A PUSH_DATA acknowledged and waiting for its JSON to be read.
struct Pushed {
    gateway: GatewayEui,
    peer: SocketAddr,
    body: Vec<u8>,
}

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
    adr: Adr,
    dedup: Dedup,
    stats: AdapterStats,
    throttle: LogThrottle,
    ctx: AdapterContext,
}

impl Server {
    /// Checks the frames the receiver passes on until it stops, then those
    /// still in their de-duplication window.
    async fn process(
        &mut self,
        rx: &mut mpsc::Receiver<Pushed>,
        mut feed: Option<&mut mpsc::Receiver<FeedItem>>,
    ) -> Result<(), AdapterError> {
        // One timer, moved when the earliest deadline changes: a new one
        // per message re-registered it with the timer wheel every time.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = self.dedup.next_deadline();
            if deadline != armed {
                if let Some(d) = deadline {
                    timer.as_mut().reset(d);
                }
                armed = deadline;
            }
            tokio::select! {
                biased;
                _ = &mut timer, if armed.is_some() => {
                    // Everything due now goes in one batch: one fsync of the
                    // counters for all of them, so a burst (or uplinks that
                    // came due during the last write) does not queue behind
                    // one disk write each.
                    armed = None;
                    let mut due = Vec::new();
                    while let Some(up) = self.dedup.pop_due(Instant::now()) {
                        due.push(up);
                    }
                    self.finish(due).await?;
                }
                item = next_feed_item(&mut feed) => match item {
                    Some(item) => self.queue_downlink(item),
                    None => feed = None,
                },
                push = rx.recv() => match push {
                    Some(pushed) => match semtech::push_data(&pushed.body) {
                        Ok(data) => self.push_data(pushed.gateway, data).await?,
                        Err(e) => self.report(e.kind(), &pushed.peer.to_string(), &e.to_string()),
                    },
                    None => break,
                },
            }
        }
        let waiting = self.dedup.drain();
        self.finish(waiting).await
    }

    async fn push_data(&mut self, gateway: GatewayEui, data: PushData) -> Result<(), AdapterError> {
        let eui = gateway.to_string();
        match data.stat {
            Some(Ok(stat)) => self.gateway_stats(gateway, &stat).await?,
            Some(Err(e)) => self.report(&format!("stat_{}", e.kind()), &eui, &e.to_string()),
            None => {}
        }
        for rx in data.rxpk {
            let rx = match rx {
                Ok(rx) => rx,
                Err(e) => {
                    self.report(e.kind(), &eui, &e.to_string());
                    continue;
                }
            };
            if !rx.crc_ok() {
                let kind = if rx.stat == -1 { "crc_error" } else { "no_crc" };
                self.report(kind, &eui, &format!("rxpk stat {}", rx.stat));
                continue;
            }
            let reception = Reception {
                gateway,
                rssi: rx.best_rssi(),
                snr: rx.best_snr(),
                tmst: rx.tmst,
                freq: rx.freq,
                datr: match &rx.datr {
                    Some(semtech::DataRate::Lora(d)) => Some(d.clone()),
                    _ => None,
                },
                rfch: rx.rfch,
            };
            let now = self.ctx.clock.now();
            match self.dedup.offer(&rx.data, reception, now, Instant::now()) {
                Offer::New => {}
                Offer::Duplicate => self.duplicates.inc(),
                Offer::Full => self.report("dedup_full", &eui, "too many frames pending"),
            }
        }
        Ok(())
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

    /// Processes uplinks whose de-duplication windows closed.
    async fn finish(&mut self, due: Vec<Uplink>) -> Result<(), AdapterError> {
        let (joins, due): (Vec<Uplink>, Vec<Uplink>) = due
            .into_iter()
            .partition(|up| otaa::is_join_request(&up.phy));
        for up in &joins {
            self.join(up).await;
        }
        if due.is_empty() {
            return Ok(());
        }
        let results = uplink::process_batch(&due, &self.devices, &mut self.store);
        for (up, result) in due.iter().zip(results) {
            match result {
                Ok(mut accepted) => {
                    let settled = self.answer(up, &accepted).await;
                    // Reported upstream as readings of the device.
                    let network = class_a::dev_status_readings(&accepted.frame)
                        .into_iter()
                        .chain(settled.map(|c| (c.reading(), 1.0)))
                        .filter_map(|(metric, value)| {
                            let metric = MetricName::new(metric).ok()?;
                            let device = accepted.device.clone();
                            Reading::new(device, metric, value, up.received, TimeSource::Arrival)
                                .ok()
                        })
                        .collect::<Vec<_>>();
                    accepted.readings.extend(network);
                    self.accepted(up, accepted).await?;
                }
                Err(e) => self.report(e.kind(), &gateway_list(up), &e.to_string()),
            }
        }
        Ok(())
    }

    async fn accepted(&self, up: &Uplink, accepted: Accepted) -> Result<(), AdapterError> {
        let t = &self.ctx.telemetry;
        let adapter = self.ctx.name.as_str();
        self.uplinks.inc();
        for cmd in &accepted.frame.mac_commands {
            t.counter(
                "edge_gateway_lorawan_mac_commands_total",
                &[("adapter", adapter), ("command", cmd.name)],
            )
            .inc();
        }
        if accepted.reset {
            t.counter(
                "edge_gateway_lorawan_fcnt_resets_total",
                &[("adapter", adapter)],
            )
            .inc();
            warn!(adapter, device = %accepted.device, fcnt = accepted.fcnt, gateway = %gateway_list(up), "Frame counter went back: accepted as a device restart (fcnt_reset = \"accept\").");
        }
        if let Some(e) = &accepted.codec_error {
            self.report(
                &format!("codec_{}", e.kind()),
                &gateway_list(up),
                &format!("device {}: {e}", accepted.device),
            );
        }
        debug!(adapter, device = %accepted.device, fcnt = accepted.fcnt, gateway = %gateway_list(up), rssi = ?up.rssi, snr = ?up.snr, readings = accepted.readings.len(), "Uplink accepted.");
        self.send(accepted.readings).await
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
        self.stats.error(kind);
        if let Some(suppressed) = self.throttle.allow(kind) {
            warn!(adapter = %self.ctx.name, gateway, error_type = kind, detail, suppressed, "Dropping LoRaWAN input.");
        }
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
    up.gateways
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const EUI: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1];

    fn with_header(identifier: u8, body: &[u8]) -> Vec<u8> {
        let mut d = vec![2, 0x12, 0x34, identifier];
        d.extend_from_slice(&EUI);
        d.extend_from_slice(body);
        d
    }

    /// Runs `datagram` and returns its result and the error kinds reported.
    fn handle(
        bytes: &[u8],
        allowed: &[GatewayEui],
    ) -> (Option<[u8; 4]>, Option<Pushed>, Vec<String>) {
        let reported = RefCell::new(Vec::new());
        let report = |kind: &str, _: &str, _: &str| reported.borrow_mut().push(kind.to_string());
        let peer: SocketAddr = "127.0.0.1:1700".parse().unwrap();
        let (ack, pushed, _) = datagram(bytes, peer, allowed, &report);
        (ack, pushed, reported.into_inner())
    }

    #[test]
    fn push_data_is_acknowledged_on_receipt_and_its_json_read_later() {
        // Not JSON at all: still acknowledged (PROTOCOL.TXT §3), and the
        // body is passed on, where the processor counts it as `invalid_json`.
        let (ack, pushed, reported) = handle(&with_header(0x00, b"{not json"), &[]);
        assert_eq!(ack, Some([2, 0x12, 0x34, 0x01]));
        let pushed = pushed.unwrap();
        assert_eq!(
            (pushed.gateway, pushed.body.as_slice()),
            (GatewayEui(EUI), &b"{not json"[..])
        );
        assert!(reported.is_empty());
        let e = semtech::push_data(&pushed.body).unwrap_err();
        assert_eq!(e.kind(), "invalid_json");
    }

    #[test]
    fn pull_data_gets_its_ack_and_nothing_is_passed_on() {
        let (ack, pushed, _) = handle(&with_header(0x02, b""), &[GatewayEui(EUI)]);
        assert_eq!(ack, Some([2, 0x12, 0x34, 0x04]));
        assert!(pushed.is_none());
    }

    #[test]
    fn pull_data_and_tx_ack_become_downlink_events() {
        let peer: SocketAddr = "127.0.0.1:1700".parse().unwrap();
        let report = |_: &str, _: &str, _: &str| {};
        let (_, _, event) = datagram(&with_header(0x02, b""), peer, &[], &report);
        let pulled = DownlinkEvent::Pulled {
            gateway: GatewayEui(EUI),
            version: 2,
        };
        assert_eq!(event, Some(pulled));
        let body = br#"{"txpk_ack":{"error":"TOO_LATE"}}"#;
        let (ack, _, event) = datagram(&with_header(0x05, body), peer, &[], &report);
        assert!(ack.is_none(), "TX_ACK is not acknowledged");
        let error = Some("TOO_LATE".to_string());
        let tx_ack = DownlinkEvent::TxAck {
            gateway: GatewayEui(EUI),
            token: [0x12, 0x34],
            error,
        };
        assert_eq!(event, Some(tx_ack));
        let body = br#"{"txpk_ack":{"error":"NONE"}}"#;
        let (_, _, event) = datagram(&with_header(0x05, body), peer, &[], &report);
        let ok = DownlinkEvent::TxAck {
            gateway: GatewayEui(EUI),
            token: [0x12, 0x34],
            error: None,
        };
        assert_eq!(event, Some(ok));
    }

    #[test]
    fn unknown_forwarders_and_broken_headers_get_no_ack() {
        let other = GatewayEui([1; 8]);
        let (ack, pushed, reported) = handle(&with_header(0x00, b"{}"), &[other]);
        assert!(ack.is_none() && pushed.is_none());
        assert_eq!(reported, ["unknown_gateway"]);
        let (ack, pushed, reported) = handle(&[2, 0, 0, 0, 1, 2], &[]);
        assert!(ack.is_none() && pushed.is_none());
        assert_eq!(reported.len(), 1, "{reported:?}");
        let (ack, _, reported) = handle(&with_header(0x01, b""), &[]);
        assert!(
            ack.is_none(),
            "a PUSH_ACK sent to us is the wrong direction"
        );
        assert_eq!(reported.len(), 1);
    }
}
