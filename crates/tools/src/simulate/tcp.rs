//! `simulate --protocol tcp`: ESP32 + BME680 nodes, one TCP connection
//! each, writing one CSV line per sample (the `--metrics` values in order:
//! `--metrics temperature,pressure,humidity,gas` is that node's line exactly) to the
//! gateway's `tcp_line` adapter.
//!
//! Those lines name no device: the gateway names them by the peer's
//! address, so every node of one simulating host is one device there.
//! `--device-column` puts the device name first (`columns = ["device",
//! …]`) to tell them apart. With `--ack` the nodes read the adapter's
//! `ok N` / `err N reason` answers and wait for every line to be covered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{pace, Fleet, SimulateArgs, TICK};

/// The adapter's default port (the ESP32 + BME680 node sends to :8080).
pub(super) const DEFAULT_TARGET: &str = "127.0.0.1:8080";
/// How long the last answers are awaited once everything is sent.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// One node's connection and what the gateway answered on it.
struct Node {
    writer: BufWriter<OwnedWriteHalf>,
    sent: u64,
    acked: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    reader: JoinHandle<()>,
}

/// Reads `ok N` / `err N reason` until the connection ends.
fn read_answers(
    read: tokio::net::tcp::OwnedReadHalf,
    acked: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut words = line.split_whitespace();
            match (
                words.next(),
                words.next().and_then(|n| n.parse::<u64>().ok()),
            ) {
                (Some("ok"), Some(n)) => {
                    acked.fetch_max(n, Ordering::Relaxed);
                }
                (Some("err"), Some(_)) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    })
}

/// One CSV line: the device first if asked, then the values.
pub(super) fn csv_line(device: Option<&str>, values: &[f64]) -> String {
    let mut fields: Vec<String> = device.map(str::to_string).into_iter().collect();
    fields.extend(values.iter().map(|v| format!("{v:.2}")));
    let mut line = fields.join(",");
    line.push('\n');
    line
}

pub(super) async fn run(
    args: &SimulateArgs,
    mut fleet: Fleet,
    target: SocketAddr,
) -> anyhow::Result<u64> {
    let mut nodes = Vec::with_capacity(fleet.devices.len());
    for _ in &fleet.devices {
        let stream = TcpStream::connect(target)
            .await
            .with_context(|| format!("--target {target}: is a tcp_line adapter listening?"))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (acked, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        nodes.push(Node {
            writer: BufWriter::new(write),
            sent: 0,
            reader: read_answers(read, acked.clone(), refused.clone()),
            acked,
            refused,
        });
    }
    let pace = pace(args);
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(TICK);
    'send: while let Some(due) = pace.due(sent) {
        for _ in 0..due {
            let (device, _, values) = fleet.sample();
            let name = args.device_column.then(|| fleet.devices[device].as_str());
            let node = &mut nodes[device];
            node.writer
                .write_all(csv_line(name, &values).as_bytes())
                .await
                .context("the gateway closed a node's connection")?;
            node.sent += 1;
            sent += 1;
        }
        for node in &mut nodes {
            node.writer.flush().await.context("writing lines")?;
        }
        if pace.rate > 0.0 {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => break 'send,
            }
        }
    }
    for node in &mut nodes {
        node.writer.flush().await.context("writing lines")?;
    }
    if args.ack {
        let all = tokio::time::timeout(ACK_WAIT, async {
            while nodes
                .iter()
                .any(|n| n.acked.load(Ordering::Relaxed) < n.sent)
            {
                tokio::time::sleep(TICK).await;
            }
        })
        .await;
        let acked: u64 = nodes.iter().map(|n| n.acked.load(Ordering::Relaxed)).sum();
        let refused: u64 = nodes
            .iter()
            .map(|n| n.refused.load(Ordering::Relaxed))
            .sum();
        gateway_core::outln!("simulate: {acked} lines acknowledged (ok), {refused} refused (err)");
        if all.is_err() {
            anyhow::bail!(
                "{} of {sent} lines not acknowledged within {ACK_WAIT:?}: is `ack = true` set?",
                sent - acked
            );
        }
    }
    for node in nodes {
        let mut w = node.writer.into_inner();
        let _ = w.shutdown().await;
        node.reader.abort();
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bme680_lines_with_and_without_a_device_column() {
        let v = [21.304, 1013.2, 45.1, 12000.0];
        assert_eq!(csv_line(None, &v), "21.30,1013.20,45.10,12000.00\n");
        assert_eq!(csv_line(Some("sim-00001"), &v[..1]), "sim-00001,21.30\n");
    }
}
