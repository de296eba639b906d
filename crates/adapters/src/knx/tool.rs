//! `edge-gateway knx discover` (the KNXnet/IP interfaces and routers that
//! answer a search) and `edge-gateway knx monitor` (every group telegram
//! as it passes, the way ETS's group monitor shows it), through the
//! adapter's own codec and links.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::knx::address::GroupAddress;
use crate::knx::config::Transport;
use crate::knx::discover::{discover, render, Discovery};
use crate::knx::dpt::{Dpt, Value};
use crate::knx::link::{ArrivalClock, Faults, LinkEvent, Outbox};
use crate::knx::{routing, tunnel};
use gateway_core::telemetry::Telemetry;
use gateway_core::AdapterStats;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// EX_USAGE from sysexits.h.
const EX_USAGE: u8 = 64;
/// EX_UNAVAILABLE: nothing to talk to.
const EX_UNAVAILABLE: u8 = 69;
/// EX_IOERR: stdout failed otherwise than by a closed pipe.
const EX_IOERR: u8 = 74;
/// 128 + SIGPIPE: what a shell reports of a process killed by it, the
/// usual end of a `knx monitor | head` once `head` has what it wants.
const EXIT_BROKEN_PIPE: u8 = 141;

/// What ended the monitor from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopSignal {
    Interrupt,
    Terminate,
    Hangup,
}

/// Resolves on the first of SIGINT (ctrl-c), SIGTERM (`timeout`, a
/// service manager) and SIGHUP (the SSH session closed). Each of them
/// killed the monitor before its tunnel was disconnected, and the
/// interface then held the slot for 120 s. The handlers are installed
/// here, not at the first poll, so none is missed in between.
fn stop_signals() -> std::io::Result<impl std::future::Future<Output = StopSignal>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => StopSignal::Interrupt,
            _ = terminate.recv() => StopSignal::Terminate,
            _ = hangup.recv() => StopSignal::Hangup,
        }
    })
}

/// Writes one telegram's line; the exit code to stop with when stdout
/// is gone: quietly for a closed pipe, with a message otherwise.
fn print_line(out: &mut impl Write, line: &str) -> Result<(), ExitCode> {
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(ExitCode::from(EXIT_BROKEN_PIPE))
        }
        Err(e) => {
            eprintln!("edge-gateway knx monitor: cannot write to stdout: {e}");
            Err(ExitCode::from(EX_IOERR))
        }
    }
}

#[derive(clap::Args)]
pub struct KnxArgs {
    #[command(subcommand)]
    command: KnxCommand,
}

#[derive(clap::Subcommand)]
enum KnxCommand {
    /// Send a SEARCH_REQUEST and list the KNXnet/IP interfaces and routers
    /// that answer: address, name, individual address, services.
    Discover(DiscoverArgs),
    /// Print every group telegram on the bus: source, destination,
    /// service, raw bytes, and the value where --dpt or an ETS export
    /// gives the address's type.
    Monitor(MonitorArgs),
}

#[derive(clap::Args)]
struct DiscoverArgs {
    /// Where the search goes: the routing multicast (every KNX IP device
    /// answers it) or one device ("host:port").
    #[arg(long, default_value = "224.0.23.12:3671")]
    to: String,
    /// The local IPv4 address (or interface name) to search from.
    #[arg(long)]
    interface: Option<String>,
    /// How long answers are collected.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

#[derive(clap::Args)]
struct MonitorArgs {
    /// The interface or router: udp://host:3671, tcp://host:3671 or
    /// multicast://224.0.23.12:3671.
    #[arg(long)]
    url: String,
    /// Routing: the network interface (name or IPv4 address).
    #[arg(long)]
    interface: Option<String>,
    /// Tunnelling through a NAT router.
    #[arg(long)]
    nat: bool,
    /// An address's type, "1/2/3=9.001"; repeat for several.
    #[arg(long = "dpt")]
    dpt: Vec<String>,
    /// ETS's group-address export: every address's type (and name).
    #[arg(long)]
    group_addresses: Option<PathBuf>,
    /// Stop after this many telegrams (default: until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

fn runtime_or_fail(tool: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    crate::registry::tool_runtime().map_err(|e| {
        eprintln!("edge-gateway knx {tool}: {e}");
        ExitCode::FAILURE
    })
}

pub fn main(args: &KnxArgs) -> ExitCode {
    match &args.command {
        KnxCommand::Discover(a) => discover_main(a),
        KnxCommand::Monitor(a) => monitor_main(a),
    }
}

fn discover_main(a: &DiscoverArgs) -> ExitCode {
    let to = match Transport::parse(&format!("udp://{}", a.to)) {
        Ok(Transport::Udp(to)) => to,
        Ok(_) | Err(_) => {
            eprintln!(
                "edge-gateway knx discover: --to: expected \"host:port\", got \"{}\"",
                a.to
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    let local_ip = match routing::interface_address(a.interface.as_deref()) {
        Ok(ip) => ip,
        Err(e) => {
            eprintln!("edge-gateway knx discover: --interface: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let rt = match runtime_or_fail("discover") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let d = Discovery {
        to,
        local_ip,
        wait: a.wait,
    };
    match rt.block_on(discover(&d)) {
        Ok(found) => {
            print!("{}", render(&found));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway knx discover: {e}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

/// Each address's type and name, from --dpt and the export.
fn types(a: &MonitorArgs) -> Result<HashMap<GroupAddress, (Dpt, String)>, String> {
    let mut out = HashMap::new();
    if let Some(path) = &a.group_addresses {
        let export = crate::knx::ets::read_file(path, "monitor", Default::default())?;
        for g in export.groups {
            out.insert(g.address, (g.dpt, format!("{} {}", g.device, g.metric)));
        }
    }
    for d in &a.dpt {
        let (ga, dpt) = d
            .split_once('=')
            .ok_or_else(|| format!("--dpt: expected \"1/2/3=9.001\", got \"{d}\""))?;
        let ga: GroupAddress = ga.parse().map_err(|e| format!("--dpt: {e}"))?;
        let dpt: Dpt = dpt.parse().map_err(|e| format!("--dpt: {e}"))?;
        out.insert(ga, (dpt, String::new()));
    }
    Ok(out)
}

fn monitor_main(a: &MonitorArgs) -> ExitCode {
    let usage = |e: String| {
        eprintln!("edge-gateway knx monitor: {e}");
        ExitCode::from(EX_USAGE)
    };
    let transport = match Transport::parse(&a.url) {
        Ok(t) => t,
        Err(e) => return usage(format!("--url: {e}")),
    };
    let types = match types(a) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let rt = match runtime_or_fail("monitor") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(monitor(a, transport, &types))
}

async fn monitor(
    a: &MonitorArgs,
    transport: Transport,
    types: &HashMap<GroupAddress, (Dpt, String)>,
) -> ExitCode {
    let telemetry = Telemetry::default();
    let faults = Faults::new("monitor", AdapterStats::new(&telemetry, "monitor"));
    // Sends nothing: its queues are kept open, and empty.
    let (_writes, _reads, outbox) = Outbox::new();
    let (events_tx, mut events) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let link = match transport {
        Transport::Udp(remote) | Transport::Tcp(remote) => {
            let settings = tunnel::TunnelSettings {
                remote,
                tcp: matches!(transport, Transport::Tcp(_)),
                local_ip: None,
                nat: a.nat,
                heartbeat: Duration::from_secs(60),
                timeout: Duration::from_secs(10),
                max_backoff: Duration::from_secs(30),
                refresh_after_silence: super::config::DEFAULT_REFRESH_AFTER_SILENCE,
                pace: 10.0,
                clock: ArrivalClock::default(),
            };
            tokio::spawn(tunnel::run(
                settings,
                outbox,
                events_tx,
                faults,
                stop.clone(),
            ))
        }
        Transport::Routing(group) => {
            let socket = routing::interface_address(a.interface.as_deref())
                .and_then(|ip| routing::bind(group, ip));
            let socket = match socket {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("edge-gateway knx monitor: cannot join {group}: {e}");
                    return ExitCode::from(EX_UNAVAILABLE);
                }
            };
            let settings = routing::RoutingSettings {
                group,
                interface: a.interface.clone(),
                // Sends nothing: any address will do.
                address: crate::knx::address::IndividualAddress(0xFFFF),
                pace: 10.0,
                clock: ArrivalClock::default(),
            };
            tokio::spawn(routing::run(
                settings,
                outbox,
                events_tx,
                faults,
                stop.clone(),
                socket,
            ))
        }
    };
    let signals = match stop_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("edge-gateway knx monitor: cannot install the signal handlers: {e}");
            stop.cancel();
            let _ = link.await;
            return ExitCode::FAILURE;
        }
    };
    tokio::pin!(signals);
    let mut stdout = std::io::stdout().lock();
    let mut seen = 0u64;
    let code = loop {
        let ev = tokio::select! {
            _ = &mut signals => break ExitCode::SUCCESS,
            ev = events.recv() => ev,
        };
        let Some(ev) = ev else {
            break ExitCode::SUCCESS;
        };
        match ev {
            LinkEvent::Connected(address) => eprintln!("Connected to {} as {address}.", a.url),
            LinkEvent::Down(problem) => eprintln!("Not connected: {problem}."),
            LinkEvent::Telegram(t) => {
                let data = t.data.as_data();
                let mut line = format!(
                    "{} {} -> {} {} {}",
                    t.at.to_rfc3339(),
                    t.source,
                    t.destination,
                    t.service.as_str(),
                    data.hex()
                );
                if let Some((dpt, name)) = types.get(&t.destination) {
                    if t.service != crate::knx::cemi::GroupService::Read {
                        let value = match dpt.decode(data) {
                            Ok(Value::Number(v)) => format!(
                                "{v}{}",
                                dpt.unit().map(|u| format!(" {u}")).unwrap_or_default()
                            ),
                            Ok(Value::Text(s)) => format!("{s:?}"),
                            Err(e) => format!("(undecodable: {e})"),
                        };
                        line.push_str(&format!(" {value}"));
                    }
                    if !name.is_empty() {
                        line.push_str(&format!(" [{dpt} {name}]"));
                    } else {
                        line.push_str(&format!(" [{dpt}]"));
                    }
                }
                if let Err(code) = print_line(&mut stdout, &line) {
                    break code;
                }
                seen += 1;
                if a.count.is_some_and(|n| seen >= n) {
                    break ExitCode::SUCCESS;
                }
            }
        }
    };
    // Every way out disconnects the tunnel, so its slot is free at once.
    stop.cancel();
    let _ = link.await;
    code
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Sends `signal` to this process, as `kill` from outside would.
    fn kill(signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[tokio::test]
    async fn sigterm_and_sighup_stop_the_monitor_as_ctrl_c_does() {
        for (signal, expected) in [
            ("-HUP", StopSignal::Hangup),
            ("-TERM", StopSignal::Terminate),
            ("-INT", StopSignal::Interrupt),
        ] {
            let stopped = stop_signals().unwrap();
            kill(signal);
            let got = tokio::time::timeout(Duration::from_secs(10), stopped)
                .await
                .unwrap();
            assert_eq!(got, expected);
        }
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_stops_the_monitor_quietly_with_141() {
        let mut out = Vec::new();
        assert_eq!(print_line(&mut out, "a line"), Ok(()));
        assert_eq!(out, b"a line\n");
        assert_eq!(
            print_line(&mut Closed, "a line"),
            Err(ExitCode::from(EXIT_BROKEN_PIPE))
        );
    }
}
