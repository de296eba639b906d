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

/// Other addresses named per duplicate instance.
const DUPLICATES_SHOWN: usize = 8;

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
    // Other addresses answering for an instance already found: a
    // duplicate device instance, which the installer has to see (the
    // adapter reads such a device only at a configured `address`).
    let mut also: BTreeMap<u32, Vec<SocketAddr>> = BTreeMap::new();
    let mut ignored = 0usize;
    let deadline = tokio::time::Instant::now() + d.wait;
    loop {
        let ev = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            ev = rx.recv() => ev,
        };
        let Some(ev) = ev else { break };
        if let Event::IAm(from, i_am) = ev {
            match found.get(&i_am.device) {
                Some((first, _)) if *first == from => {}
                Some(_) => {
                    let others = also.entry(i_am.device).or_default();
                    if others.len() < DUPLICATES_SHOWN && !others.contains(&from) {
                        others.push(from);
                    }
                }
                None if found.len() < MAX_DEVICES => {
                    found.insert(i_am.device, (from, i_am));
                }
                None => ignored += 1,
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "{} device(s) answered Who-Is.", found.len());
    if !also.is_empty() {
        let _ = writeln!(out, "{} device instance(s) answered from more than one address (duplicate device instance, or a forger): the adapter reads these only at a configured `address`.", also.len());
    }
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
        if let Some(others) = also.get(instance) {
            let list: Vec<String> = others.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  DUPLICATE device instance: also answered from {}",
                list.join(", ")
            );
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bacnet::apdu::{self, unconfirmed};
    use crate::bacnet::{frame, services};
    use tokio::net::UdpSocket;

    /// A device that answers every Who-Is with an I-Am for `instance`.
    async fn answering(instance: u32) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((_, from)) = socket.recv_from(&mut buf).await {
                let i_am = services::i_am(&IAm {
                    device: instance,
                    max_apdu: 1476,
                    segmentation: 0,
                    vendor: 999,
                });
                let apdu = apdu::unconfirmed_request(unconfirmed::I_AM, &i_am);
                let _ = socket
                    .send_to(&frame::unicast(&apdu, false, None), from)
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn two_addresses_answering_for_one_instance_are_both_shown() {
        let (a, b, c) = (answering(5).await, answering(5).await, answering(6).await);
        let report = discover(&Discovery {
            bind: "127.0.0.1:0".parse().unwrap(),
            to: vec![a, b, c],
            range: None,
            wait: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            objects: false,
        })
        .await
        .unwrap();
        assert!(report.starts_with("2 device(s) answered"), "{report}");
        assert!(report.contains("1 device instance(s) answered from more than one address"), "{report}");
        assert_eq!(report.matches("DUPLICATE").count(), 1, "{report}");
        assert!(report.contains(&a.to_string()), "{report}");
        assert!(report.contains(&b.to_string()), "{report}");
    }
}
