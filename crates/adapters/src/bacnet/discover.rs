//! `edge-gateway bacnet discover`: every device answering Who-Is, and each
//! one's points (type, instance, name, units, present value) as an
//! installer needs them on site to write `[[bacnet.device]]`. It reads
//! through the adapter's own client and reader, so what it shows is what
//! the adapter will read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::{Client, Event};
use super::reader::{self, Capabilities};
use super::services::IAm;
use super::units;

/// Devices kept from one discovery: the I-Am flood of a very large site
/// (or a hostile one) cannot grow the table beyond this.
pub const MAX_DEVICES: usize = 10_000;

/// What to look for.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub bind: SocketAddr,
    /// Who-Is destinations (broadcast or unicast addresses).
    pub to: Vec<SocketAddr>,
    pub range: Option<(u32, u32)>,
    /// How long I-Ams are collected.
    pub wait: Duration,
    pub timeout: Duration,
    /// Read each device's objects too.
    pub objects: bool,
}

/// Runs a discovery and renders its report.
pub async fn discover(d: &Discovery) -> std::io::Result<String> {
    let (tx, mut rx) = mpsc::channel(4096);
    let stop = CancellationToken::new();
    let client = Client::start(d.bind, d.timeout, 1, tx, stop.clone()).await?;
    for to in &d.to {
        let broadcast = to.ip().to_string().ends_with(".255");
        client.who_is(*to, d.range, broadcast, false).await;
    }
    let mut found: BTreeMap<u32, (SocketAddr, IAm)> = BTreeMap::new();
    let mut ignored = 0usize;
    let deadline = tokio::time::Instant::now() + d.wait;
    loop {
        let ev = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            ev = rx.recv() => ev,
        };
        let Some(ev) = ev else { break };
        if let Event::IAm(from, i_am) = ev {
            if found.len() < MAX_DEVICES || found.contains_key(&i_am.device) {
                found.insert(i_am.device, (from, i_am));
            } else {
                ignored += 1;
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "{} device(s) answered Who-Is.", found.len());
    if ignored > 0 {
        let _ = writeln!(out, "{ignored} more I-Am ignored past {MAX_DEVICES} devices: narrow the range (--low/--high).");
    }
    for (instance, (addr, i_am)) in &found {
        let _ = writeln!(
            out,
            "\ndevice {instance} at {addr}: vendor {}, max APDU {}, segmentation {}",
            i_am.vendor,
            i_am.max_apdu,
            if i_am.segments_answers() { "yes" } else { "no" }
        );
        if !d.objects {
            continue;
        }
        let mut caps = Capabilities::new(i_am.max_apdu);
        let report = async {
            let list: Vec<_> = reader::object_list(&client, *addr, *instance, &mut caps)
                .await?
                .into_iter()
                .filter(|o| reader::is_point(o.kind))
                .collect();
            let infos = reader::describe(&client, *addr, &list, &mut caps).await?;
            let samples = reader::poll(&client, *addr, &list, &mut caps).await?;
            Ok::<_, super::client::ClientError>((infos, samples))
        };
        match report.await {
            Err(e) => {
                let _ = writeln!(out, "  cannot read its objects: {e}");
            }
            Ok((infos, samples)) => {
                let _ = writeln!(
                    out,
                    "  {:<28} {:<32} {:<26} value",
                    "object", "name", "units"
                );
                for info in infos {
                    let value = samples.samples.iter().find(|s| s.0 == info.id).map_or_else(
                        String::new,
                        |(_, s)| match s {
                            Ok(s) => format!("{}", s.value),
                            Err(e) => e.describe(),
                        },
                    );
                    let unit = info.units.map(|u| {
                        let name = units::name(u);
                        match units::symbol(u).filter(|s| !s.is_empty()) {
                            Some(sym) if sym != name => format!("{name} ({sym})"),
                            _ => name,
                        }
                    });
                    let _ = writeln!(
                        out,
                        "  {:<28} {:<32} {:<26} {value}",
                        info.id.to_string(),
                        info.name.as_deref().unwrap_or("-"),
                        unit.as_deref().unwrap_or("-"),
                    );
                }
            }
        }
    }
    stop.cancel();
    Ok(out)
}
