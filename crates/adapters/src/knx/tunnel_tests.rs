//! The tunnel's protocol rules against a scripted interface on loopback:
//! what knxd does not let a test provoke (a lost acknowledgement, a
//! repeated or out-of-order telegram, an interface gone silent) and
//! tunnelling over TCP, which knxd 0.14 does not serve (docs/knx.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::component::ADAPTER_ERRORS;
use gateway_core::telemetry::Telemetry;
use gateway_core::AdapterStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::knx::cemi::{GroupService, Payload};
use crate::knx::link::{ArrivalClock, Faults, LinkEvent, Outbox, Outgoing, SendFailure};

const WAIT: Duration = Duration::from_secs(5);

fn settings(remote: SocketAddr, tcp: bool) -> TunnelSettings {
    let SocketAddr::V4(remote) = remote else {
        panic!()
    };
    TunnelSettings {
        remote,
        tcp,
        local_ip: Some("127.0.0.1".parse().unwrap()),
        nat: false,
        heartbeat: Duration::from_secs(30),
        timeout: Duration::from_millis(300),
        max_backoff: Duration::from_millis(300),
        refresh_after_silence: Duration::ZERO,
        pace: 50.0,
        clock: ArrivalClock::default(),
    }
}

struct Client {
    out: mpsc::Sender<Outgoing>,
    events: mpsc::Receiver<LinkEvent>,
    telemetry: Telemetry,
    stop: CancellationToken,
}

impl Client {
    fn start(s: TunnelSettings) -> Self {
        let telemetry = Telemetry::default();
        let faults = Faults::new("t", AdapterStats::new(&telemetry, "t"));
        let (out, _reads, outbox) = Outbox::new();
        let (ev_tx, events) = mpsc::channel(64);
        let stop = CancellationToken::new();
        tokio::spawn(run(s, outbox, ev_tx, faults, stop.clone()));
        Self {
            out,
            events,
            telemetry,
            stop,
        }
    }

    async fn event(&mut self) -> LinkEvent {
        timeout(WAIT, self.events.recv())
            .await
            .expect("an event")
            .expect("the link runs")
    }

    /// The next event, which must be the link going down: its problem.
    async fn down(&mut self) -> String {
        match self.event().await {
            LinkEvent::Down(problem) => problem,
            other => panic!("expected the link down, got {other:?}"),
        }
    }

    fn errors(&self, reason: &str) -> u64 {
        self.telemetry
            .counter_value(ADAPTER_ERRORS, &[("adapter", "t"), ("error_type", reason)])
            .unwrap_or(0)
    }

    async fn write(
        &self,
        ga: &str,
        payload: Payload,
    ) -> oneshot::Receiver<Result<(), SendFailure>> {
        self.write_until(ga, payload, None).await
    }

    /// A command's write, to be sent before `deadline`.
    async fn write_until(
        &self,
        ga: &str,
        payload: Payload,
        deadline: Option<tokio::time::Instant>,
    ) -> oneshot::Receiver<Result<(), SendFailure>> {
        let (done, rx) = oneshot::channel();
        let o = Outgoing {
            destination: ga.parse().unwrap(),
            service: GroupService::Write,
            payload: Some(payload),
            done: Some(done),
            deadline,
        };
        self.out.send(o).await.unwrap();
        rx
    }
}

/// An L_Data frame from the bus (`code` 0x29) or a confirmation (0x2E)
/// of a 2-byte write to `ga`.
fn ldata(code: u8, ga: &str, data: [u8; 2]) -> Vec<u8> {
    let ga: crate::knx::address::GroupAddress = ga.parse().unwrap();
    let mut c = vec![code, 0, 0xBC, 0xE0, 0x11, 0x05];
    c.extend_from_slice(&ga.0.to_be_bytes());
    c.extend_from_slice(&[3, 0, 0x80, data[0], data[1]]);
    c
}

fn connect_response(channel: u8, data: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(d) = data else { panic!() };
    let mut f = vec![0x06, 0x10, 0x02, 0x06, 0x00, 0x14, channel, 0, 8, 1];
    f.extend_from_slice(&d.ip().octets());
    f.extend_from_slice(&d.port().to_be_bytes());
    f.extend_from_slice(&[4, 4, 0x11, 0x09]);
    f
}

/// The scripted interface's side of UDP.
struct Interface {
    socket: UdpSocket,
    client: Option<SocketAddr>,
}

impl Interface {
    async fn bind() -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            client: None,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    async fn recv(&mut self, within: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 512];
        let (n, from) = timeout(within, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .unwrap();
        self.client = Some(from);
        buf.truncate(n);
        Some(buf)
    }

    async fn expect(&mut self, what: &str, service: u16) -> Vec<u8> {
        let f = self.recv(WAIT).await.unwrap_or_else(|| panic!("no {what}"));
        assert_eq!(
            u16::from_be_bytes([f[2], f[3]]),
            service,
            "{what}: {f:02x?}"
        );
        f
    }

    async fn send(&self, frame: &[u8]) {
        self.socket
            .send_to(frame, self.client.unwrap())
            .await
            .unwrap();
    }

    async fn tunnel(&self, channel: u8, seq: u8, cemi: &[u8]) {
        let mut f = Vec::new();
        frame::tunnelling_request(channel, seq, cemi, &mut f);
        self.send(&f).await;
    }

    async fn connect(&mut self, channel: u8) {
        let req = self.expect("CONNECT_REQUEST", frame::CONNECT_REQUEST).await;
        // The control endpoint told is the client's own address.
        assert_eq!(&req[6..8], &[8, 1]);
        assert_eq!(&req[8..12], &[127, 0, 0, 1]);
        self.send(&connect_response(channel, self.addr())).await;
    }
}

/// A clock one millisecond later at every look.
struct Ticking(std::sync::atomic::AtomicI64);

impl gateway_core::Clock for Ticking {
    fn now(&self) -> gateway_core::Timestamp {
        let ms = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        gateway_core::Timestamp::from_millis(ms).unwrap()
    }
}

#[tokio::test]
async fn repeats_are_acked_not_read_twice_a_lost_ack_is_resent_once_then_the_tunnel_is_rebuilt() {
    let mut knx = Interface::bind().await;
    let mut s = settings(knx.addr(), false);
    s.clock = ArrivalClock(std::sync::Arc::new(Ticking(1_000.into())));
    let mut c = Client::start(s);
    knx.connect(7).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );

    // Sequence 0, then 0 again (our ack was lost), then 5 (out of order),
    // then 1: three acks, two telegrams read.
    knx.tunnel(7, 0, &ldata(0x29, "1/2/3", [0x0C, 0x33])).await;
    let ack = knx.expect("ack of 0", frame::TUNNELLING_ACK).await;
    assert_eq!((ack[7], ack[8], ack[9]), (7, 0, 0));
    knx.tunnel(7, 0, &ldata(0x29, "1/2/3", [0x0C, 0x33])).await;
    assert_eq!(
        knx.expect("ack of the repeat", frame::TUNNELLING_ACK).await[8],
        0
    );
    knx.tunnel(7, 5, &ldata(0x29, "1/2/3", [0x0C, 0x34])).await;
    assert!(
        knx.recv(Duration::from_millis(200)).await.is_none(),
        "an out-of-order telegram is not acknowledged"
    );
    knx.tunnel(7, 1, &ldata(0x29, "1/2/3", [0x0C, 0x35])).await;
    assert_eq!(knx.expect("ack of 1", frame::TUNNELLING_ACK).await[8], 1);
    let LinkEvent::Telegram(first) = c.event().await else {
        panic!()
    };
    let LinkEvent::Telegram(second) = c.event().await else {
        panic!()
    };
    assert_eq!(
        first.data.as_data(),
        crate::knx::cemi::Data::Bytes(&[0x0C, 0x33])
    );
    assert_eq!(
        second.data.as_data(),
        crate::knx::cemi::Data::Bytes(&[0x0C, 0x35])
    );
    // Each stamped by the link's clock as its datagram came in.
    assert!(first.at.as_millis() >= 1_000 && first.at < second.at);
    assert_eq!(c.errors("sequence"), 1);

    // Our telegram, unacknowledged: sent again once with the same
    // sequence; acknowledged then, and done on its L_Data.con.
    let done = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x33])).await;
    let first = knx.expect("the write", frame::TUNNELLING_REQUEST).await;
    let again = knx
        .expect("the write again", frame::TUNNELLING_REQUEST)
        .await;
    assert_eq!(first, again);
    assert_eq!(first[8], 0, "our first sequence number");
    let mut ack = Vec::new();
    frame::tunnelling_ack(7, 0, &mut ack);
    knx.send(&ack).await;
    knx.tunnel(7, 2, &ldata(0x2E, "1/2/4", [0x0C, 0x33])).await;
    assert_eq!(
        knx.expect("ack of the confirmation", frame::TUNNELLING_ACK)
            .await[8],
        2
    );
    assert_eq!(timeout(WAIT, done).await.unwrap().unwrap(), Ok(()));

    // Never acknowledged: sent twice, then the tunnel is given up and
    // built again, without a DISCONNECT_REQUEST (a restarted knxd may have
    // given the channel to another client; knxd would close that one's
    // tunnel): the next frame is the CONNECT_REQUEST.
    let done = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x34])).await;
    let first = knx
        .expect("the second write", frame::TUNNELLING_REQUEST)
        .await;
    assert_eq!(first[8], 1);
    knx.expect("the second write again", frame::TUNNELLING_REQUEST)
        .await;
    assert_eq!(
        timeout(WAIT, done).await.unwrap().unwrap(),
        Err(SendFailure::AckMissing)
    );
    let problem = c.down().await;
    assert!(
        problem.starts_with("lost its tunnel to the KNXnet/IP interface 127.0.0.1:"),
        "{problem}"
    );
    assert!(problem.contains("TUNNELLING_ACK missing"), "{problem}");
    assert_eq!(c.errors("ack_missing"), 1);
    knx.connect(8).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );

    // An interface that confirms before it acknowledges: done at once,
    // its late ack ignored, the next telegram on the next sequence number.
    let done = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x35])).await;
    let req = knx
        .expect("a write on the new tunnel", frame::TUNNELLING_REQUEST)
        .await;
    assert_eq!((req[7], req[8]), (8, 0));
    knx.tunnel(8, 0, &ldata(0x2E, "1/2/4", [0x0C, 0x35])).await;
    knx.expect("ack of the confirmation", frame::TUNNELLING_ACK)
        .await;
    assert_eq!(timeout(WAIT, done).await.unwrap().unwrap(), Ok(()));
    let mut late = Vec::new();
    frame::tunnelling_ack(8, 0, &mut late);
    knx.send(&late).await;
    let done = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x36])).await;
    let req = knx
        .expect("the next write", frame::TUNNELLING_REQUEST)
        .await;
    assert_eq!(req[8], 1);
    let mut ack = Vec::new();
    frame::tunnelling_ack(8, 1, &mut ack);
    knx.send(&ack).await;
    knx.tunnel(8, 1, &ldata(0x2E, "1/2/4", [0x0C, 0x36])).await;
    knx.expect("ack of the second confirmation", frame::TUNNELLING_ACK)
        .await;
    assert_eq!(timeout(WAIT, done).await.unwrap().unwrap(), Ok(()));
    c.stop.cancel();
    let bye = knx
        .expect("DISCONNECT_REQUEST at stop", frame::DISCONNECT_REQUEST)
        .await;
    assert_eq!(bye[6], 8);
}

/// The attack: a command's telegram whose TUNNELLING_ACK was lost was
/// sent again a second later whatever was left of the command's max_age:
/// with half a second left, the repeat could reach the bus half a second
/// late. Now it is not repeated past the deadline: its ack is still
/// waited for, and without one the tunnel is rebuilt as after a repeat.
#[tokio::test]
async fn a_lost_ack_is_not_answered_by_a_repeat_past_the_commands_deadline() {
    let mut knx = Interface::bind().await;
    let mut c = Client::start(settings(knx.addr(), false));
    knx.connect(7).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let done = c
        .write_until("1/2/4", Payload::Bytes(vec![0x0C, 0x34]), Some(deadline))
        .await;
    knx.expect("the write", frame::TUNNELLING_REQUEST).await;
    // Never acknowledged: the next frame is the tunnel built again.
    knx.connect(8).await;
    assert_eq!(
        timeout(WAIT, done).await.unwrap().unwrap(),
        Err(SendFailure::AckMissing)
    );
    assert_eq!(c.errors("ack_missing"), 1);
    c.stop.cancel();
}

#[tokio::test]
async fn no_slot_is_named_and_retried_and_a_silent_interface_loses_the_tunnel_after_three_heartbeats(
) {
    let mut knx = Interface::bind().await;
    let mut s = settings(knx.addr(), false);
    s.heartbeat = Duration::from_millis(200);
    s.timeout = Duration::from_millis(100);
    let mut c = Client::start(s);
    knx.expect("CONNECT_REQUEST", frame::CONNECT_REQUEST).await;
    knx.send(&[0x06, 0x10, 0x02, 0x06, 0x00, 0x08, 0x00, 0x24])
        .await;
    let problem = c.down().await;
    assert!(problem.contains("has no more connections"), "{problem}");
    knx.connect(3).await;
    assert_eq!(c.errors("no_more_connections"), 1);
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    // Answered: the tunnel stays.
    let state = knx
        .expect("CONNECTIONSTATE_REQUEST", frame::CONNECTIONSTATE_REQUEST)
        .await;
    assert_eq!(state[6], 3);
    knx.send(&[0x06, 0x10, 0x02, 0x08, 0x00, 0x08, 3, 0]).await;
    // Unanswered three times: lost.
    for i in 0..3 {
        knx.expect(
            &format!("heartbeat try {i}"),
            frame::CONNECTIONSTATE_REQUEST,
        )
        .await;
    }
    let problem = c.down().await;
    assert!(
        problem.contains("none of 3 CONNECTIONSTATE_REQUESTs"),
        "{problem}"
    );
    assert_eq!(c.errors("heartbeat_lost"), 1);
    // Not disconnected at once; only when the interface has no slot left
    // for the new tunnel, the lost one (channel 3) is let go for it, also
    // after a try the interface did not answer (paused, or a cut).
    knx.expect("CONNECT_REQUEST again", frame::CONNECT_REQUEST)
        .await;
    knx.expect("CONNECT_REQUEST after no answer", frame::CONNECT_REQUEST)
        .await;
    knx.send(&[0x06, 0x10, 0x02, 0x06, 0x00, 0x08, 0x00, 0x24])
        .await;
    let bye = knx
        .expect("DISCONNECT_REQUEST of the lost tunnel", frame::DISCONNECT_REQUEST)
        .await;
    assert_eq!(bye[6], 3, "the lost tunnel's channel");
    knx.connect(4).await;
    c.stop.cancel();
}

#[tokio::test]
async fn over_tcp_frames_are_cut_by_their_length_and_nothing_is_acknowledged() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = Client::start(settings(listener.local_addr().unwrap(), true));
    let (mut stream, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut head = [0u8; 26];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[2..4], &[0x02, 0x05], "CONNECT_REQUEST");
    // KNXnet/IP 2.0: TCP endpoints, 0.0.0.0:0.
    assert_eq!(&head[6..14], &[8, 2, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&head[22..26], &[4, 4, 2, 0]);
    let mut resp = connect_response(1, "0.0.0.0:0".parse().unwrap());
    resp[9] = 2;
    stream.write_all(&resp).await.unwrap();
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    // One telegram in two pieces, then two in one piece.
    let mut f = Vec::new();
    frame::tunnelling_request(1, 0, &ldata(0x29, "1/2/3", [0x0C, 0x33]), &mut f);
    stream.write_all(&f[..5]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(&f[5..]).await.unwrap();
    let mut two = Vec::new();
    frame::tunnelling_request(1, 1, &ldata(0x29, "1/2/5", [0x00, 0x01]), &mut two);
    frame::tunnelling_request(1, 2, &ldata(0x29, "1/2/6", [0x00, 0x02]), &mut two);
    stream.write_all(&two).await.unwrap();
    for ga in ["1/2/3", "1/2/5", "1/2/6"] {
        let LinkEvent::Telegram(t) = c.event().await else {
            panic!()
        };
        assert_eq!(t.destination.to_string(), ga);
    }
    // A write: no TUNNELLING_ACK either way; done on the confirmation.
    let done = c.write("1/2/4", Payload::Small(1)).await;
    let mut req = [0u8; 21];
    timeout(WAIT, stream.read_exact(&mut req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &req[2..4],
        &[0x04, 0x20],
        "TUNNELLING_REQUEST, not an ack: {req:02x?}"
    );
    let mut con = Vec::new();
    // The echo of the request: a 1-bit write, its value in the APCI octet.
    let mut cemi = ldata(0x2E, "1/2/4", [0, 0]);
    cemi.truncate(8);
    cemi.extend_from_slice(&[1, 0, 0x81]);
    frame::tunnelling_request(1, 3, &cemi, &mut con);
    stream.write_all(&con).await.unwrap();
    assert_eq!(timeout(WAIT, done).await.unwrap().unwrap(), Ok(()));
    c.stop.cancel();
}

#[tokio::test]
async fn behind_nat_the_endpoints_are_unspecified_and_data_goes_to_the_address_reached() {
    let mut knx = Interface::bind().await;
    let data = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut s = settings(knx.addr(), false);
    s.nat = true;
    let mut c = Client::start(s);
    let req = knx.expect("CONNECT_REQUEST", frame::CONNECT_REQUEST).await;
    assert_eq!(
        &req[6..14],
        &[8, 1, 0, 0, 0, 0, 0, 0],
        "control endpoint 0.0.0.0:0"
    );
    assert_eq!(
        &req[14..22],
        &[8, 1, 0, 0, 0, 0, 0, 0],
        "data endpoint 0.0.0.0:0"
    );
    // The interface names its private address and another port for data.
    let port = data.local_addr().unwrap().port();
    knx.send(&connect_response(
        2,
        SocketAddr::from(([10, 1, 2, 3], port)),
    ))
    .await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    let _done = c.write("1/2/4", Payload::Small(1)).await;
    let mut buf = [0u8; 64];
    let (n, _) = timeout(WAIT, data.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &buf[2..4],
        &[0x04, 0x20],
        "the telegram on the data port: {:02x?}",
        &buf[..n]
    );
    c.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_tunnel_silent_past_refresh_after_silence_is_made_again_once_a_telegram_postpones_it() {
    let mut knx = Interface::bind().await;
    let mut s = settings(knx.addr(), false);
    s.refresh_after_silence = Duration::from_secs(10);
    let mut c = Client::start(s);
    knx.connect(1).await;
    let first = knx.client.unwrap();
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );

    // A telegram 8 s in: the 10 s start again from it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    knx.tunnel(1, 0, &ldata(0x29, "1/2/3", [0x0C, 0x33])).await;
    knx.expect("ack", frame::TUNNELLING_ACK).await;
    let heard = tokio::time::Instant::now();
    assert!(matches!(c.event().await, LinkEvent::Telegram(_)));
    assert!(
        knx.recv(Duration::from_secs(9)).await.is_none(),
        "nothing sent 10 s after the connect: the telegram postponed the refresh"
    );

    // Then 10 s of silence: a new tunnel from a new socket, the old one
    // not disconnected (its channel may be another client's now), and no
    // moment without a tunnel in /health.
    let req = knx.recv(WAIT).await.expect("a refresh");
    assert_eq!(&req[2..4], &[0x02, 0x05], "CONNECT_REQUEST: {req:02x?}");
    let refreshed = tokio::time::Instant::now();
    let waited = heard.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    assert_ne!(knx.client.unwrap(), first, "a new socket");
    knx.send(&connect_response(2, knx.addr())).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    assert_eq!(c.errors("silent"), 1);
    knx.tunnel(2, 0, &ldata(0x29, "1/2/3", [0x0C, 0x34])).await;
    let ack = knx.expect("ack on the new channel", frame::TUNNELLING_ACK).await;
    assert_eq!(ack[7], 2);
    assert!(matches!(c.event().await, LinkEvent::Telegram(_)));
    let again = tokio::time::Instant::now();

    // Silent again: refreshed again, but not before the interface has let
    // the first abandoned tunnel go (CONNECTION_ALIVE_TIME, 120 s), so
    // refreshes never hold more than one slot more. The heartbeats on the
    // way are answered.
    let req = loop {
        let f = knx.recv(Duration::from_secs(121)).await.expect("a second refresh");
        if f[2..4] == [0x02, 0x07] {
            knx.send(&[0x06, 0x10, 0x02, 0x08, 0x00, 0x08, 2, 0]).await;
            continue;
        }
        break f;
    };
    assert_eq!(&req[2..4], &[0x02, 0x05], "CONNECT_REQUEST: {req:02x?}");
    assert!(again.elapsed() >= Duration::from_secs(10));
    let between = refreshed.elapsed();
    assert!(
        between >= Duration::from_secs(120) && between < Duration::from_secs(121),
        "{between:?}"
    );
    // Every slot taken: the old tunnel is disconnected for the new one,
    // which is asked for again at once.
    knx.send(&[0x06, 0x10, 0x02, 0x06, 0x00, 0x08, 0x00, 0x24])
        .await;
    let bye = knx
        .expect("DISCONNECT_REQUEST of the old tunnel", frame::DISCONNECT_REQUEST)
        .await;
    assert_eq!(bye[6], 2);
    knx.connect(3).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    assert_eq!(c.errors("silent"), 2);
    assert_eq!(c.errors("no_more_connections"), 0);
    c.stop.cancel();
}

/// [`ldata`] of a negative L_Data.con: the interface could not send it.
fn negative_con(ga: &str, data: [u8; 2]) -> Vec<u8> {
    let mut c = ldata(0x2E, ga, data);
    c[2] |= 0x01;
    c
}

#[tokio::test(start_paused = true)]
async fn a_late_confirmation_settles_only_the_write_it_echoes() {
    let mut knx = Interface::bind().await;
    let mut c = Client::start(settings(knx.addr(), false));
    knx.connect(7).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    let ack = |seq| {
        let mut f = Vec::new();
        frame::tunnelling_ack(7, seq, &mut f);
        f
    };

    // Acknowledged, never confirmed: failed after CONFIRM_TIMEOUT.
    let first = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x33])).await;
    knx.expect("the first write", frame::TUNNELLING_REQUEST)
        .await;
    knx.send(&ack(0)).await;
    assert_eq!(
        timeout(WAIT, first).await.unwrap().unwrap(),
        Err(SendFailure::NoConfirmation(CONFIRM_TIMEOUT))
    );

    // The next write to that address, acknowledged; the first one's
    // confirmation comes late, then this one's, negative: it failed.
    let second = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x34])).await;
    knx.expect("the second write", frame::TUNNELLING_REQUEST)
        .await;
    knx.send(&ack(1)).await;
    knx.tunnel(7, 0, &ldata(0x2E, "1/2/4", [0x0C, 0x33])).await;
    knx.expect("ack of the late confirmation", frame::TUNNELLING_ACK)
        .await;
    knx.tunnel(7, 1, &negative_con("1/2/4", [0x0C, 0x34])).await;
    knx.expect("ack of the confirmation", frame::TUNNELLING_ACK)
        .await;
    assert_eq!(
        timeout(WAIT, second).await.unwrap().unwrap(),
        Err(SendFailure::NotConfirmed)
    );

    // Not yet acknowledged (an interface that confirms first): a stale
    // confirmation does not settle it either.
    let third = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x35])).await;
    let req = knx.expect("the third write", frame::TUNNELLING_REQUEST).await;
    assert_eq!(req[8], 2);
    knx.tunnel(7, 2, &ldata(0x2E, "1/2/4", [0x0C, 0x34])).await;
    knx.expect("ack of the stale confirmation", frame::TUNNELLING_ACK)
        .await;
    knx.tunnel(7, 3, &negative_con("1/2/4", [0x0C, 0x35])).await;
    knx.expect("ack of the third's confirmation", frame::TUNNELLING_ACK)
        .await;
    assert_eq!(
        timeout(WAIT, third).await.unwrap().unwrap(),
        Err(SendFailure::NotConfirmed)
    );
    c.stop.cancel();
}

/// An interface that grants a tunnel after the gateway stopped waiting
/// (paused, busy) would hold that slot unused for 120 s, refusing other
/// clients: the late grant is disconnected from the socket it came to.
#[tokio::test]
async fn a_tunnel_granted_after_the_wait_is_disconnected_at_once() {
    let mut knx = Interface::bind().await;
    let mut c = Client::start(settings(knx.addr(), false));
    knx.expect("CONNECT_REQUEST", frame::CONNECT_REQUEST).await;
    let first = knx.client.unwrap();
    // Unanswered for the 300 ms timeout: the next try, from a new socket.
    knx.expect("CONNECT_REQUEST again", frame::CONNECT_REQUEST)
        .await;
    let second = knx.client.unwrap();
    assert_ne!(first, second);
    // The first one's grant, late, to the first socket.
    knx.socket
        .send_to(&connect_response(5, knx.addr()), first)
        .await
        .unwrap();
    let bye = loop {
        let f = knx.recv(WAIT).await.expect("the late grant let go");
        if f[2..4] == [0x02, 0x09] {
            break f;
        }
    };
    assert_eq!(knx.client.unwrap(), first, "from the socket it was granted to");
    assert_eq!(bye[6], 5, "the late grant's channel");
    knx.client = Some(second);
    knx.connect(6).await;
    // After the tries' "no answer" reports, connected.
    loop {
        match c.event().await {
            LinkEvent::Down(_) => continue,
            other => {
                assert_eq!(other, LinkEvent::Connected("1.1.9".parse().unwrap()));
                break;
            }
        }
    }
    c.stop.cancel();
}

/// The attack: with knxd on the gateway's own host (a Raspberry Pi with a
/// USB interface, tunnelled to at 127.0.0.1), any local process could
/// send to the tunnel's socket from another port of that address: a
/// DISCONNECT_REQUEST with the channel (one byte to guess) dropped the
/// tunnel, and a TUNNELLING_REQUEST with the expected sequence number
/// was read as a bus telegram. Only the interface's control and data
/// endpoints are listened to now. A scripted socket: knxd cannot be made
/// to send from a port other than its own.
#[tokio::test]
async fn datagrams_from_another_port_of_the_interfaces_address_are_not_the_interfaces() {
    let mut knx = Interface::bind().await;
    let mut c = Client::start(settings(knx.addr(), false));
    knx.connect(7).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    // A first telegram, so that the forger's datagrams go to the client's
    // address the interface learnt.
    knx.tunnel(7, 0, &ldata(0x29, "1/2/3", [0x0C, 0x33])).await;
    knx.expect("ack of 0", frame::TUNNELLING_ACK).await;
    assert!(matches!(c.event().await, LinkEvent::Telegram(_)));

    let forger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = knx.client.unwrap();
    let mut f = Vec::new();
    frame::tunnelling_request(7, 1, &ldata(0x29, "1/2/3", [0x0F, 0xFF]), &mut f);
    forger.send_to(&f, to).await.unwrap();
    let mut bye = Vec::new();
    frame::disconnect_request(7, frame::Hpai::NAT, &mut bye);
    forger.send_to(&bye, to).await.unwrap();

    // The interface's own telegram with that sequence number is the one
    // read, on the tunnel still up.
    knx.tunnel(7, 1, &ldata(0x29, "1/2/3", [0x0C, 0x34])).await;
    let ack = knx.expect("ack of 1", frame::TUNNELLING_ACK).await;
    assert_eq!(ack[8], 1);
    match c.event().await {
        LinkEvent::Telegram(t) => assert_eq!(
            t.data.as_data(),
            crate::knx::cemi::Data::Bytes(&[0x0C, 0x34])
        ),
        other => panic!("expected the interface's telegram, got {other:?}"),
    }
    c.stop.cancel();
}

/// The attack: an interface whose KNX side is briefly down (its bus
/// power, a line coupler restarting) answers the heartbeat with
/// E_KNX_CONNECTION (0x27), or E_DATA_CONNECTION (0x26): the tunnel was
/// dropped at once, commands under way failed, and as "gone" it was never
/// disconnected, holding one of the interface's few slots for 120 s.
/// KNX 3.8.2 §5.4 has the request repeated (three tries, as for no
/// answer); only E_CONNECTION_ID says the tunnel is no more. Scripted:
/// knxd answers a heartbeat with E_NO_ERROR or E_CONNECTION_ID only.
#[tokio::test]
async fn a_heartbeat_answered_with_a_knx_side_error_is_repeated_not_the_tunnel_dropped() {
    let mut knx = Interface::bind().await;
    let mut s = settings(knx.addr(), false);
    s.heartbeat = Duration::from_millis(500);
    s.timeout = Duration::from_millis(200);
    let mut c = Client::start(s);
    knx.connect(3).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    for status in [0x27, 0x26] {
        let state = knx
            .expect("CONNECTIONSTATE_REQUEST", frame::CONNECTIONSTATE_REQUEST)
            .await;
        assert_eq!(state[6], 3);
        knx.send(&[0x06, 0x10, 0x02, 0x08, 0x00, 0x08, 3, status])
            .await;
        // Repeated, and answered well this time: the tunnel stays.
        knx.expect("the heartbeat repeated", frame::CONNECTIONSTATE_REQUEST)
            .await;
        knx.send(&[0x06, 0x10, 0x02, 0x08, 0x00, 0x08, 3, 0]).await;
    }
    // Still the same tunnel: a telegram on channel 3 is read.
    knx.tunnel(3, 0, &ldata(0x29, "1/2/3", [0x0C, 0x33])).await;
    knx.expect("ack of 0", frame::TUNNELLING_ACK).await;
    assert!(
        matches!(c.event().await, LinkEvent::Telegram(_)),
        "the tunnel was dropped"
    );
    // Three error answers in a row: given up as after three silences, and
    // kept for a DISCONNECT_REQUEST should the interface have no slot for
    // the new tunnel.
    for i in 0..3 {
        knx.expect(
            &format!("heartbeat try {i}"),
            frame::CONNECTIONSTATE_REQUEST,
        )
        .await;
        knx.send(&[0x06, 0x10, 0x02, 0x08, 0x00, 0x08, 3, 0x27])
            .await;
    }
    let problem = c.down().await;
    assert!(problem.contains("E_KNX_CONNECTION"), "{problem}");
    assert_eq!(c.errors("heartbeat_lost"), 1);
    knx.expect("CONNECT_REQUEST again", frame::CONNECT_REQUEST)
        .await;
    knx.send(&[0x06, 0x10, 0x02, 0x06, 0x00, 0x08, 0x00, 0x24])
        .await;
    let bye = knx
        .expect("DISCONNECT_REQUEST of the lost tunnel", frame::DISCONNECT_REQUEST)
        .await;
    assert_eq!(bye[6], 3);
    knx.connect(4).await;
    c.stop.cancel();
}

/// The attack: a telegram of the interface's lost both times it was sent
/// (a burst overflowing the socket, a Wi-Fi bridge dropping out), and an
/// interface that then goes on with the next sequence number rather than
/// closing the tunnel (KNX 3.8.4 asks it to close it; xknx notes some do
/// not): every later telegram was out of sequence, dropped unacknowledged
/// and counted, for good. The heartbeat was answered, each dropped frame
/// put off the silence refresh, and `/health` stayed ok while the gateway
/// heard nothing. Three out of sequence in a row, none in sequence
/// between, now rebuild the tunnel. Scripted: knxd cannot be made to skip
/// a sequence number.
#[tokio::test]
async fn an_interface_that_skipped_a_sequence_number_for_good_gets_a_new_tunnel() {
    let mut knx = Interface::bind().await;
    let mut c = Client::start(settings(knx.addr(), false));
    knx.connect(7).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    knx.tunnel(7, 0, &ldata(0x29, "1/2/3", [0x0C, 0x33])).await;
    knx.expect("ack of 0", frame::TUNNELLING_ACK).await;
    assert!(matches!(c.event().await, LinkEvent::Telegram(_)));
    // Sequence 1 never arrived; the interface goes on from 2.
    for seq in 2..5 {
        knx.tunnel(7, seq, &ldata(0x29, "1/2/3", [0x0C, seq])).await;
    }
    let problem = c.down().await;
    assert!(problem.contains("out of sequence"), "{problem}");
    assert_eq!(c.errors("sequence"), 3);
    assert_eq!(c.errors("sequence_lost"), 1);
    // A new tunnel, whose counters start again at 0: heard.
    knx.connect(8).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    knx.tunnel(8, 0, &ldata(0x29, "1/2/3", [0x0C, 0x40])).await;
    knx.expect("ack of 0 on the new tunnel", frame::TUNNELLING_ACK)
        .await;
    match c.event().await {
        LinkEvent::Telegram(t) => assert_eq!(
            t.data.as_data(),
            crate::knx::cemi::Data::Bytes(&[0x0C, 0x40])
        ),
        other => panic!("expected the telegram, got {other:?}"),
    }
    c.stop.cancel();
}

/// [`frame::tunnelling_ack`] with an error status.
fn error_ack(channel: u8, seq: u8, status: u8) -> Vec<u8> {
    let mut f = Vec::new();
    frame::tunnelling_ack(channel, seq, &mut f);
    f[9] = status;
    f
}

/// The attack: a TUNNELLING_ACK with an error status failed the command
/// at once, with nothing logged or counted, and the next telegram went
/// out on the next sequence number, which an interface that had not taken
/// this one (E_SEQUENCE_NUMBER, a full queue) would drop. KNX 3.8.4 §2.6
/// (and xknx) repeat the telegram once with the same sequence number, and
/// end the tunnel when the repeat is refused too. Scripted: knxd
/// acknowledges every well-formed telegram with E_NO_ERROR.
#[tokio::test]
async fn a_telegram_acknowledged_with_an_error_is_repeated_once_then_the_tunnel_is_rebuilt() {
    let mut knx = Interface::bind().await;
    let mut c = Client::start(settings(knx.addr(), false));
    knx.connect(7).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    let done = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x33])).await;
    let first = knx.expect("the write", frame::TUNNELLING_REQUEST).await;
    knx.send(&error_ack(7, 0, 0x29)).await;
    let again = knx
        .expect("the write repeated", frame::TUNNELLING_REQUEST)
        .await;
    assert_eq!(first, again, "the same telegram, the same sequence number");
    let mut ack = Vec::new();
    frame::tunnelling_ack(7, 0, &mut ack);
    knx.send(&ack).await;
    knx.tunnel(7, 0, &ldata(0x2E, "1/2/4", [0x0C, 0x33])).await;
    knx.expect("ack of the confirmation", frame::TUNNELLING_ACK)
        .await;
    assert_eq!(timeout(WAIT, done).await.unwrap().unwrap(), Ok(()));
    assert_eq!(c.errors("ack_error"), 1);

    // Refused twice: the command fails and the tunnel is built again.
    let done = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x34])).await;
    let req = knx.expect("the next write", frame::TUNNELLING_REQUEST).await;
    assert_eq!(req[8], 1, "the next sequence number");
    knx.send(&error_ack(7, 1, 0x04)).await;
    knx.expect("the next write repeated", frame::TUNNELLING_REQUEST)
        .await;
    knx.send(&error_ack(7, 1, 0x04)).await;
    let failed = timeout(WAIT, done).await.unwrap().unwrap();
    assert_eq!(failed.as_ref().map_err(SendFailure::reason), Err("not_confirmed"));
    let problem = c.down().await;
    assert!(problem.contains("sequence number out of order"), "{problem}");
    // Each refusal counted, the last with the tunnel's end.
    assert_eq!(c.errors("ack_error"), 3);
    knx.connect(8).await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    c.stop.cancel();
}

/// The attack: an interface that grants the tunnel and closes it at once
/// (its tunnelling disabled for the gateway's address, a firmware fault,
/// a server restarting in a loop) was asked again every 0.25 to 0.5 s
/// for good: the backoff started over at each grant, however short the
/// tunnel. Every grant also sent the `read_on_start` reads to the bus
/// and flapped `/health`. The backoff now starts over only after a tunnel
/// that lasted. Scripted: knxd keeps the tunnels it grants.
#[tokio::test(start_paused = true)]
async fn an_interface_closing_each_tunnel_at_once_is_asked_again_with_a_growing_backoff() {
    let mut knx = Interface::bind().await;
    let mut s = settings(knx.addr(), false);
    s.max_backoff = Duration::from_secs(30);
    let mut c = Client::start(s);
    let mut asked = Vec::new();
    for channel in 1..=6 {
        // The clock is paused: a wait as long as the backoff costs nothing.
        let req = knx.recv(Duration::from_secs(60)).await.expect("a CONNECT_REQUEST");
        assert_eq!(&req[2..4], &[0x02, 0x05], "CONNECT_REQUEST: {req:02x?}");
        knx.send(&connect_response(channel, knx.addr())).await;
        asked.push(tokio::time::Instant::now());
        assert_eq!(
            c.event().await,
            LinkEvent::Connected("1.1.9".parse().unwrap())
        );
        let mut bye = Vec::new();
        frame::disconnect_request(channel, frame::Hpai::NAT, &mut bye);
        knx.send(&bye).await;
        knx.expect("DISCONNECT_RESPONSE", frame::DISCONNECT_RESPONSE)
            .await;
        assert!(c.down().await.contains("closed the tunnel"));
    }
    let last = asked[5] - asked[4];
    // Attempt 4 of the backoff from 0.5 s: 4 to 8 s; at most 0.5 s before.
    assert!(last >= Duration::from_secs(4), "asked again after {last:?}");
    c.stop.cancel();
}

/// The attack (an interoperability one first): an interface that answers
/// CONNECT_REQUEST with the data endpoint 0.0.0.0:0 ("route back") and
/// sends its telegrams from another port than its control endpoint (knxd
/// `--multi-port` does: edge-gateway's `knx_attacks.rs`) was not heard at
/// all. Heard now from that port, learnt from the first telegram of the
/// channel from the interface's address; a forger on another host is not
/// heard before it, and another port of the interface's address not after
/// it. Scripted: knxd cannot be made to forge. With `nat` and without: a
/// 0.0.0.0:0 data endpoint means the same either way.
#[tokio::test]
async fn an_interface_naming_no_data_endpoint_is_heard_from_its_data_port_and_a_forger_is_not() {
    for nat in [true, false] {
        route_back(nat).await;
    }
}

async fn route_back(nat: bool) {
    let mut knx = Interface::bind().await;
    let data = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut s = settings(knx.addr(), false);
    s.nat = nat;
    let mut c = Client::start(s);
    knx.expect("CONNECT_REQUEST", frame::CONNECT_REQUEST).await;
    knx.send(&connect_response(3, SocketAddr::from(([0, 0, 0, 0], 0))))
        .await;
    assert_eq!(
        c.event().await,
        LinkEvent::Connected("1.1.9".parse().unwrap())
    );
    let client = knx.client.unwrap();
    let telegram = |seq: u8, data: [u8; 2]| {
        let mut f = Vec::new();
        frame::tunnelling_request(3, seq, &ldata(0x29, "1/2/3", data), &mut f);
        f
    };
    let read = |e: LinkEvent| match e {
        LinkEvent::Telegram(t) => match t.data.as_data() {
            crate::knx::cemi::Data::Bytes(b) => [b[0], b[1]],
            other => panic!("{other:?}"),
        },
        other => panic!("expected a telegram, got {other:?}"),
    };
    // A forger on another host of the LAN, first with the channel's next
    // telegram: not the interface, whatever it carries.
    let forger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    forger
        .send_to(&telegram(0, [0x0F, 0xFF]), client)
        .await
        .unwrap();
    // The interface's, from its data port: read, and acknowledged to where
    // the CONNECT_RESPONSE came from.
    data.send_to(&telegram(0, [0x0C, 0x33]), client)
        .await
        .unwrap();
    knx.expect("ack of 0", frame::TUNNELLING_ACK).await;
    assert_eq!(read(c.event().await), [0x0C, 0x33], "nat = {nat}");
    // Another port of the interface's address, once the data port is
    // known: another process of its host, not heard.
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    other
        .send_to(&telegram(1, [0x0F, 0xFE]), client)
        .await
        .unwrap();
    let mut bye = Vec::new();
    frame::disconnect_request(3, frame::Hpai::NAT, &mut bye);
    other.send_to(&bye, client).await.unwrap();
    forger.send_to(&bye, client).await.unwrap();
    data.send_to(&telegram(1, [0x0C, 0x34]), client)
        .await
        .unwrap();
    let ack = knx.expect("ack of 1", frame::TUNNELLING_ACK).await;
    assert_eq!(ack[8], 1);
    assert_eq!(read(c.event().await), [0x0C, 0x34], "nat = {nat}");
    // Each of the four, counted (and logged, throttled).
    assert_eq!(c.errors("foreign_datagram"), 4, "nat = {nat}");
    // The gateway's telegram goes where the CONNECT_RESPONSE came from;
    // its confirmation, from the data port, settles it.
    let done = c.write("1/2/4", Payload::Bytes(vec![0x0C, 0x35])).await;
    let req = knx.expect("the write", frame::TUNNELLING_REQUEST).await;
    let mut ack = Vec::new();
    frame::tunnelling_ack(3, req[8], &mut ack);
    knx.send(&ack).await;
    let mut con = Vec::new();
    frame::tunnelling_request(3, 2, &ldata(0x2E, "1/2/4", [0x0C, 0x35]), &mut con);
    data.send_to(&con, client).await.unwrap();
    assert_eq!(timeout(WAIT, done).await.unwrap().unwrap(), Ok(()));
    assert_eq!(c.errors("connection_lost"), 0, "nat = {nat}");
    c.stop.cancel();
}

/// An interface naming no data endpoint that sends its telegrams from its
/// control endpoint (knxd with its single port and `nat = true`, the
/// common case): once it did, no other port of its address is taken for
/// its data port, as if it had named its control endpoint.
#[tokio::test]
async fn route_back_from_the_control_endpoint_leaves_no_other_port_to_learn() {
    let mut knx = Interface::bind().await;
    let mut s = settings(knx.addr(), false);
    s.nat = true;
    let mut c = Client::start(s);
    knx.expect("CONNECT_REQUEST", frame::CONNECT_REQUEST).await;
    knx.send(&connect_response(4, SocketAddr::from(([0, 0, 0, 0], 0))))
        .await;
    assert!(matches!(c.event().await, LinkEvent::Connected(_)));
    knx.tunnel(4, 0, &ldata(0x29, "1/2/3", [0x0C, 0x33])).await;
    knx.expect("ack of 0", frame::TUNNELLING_ACK).await;
    assert!(matches!(c.event().await, LinkEvent::Telegram(_)));
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut f = Vec::new();
    frame::tunnelling_request(4, 1, &ldata(0x29, "1/2/3", [0x0F, 0xFF]), &mut f);
    other.send_to(&f, knx.client.unwrap()).await.unwrap();
    knx.tunnel(4, 1, &ldata(0x29, "1/2/3", [0x0C, 0x34])).await;
    knx.expect("ack of 1", frame::TUNNELLING_ACK).await;
    match c.event().await {
        LinkEvent::Telegram(t) => assert_eq!(
            t.data.as_data(),
            crate::knx::cemi::Data::Bytes(&[0x0C, 0x34])
        ),
        other => panic!("expected the interface's telegram, got {other:?}"),
    }
    assert_eq!(c.errors("foreign_datagram"), 1);
    c.stop.cancel();
}
