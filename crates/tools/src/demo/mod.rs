//! `edge-gateway demo`: the whole data path on one machine, with nothing
//! else installed.
//!
//! - [`broker`]: an embedded rumqttd broker on a free loopback port, playing
//!   both the local broker the sensors publish to and the cloud broker;
//! - [`simulator`]: a small building (three rooms and a failing fridge)
//!   publishing once a second in the payload forms real nodes use;
//! - the real gateway reading `sensors/…` and `esp32/…` and forwarding
//!   window statistics to `building/demo/…`, started by the binary through
//!   [`StartGateway`] (the gateway's runtime is the binary's wiring, which
//!   no other crate depends on);
//! - [`printer`]: a subscriber to `building/demo/#` showing what the cloud
//!   would receive, as it arrives.
//!
//! Stopping follows the gateway's own order: the simulator goes quiet, the
//! gateway forwards its open windows (marked partial) and announces
//! `offline`, and the printer shows all of it before the process exits.

pub mod broker;
pub mod printer;
pub mod simulator;

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use gateway_core::Timestamp;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use tracing_subscriber::EnvFilter;

use broker::EmbeddedBroker;
use gateway_settings::{self as settings, GatewayConfig};
use printer::Printer;
use simulator::Simulator;

/// The demo gateway's id.
pub const GATEWAY_ID: &str = "demo-gw";
/// The demo site: upstream topics start with `building/demo/`.
pub const SITE: &str = "demo";
/// Aggregation grace of the demo: short, so output follows the window end
/// closely, and the simulator's readings are never late on loopback.
const GRACE: &str = "2s";
/// Seed of the simulated building: every demo run tells the same story.
const SEED: u64 = 0x5EED_2026;
/// The gateway's drain timeout is 5 s; this bounds a stop that hangs anyway.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the printer waits for the gateway's `offline` after it stopped.
const PRINTER_DRAIN: Duration = Duration::from_secs(2);
/// Quiet by default: rumqttd logs every connection and disconnection at
/// `error` level, which would bury the demo's output.
const DEFAULT_LOG_FILTER: &str = "warn,rumqttd=off";

/// Starts the real gateway on a config; the binary passes its runtime's
/// start here.
pub type StartGateway = fn(&GatewayConfig) -> anyhow::Result<StopGateway>;

/// Stops a gateway [`StartGateway`] started: it forwards its open windows
/// and publishes `offline`; `Err` when it failed on the way.
pub type StopGateway =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send>;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Window length of the demo's aggregates.
    #[arg(long, default_value = "10s")]
    window: String,
}

/// `edge-gateway demo`: the gateway's main job on built-in defaults.
pub fn main(args: &DemoArgs, gateway: StartGateway) -> ExitCode {
    match crate::runtime().and_then(|rt| rt.block_on(run(&args.window, gateway))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-gateway demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo until SIGINT or SIGTERM, then stops it cleanly.
///
/// `window` is the aggregation window (`"10s"`, `"1m"`); windows are
/// aligned to multiples of it, so the first one is usually short.
///
/// # Errors
/// An invalid window, or a part of the demo that could not start.
pub async fn run(window: &str, gateway: StartGateway) -> anyhow::Result<()> {
    init_logging();
    // Installed before anything starts, so an early Ctrl-C also stops
    // cleanly instead of killing the process with its default action.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let demo = start(window, gateway).await?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        // Nobody is watching: stop the same way, quietly.
        _ = demo.printer.output_closed() => {}
    }
    say("\nStopping: the gateway forwards its open windows early, marked partial.\n");
    tokio::select! {
        stopped = demo.stop() => stopped?,
        _ = interrupt.recv() => { say("Second Ctrl-C: not waiting any longer.\n"); }
    }
    say("Demo stopped.\n");
    Ok(())
}

/// A running demo: broker, gateway, simulator and printer.
pub struct DemoHandle {
    broker: EmbeddedBroker,
    gateway: StopGateway,
    simulator: Simulator,
    printer: Printer,
}

impl DemoHandle {
    /// The embedded broker's loopback port.
    pub fn broker_port(&self) -> u16 {
        self.broker.port()
    }

    /// Stops the simulator, then the gateway (which forwards its open
    /// windows and publishes `offline`), then lets the printer show the rest.
    ///
    /// # Errors
    /// The gateway failed or did not stop within its time limit.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.simulator.stop().await;
        let stopped = tokio::time::timeout(STOP_TIMEOUT, (self.gateway)()).await;
        self.printer.finish(PRINTER_DRAIN).await;
        // rumqttd cannot be stopped; its threads end with the process.
        drop(self.broker);
        // The demo's outbox is scratch: nothing of it should outlive the run.
        let _ = std::fs::remove_dir_all(demo_state_dir());
        match stopped {
            Ok(result) => result.context("stopping the gateway"),
            Err(_) => anyhow::bail!("the gateway did not stop within {STOP_TIMEOUT:?}"),
        }
    }
}

/// Starts the broker, prints the banner, then starts the printer, the
/// gateway and the simulator, in the order that loses no output.
///
/// # Errors
/// An invalid window, or a part of the demo that could not start.
pub async fn start(window: &str, start_gateway: StartGateway) -> anyhow::Result<DemoHandle> {
    let broker = EmbeddedBroker::start().await?;
    let port = broker.port();
    let cfg = settings::parse(&config_text(port, window, dashboard_port()))
        .with_context(|| format!("demo config with --window {window:?}"))?;
    // Ignored: a closed stdout is noticed by the printer and stops the demo.
    let _ = print_banner(port, &cfg);
    let printer = Printer::start(port, &cfg.topic_prefix(), GATEWAY_ID).await?;
    let gateway = match start_gateway(&cfg) {
        Ok(g) => g,
        Err(e) => {
            printer.finish(Duration::ZERO).await;
            return Err(e.context("starting the gateway"));
        }
    };
    let simulator = Simulator::spawn(port, SEED);
    Ok(DemoHandle {
        broker,
        gateway,
        simulator,
        printer,
    })
}

/// Per process, so two demos (or a demo and its test) never share an
/// outbox; made afresh (mode 0700, a random name), so nobody can plant a
/// symlink at a guessable path and have the demo, often run as root,
/// write its state where they chose.
fn demo_state_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new()
            .prefix("edge-gateway-demo-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map(tempfile::TempDir::keep)
            // No temporary directory at all: the gateway then says it
            // cannot use this one, and the demo stops with that.
            .unwrap_or_else(|_| std::env::temp_dir().join("edge-gateway-demo-unavailable"))
    })
    .clone()
}

/// The dashboard's usual port when it is free, else any free one: a
/// second demo still shows its pages.
fn dashboard_port() -> u16 {
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    };
    let usual = gateway_core::config::dashboard::DEFAULT_PORT;
    free(usual).or_else(|_| free(0)).unwrap_or(usual)
}

/// The demo's `gateway.toml`: one broker on `port` on both sides, the
/// dashboard on `dashboard_port`.
pub fn config_text(port: u16, window: &str, dashboard_port: u16) -> String {
    // As a TOML string literal, so any argument parses and is then checked
    // like a config value (with a message naming the key).
    let window = toml::Value::String(window.to_string());
    let state_dir = toml::Value::String(demo_state_dir().display().to_string());
    format!(
        r#"
[gateway]
id = "{GATEWAY_ID}"
site = "{SITE}"
state_dir = {state_dir}

[upstream]
url = "mqtt://127.0.0.1:{port}"
max_backoff = "1s"

[aggregation]
window = {window}
grace = "{GRACE}"
# The demo keeps nothing across runs: show the open windows at Ctrl-C.
checkpoint_interval = "0s"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard_port}"
write_interval = "2s"

[[adapter]]
type = "mqtt"
name = "demo-sensors"
url = "mqtt://127.0.0.1:{port}"
topics = [
  "sensors/data/{{device}}/{{metric}}",
  "sensors/{{device}}",
  {{ pattern = "esp32/{{device}}/csv", format = "csv", columns = ["temperature", "pressure", "humidity", "gas"] }},
]
max_backoff = "1s"

[[device]]
id = "{living}"
name = "Living Room"
room = "living"
floor = 0

[[device]]
id = "{kitchen}"
name = "Kitchen"
room = "kitchen"
floor = 0

[[device]]
id = "{office}"
name = "Office"
room = "office"
floor = 1

[[device]]
id = "{fridge}"
name = "Fridge 2"
tags = ["fridge"]

# Alerts go out at once, not with the windows.
[[rule]]
name = "fridge-warming"
kind = "rate"
metric = "temperature"
tag = "fridge"
rate = "+0.5 per 20s"

[[rule]]
name = "fridge-max"
kind = "threshold"
metric = "temperature"
tag = "fridge"
max = 8.0
"#,
        living = simulator::LIVING_ROOM,
        kitchen = simulator::KITCHEN,
        office = simulator::OFFICE,
        fridge = simulator::FRIDGE,
    )
}

fn print_banner(port: u16, cfg: &GatewayConfig) -> bool {
    let names: Vec<&str> = cfg.devices.iter().map(|d| d.name.as_str()).collect();
    let (window, grace) = (cfg.aggregation.window, cfg.aggregation.grace);
    say(&format!(
        "edge-gateway demo: a simulated building, the real gateway, an embedded broker
  broker     mqtt://127.0.0.1:{port} (in memory; stands in for both the local and the cloud broker)
  sensors    {names}: a reading per sensor per second
             (Fridge 2's compressor has failed: watch its temperature climb)
  dashboard  http://{dashboard}/ (open it in a browser)
  gateway    {GATEWAY_ID}: {window} windows (+{grace} grace), forwarded to {prefix}/#
  first      aggregates in about {first} s (windows are aligned to the clock)
  raw data   mosquitto_sub -h 127.0.0.1 -p {port} -t 'building/#' -v
Times are UTC. Ctrl-C to stop.

",
        names = names.join(", "),
        dashboard = cfg.dashboard.bind,
        window = humanize(window),
        grace = humanize(grace),
        prefix = cfg.topic_prefix(),
        first = first_output_in(window, grace).as_secs(),
    ))
}

/// Writes to stdout; `false` when nobody reads it any more (`demo | head`),
/// where `println!` would panic.
fn say(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Time until the first window closes: windows are aligned to multiples of
/// their length since the epoch, and each is sent `grace` after its end.
fn first_output_in(window: Duration, grace: Duration) -> Duration {
    let now = u128::try_from(Timestamp::now().as_millis()).unwrap_or(0);
    let len = window.as_millis().max(1);
    let end = (now / len + 1) * len;
    let wait = end - now + grace.as_millis();
    Duration::from_millis(u64::try_from(wait).unwrap_or(u64::MAX))
}

/// Logs go to stderr so stdout carries only the live view. `RUST_LOG`
/// overrides the quiet default.
fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Fails only if a subscriber is already set (tests); that one is kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Options for a demo client of the embedded broker.
fn mqtt_options(port: u16, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    o
}

/// A task that polls a client's event loop all the time, as rumqttc needs.
#[derive(Debug)]
struct Poller {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Polls `eventloop`, handing every event to `on_event`, until the client's
/// Disconnect has been sent or the poller is stopped.
fn spawn_poller<F>(mut eventloop: EventLoop, mut on_event: F) -> Poller
where
    F: FnMut(Event) + Send + 'static,
{
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        loop {
            let polled = tokio::select! {
                _ = token.cancelled() => return,
                e = eventloop.poll() => e,
            };
            match polled {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(event) => on_event(event),
                Err(e) => {
                    // rumqttc reconnects on the next poll; pace the retries.
                    debug!(error = %e, "Demo client lost the embedded broker.");
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    });
    Poller { stop, task }
}

/// Sends a Disconnect and waits (briefly) for it to leave.
async fn disconnect(client: &AsyncClient, mut poller: Poller) {
    if client.try_disconnect().is_ok()
        && tokio::time::timeout(Duration::from_secs(1), &mut poller.task)
            .await
            .is_ok()
    {
        return;
    }
    poller.stop.cancel();
    let _ = poller.task.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_parses_with_every_device_named() {
        let cfg = settings::parse(&config_text(1883, "10s", 8088)).unwrap();
        assert_eq!(cfg.aggregation.window, Duration::from_secs(10));
        assert_eq!(cfg.topic_prefix(), "building/demo");
        assert_eq!(cfg.devices.len(), simulator::DEVICES.len());
        for d in simulator::DEVICES {
            assert!(
                cfg.devices.iter().any(|c| c.id.as_str() == d),
                "{d} not registered"
            );
        }
    }

    #[test]
    fn a_bad_window_is_reported_by_its_key() {
        let e = settings::parse(&config_text(1883, "0s", 8088)).unwrap_err();
        assert!(format!("{e:#}").contains("aggregation.window"), "{e:#}");
        let e = settings::parse(&config_text(1883, "ten \"seconds\"", 8088)).unwrap_err();
        assert!(format!("{e:#}").contains("aggregation.window"), "{e:#}");
    }

    #[test]
    fn the_first_output_comes_within_one_window_plus_grace() {
        let w = first_output_in(Duration::from_secs(10), Duration::from_secs(2));
        assert!(
            w > Duration::from_secs(2) && w <= Duration::from_secs(12),
            "{w:?}"
        );
    }

    /// Its scratch directory is made afresh, private and not at a path
    /// derived from the process id: a symlink planted there beforehand
    /// cannot steer where the demo writes.
    #[test]
    fn the_demos_state_directory_is_private_and_unguessable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = super::demo_state_dir();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir() && !meta.file_type().is_symlink());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        assert_ne!(name, format!("edge-gateway-demo-{}", std::process::id()));
        assert_eq!(super::demo_state_dir(), dir, "one per process");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
