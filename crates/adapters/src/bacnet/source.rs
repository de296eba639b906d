//! The `bacnet` adapter: one client socket, one task per device
//! (`device`), and this loop between them, which routes what devices send
//! unasked: an I-Am to the task of its instance, a COV notification the
//! client found ours (`cov`) to the task of its device, and a foreign one
//! counted by why (`cov_foreign`). I-Ams from instances no device is
//! configured for are counted and dropped, whatever their number (the
//! flood a global Who-Is draws on a large site keeps nothing in memory).
//! Foreign-device registration with a BBMD is renewed here at half its
//! time-to-live. Commands from the cloud ([`super::writer`]) use the same
//! client, and what each device task learnt (its address, its names).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gateway_core::command::CommandTarget;
use gateway_core::component::AdapterFuture;
use gateway_core::{Adapter, AdapterContext, AdapterError, DeviceId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::client::{Client, Event};
use super::config::BacnetConfig;
use super::cov;
use super::device::{DeviceEvent, DeviceTask};
use super::devices::BacnetDevice;
use super::writer::{BacnetTarget, DeviceLink};

/// I-Ams from devices the adapter does not read.
pub const BACNET_IAM_IGNORED: &str = "edge_gateway_bacnet_i_am_ignored_total";
/// 1 while the BBMD accepts the gateway as a foreign device.
pub const BACNET_FDR_REGISTERED: &str = "edge_gateway_bacnet_fdr_registered";
/// COV notifications under one of our process ids that were not the
/// subscription's, by `reason`: `address` (not from the subscribed
/// device's address), `device` (another device instance), `object`
/// (another object). Each is also an adapter error `cov_foreign`.
pub const BACNET_COV_FOREIGN: &str = "edge_gateway_bacnet_cov_foreign_total";

/// Events waiting for the router; beyond, they are dropped (the client
/// never waits on a flood).
const EVENT_QUEUE: usize = 1024;
/// Events waiting for one device task.
const DEVICE_QUEUE: usize = 64;

pub struct BacnetSource {
    config: BacnetConfig,
    devices: Vec<BacnetDevice>,
    /// Each device's address and names, as its task learns them.
    links: HashMap<DeviceId, Arc<DeviceLink>>,
    /// The client, for the command target, once `run` has bound it.
    client: Arc<OnceLock<Client>>,
}

impl BacnetSource {
    pub fn new(config: BacnetConfig, devices: Vec<BacnetDevice>) -> Self {
        let links = devices
            .iter()
            .map(|d| (d.id.clone(), Arc::default()))
            .collect();
        Self {
            config,
            devices,
            links,
            client: Arc::default(),
        }
    }
}

impl Adapter for BacnetSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(*self, ctx))
    }

    fn command_target(&mut self) -> Option<Arc<dyn CommandTarget>> {
        let target = BacnetTarget::new(&self.devices, &self.links, self.client.clone())?;
        Some(target)
    }
}

async fn run(source: BacnetSource, ctx: AdapterContext) -> Result<(), AdapterError> {
    let BacnetSource {
        config,
        devices,
        links,
        client: shared_client,
    } = source;
    let (tx, mut events) = mpsc::channel(EVENT_QUEUE);
    let stop = ctx.shutdown.child_token();
    let client = Client::start(
        config.bind,
        config.timeout,
        config.retries,
        tx,
        stop.clone(),
    )
    .await
    .map_err(|source| AdapterError::Bind {
        addr: config.bind.to_string(),
        source,
    })?;
    // Set once per run: a restarted adapter is a new BacnetSource.
    let _ = shared_client.set(client.clone());
    if let Some(bbmd) = config.bbmd {
        client.cov().trust_forwarder(bbmd);
    }
    let local = client
        .local_addr()
        .map_or_else(|_| config.bind.to_string(), |a| a.to_string());
    info!(adapter = %ctx.name, bind = %local, devices = devices.len(), "BACnet client listening.");
    let stats = ctx.stats();
    let ignored = ctx
        .telemetry
        .counter(BACNET_IAM_IGNORED, &[("adapter", ctx.name.as_str())]);
    let fdr = ctx
        .telemetry
        .gauge(BACNET_FDR_REGISTERED, &[("adapter", ctx.name.as_str())]);
    fdr.set(0.0);
    // What the client could not queue for this loop: told with the next
    // event it could.
    let overflow = ctx.telemetry.counter(
        gateway_core::component::ADAPTER_ERRORS,
        &[("adapter", ctx.name.as_str()), ("error_type", "overflow")],
    );
    let foreign = Foreign::new(&ctx);
    let mut by_instance: HashMap<u32, mpsc::Sender<DeviceEvent>> = HashMap::new();
    let mut tasks = JoinSet::new();
    for device in devices {
        let (dtx, drx) = mpsc::channel(DEVICE_QUEUE);
        by_instance.insert(device.instance, dtx);
        let link = links.get(&device.id).cloned().unwrap_or_default();
        let task = DeviceTask {
            config: config.clone(),
            link,
            device,
            client: client.clone(),
            events: drx,
        };
        tasks.spawn(task.run(ctx.clone()));
    }
    if by_instance.is_empty() {
        warn!(adapter = %ctx.name, "No [[bacnet.device]] on this adapter: nothing to read.");
    }
    // Registered at once, then at half the TTL (FAULTS.md: bacpypes
    // re-registers on a timer whatever the answer).
    let mut fdr_timer = tokio::time::interval(config.ttl / 2);
    let result = loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break Ok(()),
            done = tasks.join_next(), if !tasks.is_empty() => {
                if let Some(Ok(Err(e))) = done {
                    break Err(e);
                }
            }
            _ = fdr_timer.tick(), if config.bbmd.is_some() => {
                if let Some(bbmd) = config.bbmd {
                    client.register_foreign_device(bbmd, config.ttl).await;
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { break Ok(()) };
                route(ev, &by_instance, &foreign, &stats, &ignored, &fdr, &ctx.name);
                let lost = client.take_dropped();
                if lost > 0 {
                    overflow.add(lost);
                }
            }
        }
    };
    stop.cancel();
    tasks.shutdown().await;
    info!(adapter = %ctx.name, "Stopped.");
    result
}

/// Foreign notifications' counters, by reason, and their log line.
struct Foreign {
    counters: [gateway_core::telemetry::Counter; 3],
    throttle: gateway_core::telemetry::LogThrottle,
}

impl Foreign {
    fn new(ctx: &AdapterContext) -> Self {
        let of = |why: cov::Foreign| {
            ctx.telemetry.counter(
                BACNET_COV_FOREIGN,
                &[("adapter", ctx.name.as_str()), ("reason", why.label())],
            )
        };
        Self {
            counters: [
                of(cov::Foreign::Address),
                of(cov::Foreign::Device),
                of(cov::Foreign::Object),
            ],
            throttle: Default::default(),
        }
    }

    fn count(
        &self,
        from: std::net::SocketAddr,
        why: cov::Foreign,
        n: &super::services::CovNotification,
        stats: &gateway_core::AdapterStats,
        adapter: &str,
    ) {
        self.counters[why as usize].inc();
        let device = n.device.instance;
        gateway_core::refuse!(stats, self.throttle, "cov_foreign", per why.label();
            adapter, from = %from, reason = why.label(), device, object = %n.object, "A COV notification under one of the gateway's process ids that is not its subscription's (another address, device or object): dropped, not acknowledged.");
    }
}

fn route(
    ev: Event,
    by_instance: &HashMap<u32, mpsc::Sender<DeviceEvent>>,
    foreign: &Foreign,
    stats: &gateway_core::AdapterStats,
    ignored: &gateway_core::telemetry::Counter,
    fdr: &gateway_core::telemetry::Gauge,
    adapter: &str,
) {
    match ev {
        Event::IAm(from, i_am) => match by_instance.get(&i_am.device) {
            Some(tx) => {
                let _ = tx.try_send(DeviceEvent::IAm(from, i_am));
            }
            None => ignored.inc(),
        },
        Event::Cov(instance, n) => {
            // A device task that fell this far behind loses the
            // notification: counted, as the client's own overflow is (the
            // value comes back with the next change or poll).
            if let Some(tx) = by_instance.get(&instance) {
                if tx.try_send(DeviceEvent::Cov(n)).is_err() {
                    stats.error("overflow");
                }
            }
        }
        // A previous run's subscription, or none of ours: it lapses at
        // the device.
        Event::CovUnknown(_) => stats.error("cov_unknown"),
        Event::CovForeign(from, why, n) => foreign.count(from, why, &n, stats, adapter),
        Event::Registration(from, code) => {
            if code == 0 {
                fdr.set(1.0);
            } else {
                fdr.set(0.0);
                stats.error("fdr_nak");
                warn!(adapter, bbmd = %from, code, "The BBMD refused the foreign-device registration.");
            }
        }
        Event::Malformed(_) => stats.error("malformed"),
        Event::Stray => stats.error("late_answer"),
    }
}

/// How long to wait for the first I-Ams of a discovery.
pub const DISCOVER_WAIT: Duration = Duration::from_secs(3);
