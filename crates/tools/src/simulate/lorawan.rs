//! `simulate --protocol lorawan`: a fleet of ABP devices heard by one Semtech
//! UDP packet forwarder, sending to the gateway's `semtech_udp` adapter.
//!
//! Every uplink is a real unconfirmed data frame (MIC with the NwkSKey,
//! FRMPayload encrypted with the AppSKey, FPort 2, FCnt counting up) carrying
//! a `compact_i16` payload, wrapped in a PUSH_DATA with one `rxpk`. The keys
//! are derived from `--seed` and the device's index, so
//! `--print-lorawan-config` prints the `[[lorawan.device]]` tables a gateway
//! needs for exactly this fleet.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adapters::lorawan::frame::{seal, Key};
use anyhow::{bail, Context as _};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::net::UdpSocket;

use super::{pace, Fleet, SimulateArgs, TICK};

/// The adapter's default port (lora_pkt_fwd's `serv_port_up`).
pub(super) const DEFAULT_TARGET: &str = "127.0.0.1:1700";
/// Readings per uplink: compact_i16's temperature, humidity and battery,
/// plus the rssi, snr and gateways the adapter adds from the `rxpk`.
pub(super) const READINGS_PER_UPLINK: usize = 6;
/// The application port the simulated devices send on.
const FPORT: u8 = 2;
/// DevAddr of device 0; NetID type 0 leaves 25 bits for the device.
const FIRST_DEV_ADDR: u32 = 0x2600_0000;
const MAX_DEVICES: u32 = 1 << 24;
/// The forwarder's gateway EUI.
pub(super) const GATEWAY_EUI: [u8; 8] = [0xAA, 0x55, 0x5A, 0x00, 0x51, 0x4D, 0x00, 0x01];
/// How long the last PUSH_ACKs are awaited once everything is sent.
const ACK_GRACE: Duration = Duration::from_millis(500);

/// One simulated device's session.
pub(super) struct Session {
    pub dev_addr: u32,
    pub nwk_s_key: Key,
    pub app_s_key: Key,
}

/// splitmix64: spreads (seed, index, salt) into independent-looking keys.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub(super) fn derive_key(seed: u64, index: u32, salt: u64) -> Key {
    let base = splitmix(seed ^ splitmix(u64::from(index) << 8 | salt));
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&splitmix(base).to_be_bytes());
    k[8..].copy_from_slice(&splitmix(base ^ 0xA5A5).to_be_bytes());
    Key(k)
}

/// The session of device `index` for `seed`: the same on every run.
pub(super) fn session(seed: u64, index: u32) -> Session {
    Session {
        dev_addr: FIRST_DEV_ADDR + index,
        nwk_s_key: derive_key(seed, index, 1),
        app_s_key: derive_key(seed, index, 2),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The `[[lorawan.device]]` tables matching `--devices` and `--seed`.
pub(super) fn device_tables(args: &SimulateArgs, names: &[String]) -> String {
    let mut out = format!(
        "# edge-gateway simulate --protocol lorawan --devices {} --seed {}\n",
        args.devices, args.seed
    );
    for (i, name) in (0..args.devices).zip(names) {
        let s = session(args.seed, i);
        let _ = write!(
            out,
            "\n[[lorawan.device]]\ndev_addr = \"{:08X}\"\nnwk_s_key = \"{}\"\napp_s_key = \"{}\"\ncodec = \"compact_i16\"\nid = \"{name}\"\n",
            s.dev_addr,
            hex(&s.nwk_s_key.0),
            hex(&s.app_s_key.0),
        );
    }
    out
}

/// compact_i16 (`>hBH`): temperature ×10, humidity %, battery volts ×100.
fn compact_i16(temperature: f64, humidity: f64, battery: f64) -> [u8; 5] {
    let t = (temperature * 10.0).round().clamp(-32768.0, 32767.0) as i16;
    let h = humidity.round().clamp(0.0, 100.0) as u8;
    let b = (battery * 100.0).round().clamp(0.0, 65535.0) as u16;
    let [t0, t1] = t.to_be_bytes();
    let [b0, b1] = b.to_be_bytes();
    [t0, t1, h, b0, b1]
}

/// A PUSH_DATA (protocol v2) carrying `phy` as one rxpk.
pub(super) fn push_data(token: u16, phy: &[u8], rssi: i16, snr: f64) -> Vec<u8> {
    let [t0, t1] = token.to_be_bytes();
    let mut d = vec![2, t0, t1, 0x00];
    d.extend_from_slice(&GATEWAY_EUI);
    let body = format!(
        r#"{{"rxpk":[{{"tmst":{},"chan":2,"rfch":0,"freq":868.5,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":{rssi},"lsnr":{snr:.1},"size":{},"data":"{}"}}]}}"#,
        u32::from(token).wrapping_mul(1000),
        phy.len(),
        // Padded, as lora_pkt_fwd writes `data`.
        BASE64.encode(phy)
    );
    d.extend_from_slice(body.as_bytes());
    d
}

/// A UDP socket connected to the gateway's `semtech_udp` adapter.
async fn connect(target: SocketAddr) -> anyhow::Result<UdpSocket> {
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local)
        .await
        .context("binding a UDP socket")?;
    socket
        .connect(target)
        .await
        .with_context(|| format!("--target {target}"))?;
    Ok(socket)
}

/// Sends the fleet's uplinks; returns how many were sent. With `--otaa`
/// every device joins first.
pub(super) async fn run(
    args: &SimulateArgs,
    mut fleet: Fleet,
    target: SocketAddr,
) -> anyhow::Result<u64> {
    if args.devices > MAX_DEVICES {
        bail!("--devices: at most {MAX_DEVICES} LoRaWAN devices");
    }
    let socket = connect(target).await?;
    let sessions: Vec<Session> = if args.otaa {
        super::otaa::join_all(args, &socket).await?
    } else {
        (0..args.devices).map(|i| session(args.seed, i)).collect()
    };
    let socket = Arc::new(socket);
    // A forwarder does not wait for PUSH_ACKs; they are counted so a run can
    // tell "sent" from "heard".
    let acks = Arc::new(AtomicU64::new(0));
    let reader = {
        let (socket, acks) = (Arc::clone(&socket), Arc::clone(&acks));
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = socket.recv(&mut buf).await {
                if n == 4 && buf[0] == 2 && buf[3] == 0x01 {
                    acks.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let pace = pace(args);
    let mut sent = 0u64;
    let mut refused = 0u64;
    let mut token = 0u16;
    let mut tick = tokio::time::interval(TICK);
    while let Some(due) = pace.due(sent) {
        for _ in 0..due {
            let (device, round, v) = fleet.sample();
            let s = &sessions[device];
            let payload = compact_i16(
                v.first().copied().unwrap_or(21.0),
                v.get(1).copied().unwrap_or(45.0),
                3.3 - 0.1 * fleet.noise().abs(),
            );
            let fcnt = args.fcnt_start.wrapping_add(round as u32);
            let phy = seal(
                s.dev_addr,
                fcnt,
                FPORT,
                &payload,
                &s.nwk_s_key,
                &s.app_s_key,
            )
            .context("building a LoRaWAN frame")?;
            token = token.wrapping_add(1);
            let rssi = -60 - (device % 40) as i16;
            let datagram = push_data(token, &phy, rssi, 7.5 + fleet.noise());
            if socket.send(&datagram).await.is_err() {
                refused += 1;
            }
            sent += 1;
        }
        if pace.rate > 0.0 {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        } else {
            // Lets the ACK reader run on a single-threaded moment.
            tokio::task::yield_now().await;
        }
    }
    let mut last = acks.load(Ordering::Relaxed);
    while last < sent {
        tokio::time::sleep(ACK_GRACE / 5).await;
        let now = acks.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    reader.abort();
    gateway_core::outln!("simulate: {last} PUSH_ACKs for {sent} PUSH_DATA");
    if refused > 0 {
        eprintln!(
            "simulate: {refused} datagrams refused (is the gateway's semtech_udp adapter listening on {target}?)"
        );
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapters::lorawan::frame::open;
    use adapters::lorawan::semtech::{parse, Datagram};

    #[test]
    fn keys_differ_per_device_and_repeat_per_seed() {
        let (a, b) = (session(1, 0), session(1, 1));
        assert_ne!(a.nwk_s_key.0, b.nwk_s_key.0);
        assert_ne!(a.nwk_s_key.0, a.app_s_key.0);
        assert_eq!(session(1, 1).app_s_key.0, b.app_s_key.0);
        assert_ne!(session(2, 1).app_s_key.0, b.app_s_key.0);
        assert_eq!(b.dev_addr, 0x2600_0001);
    }

    #[test]
    fn the_push_data_carries_a_frame_the_gateway_opens() {
        let s = session(7, 3);
        let payload = compact_i16(21.46, 44.6, 3.3);
        assert_eq!(payload, [0x00, 0xD7, 45, 0x01, 0x4A]);
        let phy = seal(s.dev_addr, 9, FPORT, &payload, &s.nwk_s_key, &s.app_s_key).unwrap();
        let bytes = push_data(0x1234, &phy, -70, 6.0);
        let Datagram::PushData { data, .. } = parse(&bytes).unwrap() else {
            panic!("not a PUSH_DATA");
        };
        let rx = data.rxpk[0].as_ref().unwrap();
        assert_eq!(
            (rx.rssi, rx.lsnr, rx.crc_ok()),
            (Some(-70), Some(6.0), true)
        );
        assert_eq!(rx.data, phy);
        let frame = open(&rx.data, &s.nwk_s_key, &s.app_s_key, 9).unwrap();
        assert_eq!(frame.application_payload(), Some(payload.as_slice()));
    }
}
