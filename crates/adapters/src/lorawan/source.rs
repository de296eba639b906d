//! The `semtech_udp` adapter's socket loop: datagrams from packet
//! forwarders in, ACKs back, uplinks through [`Dedup`] and then
//! [`uplink::process`], readings into the pipeline.
//!
//! PUSH_DATA is acknowledged once it parsed (as the gateway bridge does;
//! the forwarder never retransmits either way), before its frames are
//! checked: the ACK says "datagram received", not "frame accepted". A
//! forwarder's `stat` object becomes readings of a device whose id is the
//! gateway EUI (16 lower-case hex digits): `rxnb`, `rxok`, `rxfw`, `ackr`,
//! `dwnb`, `txnb`. Everything refused is counted by reason and logged
//! (rate-limited) with the gateway EUI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gateway_core::component::{AdapterFuture, AdapterStats};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{
    Adapter, AdapterContext, AdapterError, DeviceId, Ingress, MetricName, Reading, TimeSource,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::config::{LorawanDevice, SemtechUdpConfig};
use super::dedup::{Dedup, Offer, Reception, Uplink};
use super::fcnt::FcntStore;
use super::semtech::{self, Datagram, GatewayEui, PushData, Stat};
use super::uplink::{self, Accepted, Devices};

/// Largest datagram read: lora_pkt_fwd's buffer is 4096 bytes; one more
/// tells a truncated datagram apart.
const MAX_DATAGRAM: usize = 65_536;
/// Frames awaiting their de-duplication window at once.
const MAX_PENDING: usize = 4096;

/// A runnable `semtech_udp` adapter.
pub struct SemtechUdpSource {
    config: SemtechUdpConfig,
    devices: Vec<LorawanDevice>,
    state_dir: PathBuf,
}

impl SemtechUdpSource {
    /// The adapter for `config`, verifying frames of `devices` and keeping
    /// their counters in `state_dir`; it binds when run.
    pub fn new(config: SemtechUdpConfig, devices: Vec<LorawanDevice>, state_dir: &Path) -> Self {
        Self {
            config,
            devices,
            state_dir: state_dir.to_path_buf(),
        }
    }
}

impl Adapter for SemtechUdpSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(async move {
            let socket =
                UdpSocket::bind(self.config.bind)
                    .await
                    .map_err(|source| AdapterError::Bind {
                        addr: self.config.bind.to_string(),
                        source,
                    })?;
            if let Err(e) = std::fs::create_dir_all(&self.state_dir) {
                error!(adapter = %ctx.name, state_dir = %self.state_dir.display(), error = %e, "Cannot use the state directory: LoRaWAN uplinks will be refused, as their frame counters cannot be stored.");
            }
            let (store, problem) = FcntStore::open(&self.state_dir);
            if let Some(e) = problem {
                ctx.stats().error("fcnt_store");
                error!(adapter = %ctx.name, error = %e, "LoRaWAN frame counters of the last run are lost: frames sent before the restart could be accepted again until each device sends a new one.");
            }
            serve(socket, self.config, Devices::new(self.devices), store, ctx).await
        })
    }
}

/// Serves on a bound socket until `ctx.shutdown`; frames still in their
/// de-duplication window are processed before it returns.
///
/// # Errors
/// [`AdapterError::PipelineClosed`] when the pipeline stops first.
pub async fn serve(
    socket: UdpSocket,
    config: SemtechUdpConfig,
    devices: Devices,
    store: FcntStore,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    if let Ok(addr) = socket.local_addr() {
        info!(adapter = %ctx.name, %addr, "Semtech UDP server listening.");
    }
    let mut server = Server {
        stats: ctx.stats(),
        throttle: LogThrottle::default(),
        dedup: Dedup::new(config.dedup_window, MAX_PENDING),
        config,
        devices,
        store,
        ctx,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let deadline = server.dedup.next_deadline();
        tokio::select! {
            biased;
            _ = server.ctx.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                // Everything due now goes in one batch: one fsync of the
                // counters for all of them, so a burst (or uplinks that
                // came due during the last write) does not queue behind
                // one disk write each.
                let mut due = Vec::new();
                while let Some(up) = server.dedup.pop_due(Instant::now()) {
                    due.push(up);
                }
                server.finish(due).await?;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    if let Some(reply) = server.datagram(&buf[..n], peer).await? {
                        if let Err(e) = socket.send_to(&reply, peer).await {
                            server.report("send", &peer.to_string(), &e.to_string());
                        }
                    }
                }
                Err(e) => server.report("recv", "", &e.to_string()),
            },
        }
    }
    let waiting = server.dedup.drain();
    server.finish(waiting).await?;
    info!(adapter = %server.ctx.name, "Stopped.");
    Ok(())
}

struct Server {
    config: SemtechUdpConfig,
    devices: Devices,
    store: FcntStore,
    dedup: Dedup,
    stats: AdapterStats,
    throttle: LogThrottle,
    ctx: AdapterContext,
}

impl Server {
    /// Handles one datagram; returns the ACK to send, if any.
    async fn datagram(
        &mut self,
        bytes: &[u8],
        peer: SocketAddr,
    ) -> Result<Option<[u8; 4]>, AdapterError> {
        self.stats.received.inc();
        if bytes.len() == MAX_DATAGRAM {
            self.report("truncated", &peer.to_string(), "datagram fills the buffer");
            return Ok(None);
        }
        let datagram = match semtech::parse(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.report(e.kind(), &peer.to_string(), &e.to_string());
                return Ok(None);
            }
        };
        let gateway = match &datagram {
            Datagram::PushData { gateway, .. }
            | Datagram::PullData { gateway, .. }
            | Datagram::TxAck { gateway, .. } => *gateway,
        };
        if !self.config.gateways.is_empty() && !self.config.gateways.contains(&gateway) {
            self.report(
                "unknown_gateway",
                &gateway.to_string(),
                &format!("not in `gateways` (from {peer})"),
            );
            return Ok(None);
        }
        Ok(match datagram {
            Datagram::PullData { header, .. } => Some(semtech::pull_ack(header)),
            Datagram::TxAck { error, .. } => {
                if let Some(e) = error.filter(|e| e != "NONE") {
                    debug!(adapter = %self.ctx.name, %gateway, error = %e, "Downlink not sent by the forwarder.");
                }
                None
            }
            Datagram::PushData { header, data, .. } => {
                self.push_data(gateway, data).await?;
                Some(semtech::push_ack(header))
            }
        })
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
            };
            let now = self.ctx.clock.now();
            match self.dedup.offer(&rx.data, reception, now, Instant::now()) {
                Offer::New => {}
                Offer::Duplicate => self
                    .ctx
                    .telemetry
                    .counter(
                        "edge_gateway_lorawan_duplicates_total",
                        &[("adapter", &self.ctx.name)],
                    )
                    .inc(),
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
                Reading::new(device.clone(), metric, v?, now, TimeSource::Arrival).ok()
            })
            .collect();
        self.send(readings).await
    }

    /// Processes uplinks whose de-duplication windows closed.
    async fn finish(&mut self, due: Vec<Uplink>) -> Result<(), AdapterError> {
        if due.is_empty() {
            return Ok(());
        }
        let results = uplink::process_batch(&due, &self.devices, &mut self.store);
        for (up, result) in due.iter().zip(results) {
            let gateways = up
                .gateways
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            match result {
                Ok(accepted) => self.accepted(up, accepted, &gateways).await?,
                Err(e) => self.report(e.kind(), &gateways, &e.to_string()),
            }
        }
        Ok(())
    }

    async fn accepted(
        &self,
        up: &Uplink,
        accepted: Accepted,
        gateways: &str,
    ) -> Result<(), AdapterError> {
        let t = &self.ctx.telemetry;
        let adapter = self.ctx.name.as_str();
        t.counter(
            "edge_gateway_lorawan_uplinks_total",
            &[("adapter", adapter)],
        )
        .inc();
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
            warn!(adapter, device = %accepted.device, fcnt = accepted.fcnt, gateway = %gateways, "Frame counter went back: accepted as a device restart (fcnt_reset = \"accept\").");
        }
        if let Some(e) = &accepted.codec_error {
            self.report(
                &format!("codec_{}", e.kind()),
                gateways,
                &format!("device {}: {e}", accepted.device),
            );
        }
        debug!(adapter, device = %accepted.device, fcnt = accepted.fcnt, gateway = %gateways, rssi = ?up.rssi, snr = ?up.snr, readings = accepted.readings.len(), "Uplink accepted.");
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
