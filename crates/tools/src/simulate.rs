//! `edge-gateway simulate`: a fleet of fake sensors publishing to a running
//! gateway's inputs, for demos, soak runs and benchmarks.
//!
//! Each message is one device's JSON object of readings (`{"temperature":
//! 21.4,"humidity":45.1}`), the shape both the MQTT adapter (`sensors/{device}`)
//! and the CoAP server (`POST /s/{device}`, Content-Format 50) read. The
//! total rate is paced against the clock from the start, so a slow moment is
//! caught up rather than lost; `--rate 0` sends as fast as possible.
//! LoRaWAN devices send compact_i16 frames instead (`lorawan.rs`), TCP
//! nodes an ESP32 + BME680's CSV lines (`tcp.rs`).

#[cfg(feature = "bacnet")]
mod bacnet;
#[cfg(feature = "lorawan")]
mod lorawan;
#[cfg(feature = "modbus")]
mod modbus;
#[cfg(feature = "lorawan")]
mod otaa;
mod tcp;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use gateway_core::config::{BrokerSection, BrokerUrl};
use mqtt_connect::ConnectionSettings;
use rumqttc::{AsyncClient, Event, Outgoing, QoS};
use tokio::net::UdpSocket;

/// CoAP Content-Format `application/json` (RFC 7252 §12.3), as its
/// one-byte option value.
const CONTENT_FORMAT_JSON: u8 = 50;
/// Pacing granularity: messages due are sent in bursts this far apart.
const TICK: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Mqtt,
    Coap,
    #[cfg(feature = "lorawan")]
    Lorawan,
    /// CSV lines of ESP32 + BME680 nodes to a `tcp_line` adapter.
    Tcp,
    /// A Modbus TCP server with --devices SDM120 energy meters (units 1,
    /// 2, ...) for a `modbus` adapter to poll [--target default
    /// 127.0.0.1:5020].
    #[cfg(feature = "modbus")]
    Modbus,
    /// BACnet/IP controllers (instances 1001, 1002, ... on ports
    /// --target, --target+1, ...) for a `bacnet` adapter to read
    /// [--target default 127.0.0.1:47809].
    #[cfg(feature = "bacnet")]
    Bacnet,
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// How the sensors talk to the gateway.
    #[arg(long, value_enum, default_value = "mqtt")]
    protocol: Protocol,
    /// Number of devices, named sim-00000, sim-00001, ...
    #[arg(long, default_value_t = 10)]
    devices: u32,
    /// Messages per second, all devices together; 0 sends as fast as possible.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Stop after this many messages (default: run until --duration or Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long ("30s", "5m").
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Metrics in every message, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "temperature,humidity")]
    metrics: Vec<String>,
    /// MQTT: the broker the gateway's MQTT adapter reads.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// MQTT: topic, with {device} filled in.
    #[arg(long, default_value = "sensors/{device}")]
    topic: String,
    /// MQTT: QoS 0 or 1.
    #[arg(long, default_value_t = 0)]
    qos: u8,
    /// CoAP: the gateway's CoAP server [default: 127.0.0.1:5683]. LoRaWAN:
    /// its semtech_udp adapter [default: 127.0.0.1:1700]. TCP: its
    /// tcp_line adapter [default: 127.0.0.1:8080]. Modbus and BACnet:
    /// where the simulated devices listen.
    #[arg(long)]
    target: Option<SocketAddr>,
    /// Seed of the readings' noise and of the LoRaWAN devices' session keys,
    /// so runs can be repeated.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// LoRaWAN: the first uplink's frame counter. The gateway remembers the
    /// last one per device: start above it when the fleet is played again
    /// against the same state directory.
    #[arg(long, default_value_t = 0)]
    fcnt_start: u32,
    /// LoRaWAN: print the `[[lorawan.device]]` tables of this fleet (for
    /// --devices and --seed) to add to gateway.toml, and exit.
    #[arg(long)]
    print_lorawan_config: bool,
    /// LoRaWAN: the devices join over the air first (join-request, the
    /// join-accept read from the gateway's PULL_RESP, session keys derived),
    /// then send their uplinks. Their DevEUIs and AppKeys come from --seed;
    /// --print-lorawan-config prints them.
    #[arg(long)]
    otaa: bool,
    /// TCP: put the device name first in each line (for `columns =
    /// ["device", ...]`); ESP32 + BME680 nodes send none and are named by
    /// their address.
    #[arg(long)]
    device_column: bool,
    /// TCP: read the adapter's `ok N` / `err N` answers (`ack = true`) and
    /// wait until every line is acknowledged.
    #[arg(long)]
    ack: bool,
}

/// Readings that drift plausibly: a per-device base plus a slow wave and noise.
struct Fleet {
    devices: Vec<String>,
    metrics: Vec<String>,
    rng: u64,
    step: u64,
}

impl Fleet {
    fn new(args: &SimulateArgs) -> Self {
        Self {
            devices: (0..args.devices).map(|i| format!("sim-{i:05}")).collect(),
            metrics: args.metrics.clone(),
            rng: args.seed.max(1),
            step: 0,
        }
    }

    /// xorshift64*: deterministic, no dependency, plenty for sensor noise.
    fn noise(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// The next device's values, one per metric, devices in turn:
    /// (device, how many messages it sent before, values).
    fn sample(&mut self) -> (usize, u64, Vec<f64>) {
        let n = self.devices.len().max(1);
        let device = (self.step % n as u64) as usize;
        let round = self.step / n as u64;
        self.step += 1;
        let values = (0..self.metrics.len())
            .map(|m| {
                let base = 20.0 + 5.0 * m as f64 + (device % 7) as f64;
                base + (round as f64 / 60.0).sin() + self.noise()
            })
            .collect();
        (device, round, values)
    }

    /// The next message: (device, JSON payload), devices in turn.
    fn next(&mut self) -> (usize, String) {
        let (device, _, values) = self.sample();
        let mut json = String::from("{");
        for (m, v) in values.iter().enumerate() {
            if m > 0 {
                json.push(',');
            }
            let _ = write!(json, "\"{}\":{:.2}", self.metrics[m], v);
        }
        json.push('}');
        (device, json)
    }
}

/// `edge-gateway simulate`: the fleet until its duration or count is
/// done; exit 1 with the reason when it could not run.
pub fn main(args: SimulateArgs) -> ExitCode {
    match crate::runtime().and_then(|rt| rt.block_on(run(args))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-gateway simulate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the simulation and prints what was sent.
///
/// # Errors
/// Bad arguments, or a peer that cannot be reached.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.devices == 0 || args.metrics.is_empty() {
        bail!("--devices and --metrics must not be empty");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be 0 (as fast as possible) or a positive number");
    }
    let fleet = Fleet::new(&args);
    if args.print_lorawan_config {
        #[cfg(feature = "lorawan")]
        if args.otaa {
            gateway_core::out!("{}", otaa::device_tables(&args, &fleet.devices));
        } else {
            gateway_core::out!("{}", lorawan::device_tables(&args, &fleet.devices));
        }
        #[cfg(not(feature = "lorawan"))]
        bail!("--print-lorawan-config: this edge-gateway is built without LoRaWAN");
        #[cfg(feature = "lorawan")]
        return Ok(());
    }
    if args.count.is_none() && args.duration.is_none() {
        eprintln!("simulate: running until Ctrl-C");
    }
    let target = |default: &str| match args.target {
        Some(t) => Ok(t),
        None => default.parse::<SocketAddr>().context("default --target"),
    };
    let started = Instant::now();
    let (sent, per_message) = match args.protocol {
        Protocol::Mqtt => (mqtt(&args, fleet).await?, args.metrics.len()),
        Protocol::Coap => (
            coap(&args, fleet, target("127.0.0.1:5683")?).await?,
            args.metrics.len(),
        ),
        #[cfg(feature = "lorawan")]
        Protocol::Lorawan => (
            lorawan::run(&args, fleet, target(lorawan::DEFAULT_TARGET)?).await?,
            lorawan::READINGS_PER_UPLINK,
        ),
        Protocol::Tcp => (
            tcp::run(&args, fleet, target(tcp::DEFAULT_TARGET)?).await?,
            args.metrics.len(),
        ),
        // Polled, not sending: it tells what it answered.
        #[cfg(feature = "modbus")]
        Protocol::Modbus => {
            let served = modbus::run(&args, target(modbus::DEFAULT_TARGET)?).await?;
            gateway_core::outln!(
                "simulate: answered {served} Modbus requests in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        #[cfg(feature = "bacnet")]
        Protocol::Bacnet => {
            let served = bacnet::run(&args, target(bacnet::DEFAULT_TARGET)?).await?;
            gateway_core::outln!(
                "simulate: answered {served} BACnet requests in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
    };
    let secs = started.elapsed().as_secs_f64();
    gateway_core::outln!(
        "simulate: sent {sent} messages ({} readings) from {} devices in {secs:.2} s: {:.0} messages/s",
        sent * per_message as u64,
        args.devices,
        sent as f64 / secs.max(1e-9),
    );
    Ok(())
}

/// How many messages should have been sent by now; `None` when done.
struct Pace {
    started: Instant,
    rate: f64,
    count: Option<u64>,
    duration: Option<Duration>,
}

impl Pace {
    fn due(&self, sent: u64) -> Option<u64> {
        let elapsed = self.started.elapsed();
        if self.count.is_some_and(|c| sent >= c) || self.duration.is_some_and(|d| elapsed >= d) {
            return None;
        }
        let target = if self.rate == 0.0 {
            sent + 1000
        } else {
            // Saturating: --rate 1e308 made the product u64::MAX, and the
            // + 1 overflowed (a panic in the debug build).
            ((elapsed.as_secs_f64() * self.rate) as u64).saturating_add(1)
        };
        let target = self.count.map_or(target, |c| target.min(c));
        Some(target.saturating_sub(sent))
    }
}

fn pace(args: &SimulateArgs) -> Pace {
    Pace {
        started: Instant::now(),
        rate: args.rate,
        count: args.count,
        duration: args.duration,
    }
}

async fn mqtt(args: &SimulateArgs, mut fleet: Fleet) -> anyhow::Result<u64> {
    let url = BrokerUrl::parse(&args.broker).map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        q => bail!("--qos must be 0 or 1, got {q}"),
    };
    let settings = ConnectionSettings::new(
        &BrokerSection::from_url(url),
        format!("edge-gateway-simulate-{}", std::process::id()),
    );
    let options = settings.mqtt_options(None).context("--broker")?;
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    // The event loop does the writing. Our DISCONNECT is reported when it is
    // queued, not written: keep polling until the broker closes the
    // connection, so everything before it is on the wire.
    let io = tokio::spawn(async move {
        let mut disconnecting = false;
        loop {
            let polled = if disconnecting {
                match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                }
            } else {
                eventloop.poll().await
            };
            match polled {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnecting = true,
                Ok(_) => {}
                Err(_) if disconnecting => return Ok(()),
                Err(e) => return Err(anyhow::anyhow!("MQTT broker: {e}")),
            }
        }
    });
    let topics: Vec<String> = fleet
        .devices
        .iter()
        .map(|d| args.topic.replace("{device}", d))
        .collect();
    // A publish to a filter is refused by the client at once, before the
    // event loop: the loop below then spun for ever without a message.
    if let Some(bad) = topics
        .iter()
        .find(|t| t.is_empty() || t.contains(['+', '#', '\0']))
    {
        anyhow::bail!(
            "--topic: \"{bad}\" is not a topic one can publish to (no + or #, not empty)"
        );
    }
    let pace = pace(args);
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(TICK);
    while let Some(due) = pace.due(sent) {
        for _ in 0..due {
            let (device, payload) = fleet.next();
            if let Err(e) = client
                .publish(topics[device].clone(), qos, false, payload)
                .await
            {
                // The event loop ended (its error says why), or the client
                // refused the message: nothing more can be sent.
                if !io.is_finished() {
                    let _ = client.disconnect().await;
                    anyhow::bail!("publishing to {}: {e}", topics[device]);
                }
                break;
            }
            sent += 1;
        }
        if io.is_finished() {
            break;
        }
        if pace.rate > 0.0 {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    let _ = client.disconnect().await;
    io.await.context("MQTT event loop")??;
    Ok(sent)
}

async fn coap(args: &SimulateArgs, mut fleet: Fleet, target: SocketAddr) -> anyhow::Result<u64> {
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .context("local address")?;
    let socket = UdpSocket::bind(local)
        .await
        .context("binding a UDP socket")?;
    socket
        .connect(target)
        .await
        .with_context(|| format!("--target {target}"))?;
    let pace = pace(args);
    let mut sent = 0u64;
    let mut message_id = 0u16;
    let mut tick = tokio::time::interval(TICK);
    let mut refused = 0u64;
    while let Some(due) = pace.due(sent) {
        for _ in 0..due {
            let (device, payload) = fleet.next();
            message_id = message_id.wrapping_add(1);
            let bytes = coap_post(message_id, &fleet.devices[device], payload)?;
            // Non-confirmable: fire and forget, as battery sensors do. A
            // refused send (nothing listening, ICMP) is counted, not fatal.
            if socket.send(&bytes).await.is_err() {
                refused += 1;
            }
            sent += 1;
        }
        if pace.rate > 0.0 {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    if refused > 0 {
        eprintln!(
            "simulate: {refused} datagrams refused (is the gateway's CoAP server listening on {target}?)"
        );
    }
    Ok(sent)
}

/// A non-confirmable `POST /s/{device}` with a JSON body.
fn coap_post(message_id: u16, device: &str, payload: String) -> anyhow::Result<Vec<u8>> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::NonConfirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = message_id;
    p.add_option(CoapOption::UriPath, b"s".to_vec());
    p.add_option(CoapOption::UriPath, device.as_bytes().to_vec());
    p.add_option(CoapOption::ContentFormat, vec![CONTENT_FORMAT_JSON]);
    p.payload = payload.into_bytes();
    p.to_bytes().context("encoding a CoAP request")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> SimulateArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: SimulateArgs,
        }
        let mut argv = vec!["x"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).a
    }

    #[test]
    fn devices_take_turns_and_the_same_seed_repeats_the_run() {
        let a = args(&["--devices", "3", "--metrics", "t,h"]);
        let mut f = Fleet::new(&a);
        let first: Vec<(usize, String)> = (0..6).map(|_| f.next()).collect();
        assert_eq!(
            first.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2]
        );
        let j: serde_json::Value = serde_json::from_str(&first[0].1).unwrap();
        assert!(j["t"].is_f64() && j["h"].is_f64(), "{j}");
        let mut again = Fleet::new(&a);
        assert_eq!(again.next(), first[0]);
    }

    #[test]
    fn an_enormous_rate_is_as_fast_as_the_count_allows() {
        // --rate 1e308 once overflowed the pace's arithmetic and panicked.
        let pace = pace(&args(&["--rate", "1e308", "--count", "3"]));
        assert_eq!(pace.due(0), Some(3));
        assert_eq!(pace.due(3), None);
    }

    #[test]
    fn the_coap_request_is_a_non_confirmable_json_post() {
        let bytes = coap_post(7, "sim-00001", "{\"t\":1}".into()).unwrap();
        let p = Packet::from_bytes(&bytes).unwrap();
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.header.code, MessageClass::Request(RequestType::Post));
        let path: Vec<&[u8]> = p
            .get_option(CoapOption::UriPath)
            .unwrap()
            .iter()
            .map(Vec::as_slice)
            .collect();
        assert_eq!(path, [b"s".as_slice(), b"sim-00001".as_slice()]);
        assert_eq!(p.payload, b"{\"t\":1}");
    }
}
