//! The demo's embedded MQTT broker (rumqttd), in memory, on loopback.
//!
//! The demo plays both brokers of a real installation, the local one the
//! sensors publish to and the cloud one aggregates go to, with this single
//! broker: data flows `sensors/…` → gateway → `building/demo/…`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a freshly started broker gets to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between connection attempts while waiting for the listener.
const READY_POLL: Duration = Duration::from_millis(20);
/// Another process may take the port between our probe and rumqttd's bind;
/// a fresh port is tried this many times in all.
const ATTEMPTS: usize = 3;

/// A running embedded broker.
///
/// rumqttd 0.20 has no way to stop a broker: its threads run until the
/// process exits, which is when the demo is over anyway.
#[derive(Debug)]
pub struct EmbeddedBroker {
    port: u16,
    _thread: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port and waits until it accepts
    /// TCP connections.
    ///
    /// # Errors
    /// No free port, no thread, or a broker that never started listening.
    pub async fn start() -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            let port = free_port().context("finding a free loopback port")?;
            let thread = spawn(port)?;
            match wait_ready(port, &thread).await {
                Ok(()) => {
                    return Ok(Self {
                        port,
                        _thread: thread,
                    })
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
            .context("starting the embedded MQTT broker"))
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// rumqttd binds the address it is given and never reports the port it got,
/// so port 0 cannot be handed to it: ask the OS for a free port here.
fn free_port() -> std::io::Result<u16> {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(probe.local_addr()?.port())
}

fn config(port: u16) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        // Room for a large aggregate; the sensors' payloads are tiny.
        max_payload_size: 256 * 1024,
        // Above the forwarder's default max_inflight (100 + its status).
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        // Without this, subscribing to a filter nobody declared up front
        // delivers nothing.
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "demo-v4".into(),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            // Per-filter commit log in memory: 10 × 1 MiB at most.
            max_segment_size: 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    }
}

fn spawn(port: u16) -> anyhow::Result<JoinHandle<()>> {
    let config = config(port);
    std::thread::Builder::new()
        .name("demo-broker".into())
        .spawn(move || {
            // `start` only returns when every listener has died (a failed
            // bind among them); the thread ending is the signal `wait_ready`
            // watches for, so the result itself adds nothing.
            let _ = Broker::new(config).start();
        })
        .context("spawning the broker thread")
}

async fn wait_ready(port: u16, thread: &JoinHandle<()>) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if thread.is_finished() {
            bail!("the broker stopped at once (is port {port} taken?)");
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the broker did not listen on port {port} within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(READY_POLL).await;
    }
}
