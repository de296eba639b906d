//! `simulate --protocol lorawan --otaa`: the fleet joins before it sends.
//!
//! The simulated forwarder opens its downlink path with PULL_DATA, each
//! device sends a join-request, and the join-accept is read from the
//! gateway's PULL_RESP, decrypted and checked with the device's AppKey as a
//! device would; the session keys it derives then seal the uplinks. The
//! DevNonce is new on every run (the gateway refuses a used one), so a fleet
//! can be played again against the same state directory.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adapters::lorawan::frame::Key;
use adapters::lorawan::join::{self, Eui, JoinAccept, JoinRequest};
use adapters::lorawan::semtech::base64_decode;
use anyhow::{bail, Context as _};
use tokio::net::UdpSocket;

use super::lorawan::{derive_key, hex, push_data, Session, GATEWAY_EUI};
use super::SimulateArgs;

/// The JoinEUI every simulated device carries.
const JOIN_EUI: [u8; 8] = [0x70, 0xB3, 0xD5, 0x7E, 0xD0, 0x00, 0x00, 0x01];
/// A join-accept leaves after the gateway's de-duplication window and a
/// disk write: well under a second; RX2 of a join is 6 s away.
const ACCEPT_WAIT: Duration = Duration::from_secs(7);

/// DevEUI of device `index`: a fixed prefix, then the index.
fn dev_eui(index: u32) -> Eui {
    let mut e = [0x00, 0x4A, 0x77, 0x00, 0, 0, 0, 0];
    e[4..].copy_from_slice(&index.to_be_bytes());
    Eui(e)
}

fn app_key(seed: u64, index: u32) -> Key {
    derive_key(seed, index, 3)
}

/// The OTAA `[[lorawan.device]]` tables for `--devices` and `--seed`.
pub(super) fn device_tables(args: &SimulateArgs, names: &[String]) -> String {
    let mut out = format!(
        "# edge-gateway simulate --protocol lorawan --otaa --devices {} --seed {}\n",
        args.devices, args.seed
    );
    for (i, name) in (0..args.devices).zip(names) {
        let _ = write!(
            out,
            "\n[[lorawan.device]]\ndev_eui = \"{}\"\njoin_eui = \"{}\"\napp_key = \"{}\"\ncodec = \"compact_i16\"\nid = \"{name}\"\n",
            dev_eui(i),
            Eui(JOIN_EUI),
            hex(&app_key(args.seed, i).0),
        );
    }
    out
}

/// A DevNonce no earlier run used (for practical purposes): from the clock.
fn first_dev_nonce() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos / 1000 % 65_536) as u16
}

/// Joins every device; returns their sessions in device order.
pub(super) async fn join_all(
    args: &SimulateArgs,
    socket: &UdpSocket,
) -> anyhow::Result<Vec<Session>> {
    let mut pull = vec![2, 0x00, 0x01, 0x02];
    pull.extend_from_slice(&GATEWAY_EUI);
    socket.send(&pull).await.context("sending PULL_DATA")?;
    let nonce = first_dev_nonce();
    let mut sessions = Vec::with_capacity(args.devices as usize);
    for i in 0..args.devices {
        let key = app_key(args.seed, i);
        let dev_nonce = nonce.wrapping_add(i as u16);
        let request = JoinRequest {
            join_eui: Eui(JOIN_EUI),
            dev_eui: dev_eui(i),
            dev_nonce,
        };
        let token = (i as u16).wrapping_add(0x100);
        socket
            .send(&push_data(token, &request.seal(&key), -70, 7.5))
            .await
            .context("sending a join-request")?;
        let accept = read_accept(socket, &key)
            .await
            .with_context(|| format!("device {}: no join-accept", dev_eui(i)))?;
        let (nwk_s_key, app_s_key) =
            join::session_keys(&key, accept.join_nonce, accept.net_id, dev_nonce);
        sessions.push(Session {
            dev_addr: accept.dev_addr,
            nwk_s_key,
            app_s_key,
        });
    }
    gateway_core::outln!("simulate: {} devices joined", sessions.len());
    Ok(sessions)
}

/// Reads datagrams until a PULL_RESP whose payload opens under `key`.
async fn read_accept(socket: &UdpSocket, key: &Key) -> anyhow::Result<JoinAccept> {
    let deadline = tokio::time::Instant::now() + ACCEPT_WAIT;
    let mut buf = [0u8; 2048];
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(r) => r.context("reading from the gateway")?,
            Err(_) => bail!(
                "nothing in {} s (is the device in the gateway's [[lorawan.device]]? see --print-lorawan-config)",
                ACCEPT_WAIT.as_secs()
            ),
        };
        let Some(phy) = pull_resp_payload(&buf[..n]) else {
            continue; // PUSH_ACK, PULL_ACK
        };
        if let Ok(accept) = JoinAccept::open(&phy, key) {
            return Ok(accept);
        }
    }
}

/// The PHYPayload of a PULL_RESP datagram.
fn pull_resp_payload(datagram: &[u8]) -> Option<Vec<u8>> {
    if datagram.len() < 4 || datagram[3] != 0x03 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&datagram[4..]).ok()?;
    base64_decode(json["txpk"]["data"].as_str()?)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;

    use super::*;

    #[test]
    fn a_pull_resp_accept_opens_with_the_device_key() {
        let key = app_key(1, 0);
        let accept = JoinAccept {
            join_nonce: 7,
            net_id: 0x13,
            dev_addr: 0x2600_0005,
            dl_settings: 0,
            rx_delay: 1,
            cf_list: None,
        };
        let body = format!(
            r#"{{"txpk":{{"data":"{}"}}}}"#,
            BASE64.encode(accept.seal(&key))
        );
        let mut d = vec![2, 0, 1, 0x03];
        d.extend_from_slice(body.as_bytes());
        let phy = pull_resp_payload(&d).unwrap_or_default();
        assert_eq!(JoinAccept::open(&phy, &key), Ok(accept));
        assert!(pull_resp_payload(&[2, 0, 1, 0x01]).is_none());
    }
}
