//! Commands from the cloud to LoRaWAN devices: `{"id", "port", "data"}`
//! becomes an entry of the device's downlink queue (the one the downlink
//! topic fills), and its result waits for that payload to leave. For a
//! device with a `js:` codec, `{"id", "data": {…}}` is encoded by the
//! codec's `encodeDownlink` (on the codec workers) into its bytes and
//! FPort first; its errors refuse the command (`codec`).
//!
//! A Class A device only listens right after it transmits, so the command
//! waits for the device's next uplink, at most `command_wait`. Then:
//!
//! - `done`: the PULL_RESP carrying it went to the forwarder and, from a
//!   protocol v2 forwarder, its TX_ACK reported no error (after the RX2
//!   retry the adapter makes on a late RX1, if it made one). A v1
//!   forwarder sends no TX_ACK: `done` once handed over. Unconfirmed, as
//!   the queue sends it: `done` is "transmitted", not "received".
//! - `failed`: the forwarder's TX_ACK reported an error (`tx_ack`, with
//!   the error in the detail), or none came within [`TX_ACK_WAIT`]
//!   (`timeout`), or the datagram could not be sent (`connection`).
//! - `refused` (`no_uplink`): the device sent nothing within
//!   `command_wait`; the payload is withdrawn from the queue, never sent.
//! - `expired`: the command's `max_age` ran out first (the wait is the
//!   shorter of the two): withdrawn, never sent. A payload is not taken
//!   for a downlink at or after the deadline, nor sent (or resent in
//!   RX2) once it has passed.
//!
//! The socket loop owns the queues and the receive loop sees the TX_ACKs;
//! [`Waiting`] is what they and the command's future share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_core::command::{
    Command, CommandTarget, CommandValue, Refusal, WriteFuture, WriteOutcome,
};
use gateway_core::DeviceId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::class_a::{Queued, MAX_PAYLOAD};
use super::codecs::js::ScriptCodec;
use super::downlink_feed::FeedItem;
use super::semtech::GatewayEui;

/// How long a forwarder's TX_ACK may take: it answers a PULL_RESP at once
/// (lora_pkt_fwd checks the packet against its schedule on receipt), and
/// an RX2 retry comes at most a join-accept's RX2 window later.
pub const TX_ACK_WAIT: Duration = Duration::from_secs(7);

/// What a Class A command waits for before it can be sent.
const UPLINK: &str =
    "the device's next uplink (Class A) with a receive window open before the deadline";

/// FPort of an encoded downlink when neither the codec nor the command
/// names one.
const DEFAULT_ENCODED_PORT: u8 = 1;

/// Commands queued at once for the socket loop.
const QUEUE: usize = 8;

#[derive(Debug)]
struct Entry {
    reply: Option<oneshot::Sender<WriteOutcome>>,
    /// Taken from the queue to be sent: no longer withdrawn on timeout.
    claimed: bool,
    /// The command's `max_age`: nothing of it leaves at or after this.
    deadline: Option<Instant>,
    /// Once sent in RX1: when its RX2 retry would be on air.
    rx2_on_air: Option<Instant>,
}

impl Entry {
    fn late(&self) -> bool {
        self.late_at(Instant::now())
    }

    /// Whether a downlink on air at `on_air` would reach the device at or
    /// after the deadline.
    fn late_at(&self, on_air: Instant) -> bool {
        self.deadline.is_some_and(|d| on_air >= d)
    }
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    entries: HashMap<u64, Entry>,
    /// Sent to a v2 forwarder: its TX_ACK names it by gateway and token.
    by_token: HashMap<(GatewayEui, [u8; 2]), u64>,
}

/// The commands waiting for their downlink to leave.
#[derive(Debug, Default)]
pub struct Waiting {
    state: Mutex<State>,
}

/// What a command that waited too long finds.
#[derive(Debug, PartialEq, Eq)]
enum Expired {
    /// Still queued: withdrawn now, never sent.
    Withdrawn,
    /// Being sent or sent: its TX_ACK decides.
    Claimed,
    /// Resolved meanwhile: its outcome is in the channel.
    Resolved,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new command's ticket; `reply` gets its outcome.
    fn open(&self, reply: oneshot::Sender<WriteOutcome>, deadline: Option<Instant>) -> u64 {
        let mut s = self.lock();
        s.next = s.next.wrapping_add(1);
        let ticket = s.next;
        s.entries.insert(
            ticket,
            Entry {
                reply: Some(reply),
                claimed: false,
                deadline,
                rx2_on_air: None,
            },
        );
        ticket
    }

    /// Whether the command still waits for its payload to leave, and may.
    pub fn is_open(&self, ticket: u64) -> bool {
        self.lock().entries.get(&ticket).is_some_and(|e| !e.late())
    }

    /// The socket loop takes the payload to send it, on air at `on_air`
    /// (the receive window's time, not the PULL_RESP's); `false` when its
    /// command gave up meanwhile or its deadline comes by then (then it is
    /// not sent, and the command's own wait, which ends at the deadline,
    /// reports it `expired`).
    pub fn claim(&self, ticket: u64, on_air: Instant) -> bool {
        match self.lock().entries.get_mut(&ticket) {
            Some(e) if !e.late_at(on_air) => {
                e.claimed = true;
                true
            }
            _ => false,
        }
    }

    /// Just before the claimed payload leaves, on air at `on_air` in the
    /// window it was scheduled for: `true` when that is at or past its
    /// deadline (RX2 is a second later than RX1; a slow fsync of the frame
    /// counter), and the command is then ended `expired`: the datagram
    /// must not be sent.
    pub fn expired_since_claim(&self, ticket: u64, on_air: Instant) -> bool {
        let late = {
            let mut s = self.lock();
            match s.entries.get(&ticket) {
                Some(e) if e.late_at(on_air) => {
                    s.by_token.retain(|_, t| *t != ticket);
                    s.entries.remove(&ticket)
                }
                _ => None,
            }
        };
        let Some(entry) = late else { return false };
        if let Some(reply) = entry.reply {
            let _ = reply.send(WriteOutcome::Refused(Refusal::expired(UPLINK)));
        }
        true
    }

    /// Whether the downlink sent as PULL_RESP `token` may be sent again
    /// in RX2: not when that window opens at or past its command's
    /// deadline (as [`Waiting::sent`] was told; now, if it was not).
    pub fn may_resend(&self, gateway: GatewayEui, token: [u8; 2]) -> bool {
        let s = self.lock();
        s.by_token
            .get(&(gateway, token))
            .and_then(|t| s.entries.get(t))
            .is_none_or(|e| !e.late_at(e.rx2_on_air.unwrap_or_else(Instant::now)))
    }

    /// The payload went to a v2 forwarder as PULL_RESP `token`; its RX2
    /// retry, if any, would be on air at `rx2_on_air`. A forwarder refuses
    /// RX1 (TOO_LATE, COLLISION) as soon as it gets the PULL_RESP, a
    /// window before RX2 opens: the time is the uplink's, not the refusal's.
    pub fn sent(
        &self,
        ticket: u64,
        gateway: GatewayEui,
        token: [u8; 2],
        rx2_on_air: Option<Instant>,
    ) {
        let mut s = self.lock();
        if let Some(e) = s.entries.get_mut(&ticket) {
            e.rx2_on_air = rx2_on_air;
            s.by_token.insert((gateway, token), ticket);
        }
    }

    /// Ends a command with `outcome`.
    pub fn resolve(&self, ticket: u64, outcome: WriteOutcome) {
        let entry = {
            let mut s = self.lock();
            s.by_token.retain(|_, t| *t != ticket);
            s.entries.remove(&ticket)
        };
        if let Some(reply) = entry.and_then(|e| e.reply) {
            let _ = reply.send(outcome);
        }
    }

    /// A forwarder's TX_ACK for PULL_RESP `token`: `error` as it said it
    /// (`None`: sent), `retried` when the adapter sent the RX2 fallback of
    /// the same token, whose own TX_ACK then decides.
    pub fn tx_ack(&self, gateway: GatewayEui, token: [u8; 2], error: Option<&str>, retried: bool) {
        let ticket = self.lock().by_token.get(&(gateway, token)).copied();
        let Some(ticket) = ticket else { return };
        match error {
            None => self.resolve(ticket, WriteOutcome::Done { value: None }),
            Some(_) if retried => {}
            Some(e) => self.resolve(
                ticket,
                WriteOutcome::Failed(Refusal::new(
                    "tx_ack",
                    format!("the forwarder did not transmit it: {e}"),
                )),
            ),
        }
    }

    fn expire(&self, ticket: u64) -> Expired {
        let mut s = self.lock();
        match s.entries.get(&ticket) {
            None => Expired::Resolved,
            Some(e) if e.claimed => Expired::Claimed,
            Some(_) => {
                s.entries.remove(&ticket);
                Expired::Withdrawn
            }
        }
    }

    fn forget(&self, ticket: u64) {
        let mut s = self.lock();
        s.entries.remove(&ticket);
        s.by_token.retain(|_, t| *t != ticket);
    }
}

/// What the socket loop gets of the commands: their downlinks, and what
/// waits for them.
#[derive(Default)]
pub struct Commands {
    pub queue: Option<mpsc::Receiver<FeedItem>>,
    pub waiting: Arc<Waiting>,
}

/// The write side of a `semtech_udp` adapter.
pub struct LorawanTarget {
    /// Each device, with its `js:` codec when it has one that encodes.
    devices: HashMap<DeviceId, Option<ScriptCodec>>,
    queue: mpsc::Sender<FeedItem>,
    waiting: Arc<Waiting>,
    wait: Duration,
}

impl LorawanTarget {
    /// The target for `devices`, its commands' payloads handed to the
    /// socket loop on the returned receiver.
    pub fn new(
        devices: HashMap<DeviceId, Option<ScriptCodec>>,
        waiting: Arc<Waiting>,
        wait: Duration,
    ) -> (Arc<Self>, mpsc::Receiver<FeedItem>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let target = Self {
            devices,
            queue,
            waiting,
            wait,
        };
        (Arc::new(target), rx)
    }
}

/// What a command asks to send.
enum Payload {
    Bytes(u8, Vec<u8>),
    /// For the device's codec to encode.
    Encode(ScriptCodec, Option<u8>, serde_json::Value),
}

fn checked(command: &Command, codec: Option<&ScriptCodec>) -> Result<Payload, Refusal> {
    match &command.value {
        CommandValue::Downlink { port, data } => {
            fits(*port, data)?;
            Ok(Payload::Bytes(*port, data.clone()))
        }
        CommandValue::Encode { port, data } => match codec {
            Some(codec) => Ok(Payload::Encode(
                codec.clone(),
                *port,
                serde_json::Value::Object(data.clone()),
            )),
            None => Err(Refusal::new(
                "type",
                "this device's codec has no encodeDownlink: send {\"id\", \"port\", \"data\": \"hex\"}",
            )),
        },
        _ => Err(Refusal::new(
            "type",
            "a LoRaWAN device takes {\"id\", \"port\", \"data\"} (a downlink)",
        )),
    }
}

fn fits(port: u8, data: &[u8]) -> Result<(), Refusal> {
    if !(1..=223).contains(&port) {
        return Err(Refusal::new(
            "out_of_range",
            format!("FPort {port} is not an application port (1 to 223)"),
        ));
    }
    if data.len() > MAX_PAYLOAD {
        return Err(Refusal::new(
            "out_of_range",
            format!(
                "{} bytes: at most {MAX_PAYLOAD} fit every data rate",
                data.len()
            ),
        ));
    }
    Ok(())
}

/// The codec's bytes and FPort for `data` (its own FPort first, else the
/// command's), from the codec workers.
async fn encode(
    codec: ScriptCodec,
    port: Option<u8>,
    data: serde_json::Value,
) -> Result<(u8, Vec<u8>), Refusal> {
    let (tx, rx) = oneshot::channel();
    codec
        .encode(data, port, move |r| {
            let _ = tx.send(r);
        })
        .map_err(|e| Refusal::new("codec", e.to_string()))?;
    let encoded = rx
        .await
        .map_err(|_| Refusal::new("codec", "the codec worker stopped"))?
        .map_err(|e| Refusal::new("codec", format!("{}: {e}", codec.name())))?;
    // As ChirpStack: the codec's fPort, else the command's; else 1, the
    // port a queue item gets by default there.
    let port = encoded.fport.or(port).unwrap_or(DEFAULT_ENCODED_PORT);
    fits(port, &encoded.bytes)?;
    Ok((port, encoded.bytes))
}

impl LorawanTarget {
    fn codec(&self, device: &DeviceId) -> Option<&ScriptCodec> {
        self.devices.get(device).and_then(Option::as_ref)
    }
}

impl CommandTarget for LorawanTarget {
    fn serves(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device)
    }

    fn check(&self, command: &Command) -> Result<(), Refusal> {
        checked(command, self.codec(&command.device)).map(|_| ())
    }

    fn write(&self, command: Command) -> WriteFuture {
        let checked = checked(&command, self.codec(&command.device));
        let queue = self.queue.clone();
        let waiting = self.waiting.clone();
        let wait = self.wait;
        Box::pin(async move {
            let payload = match checked {
                Ok(c) => c,
                Err(r) => return WriteOutcome::Refused(r),
            };
            let (port, data) = match payload {
                Payload::Bytes(port, data) => (port, data),
                Payload::Encode(codec, port, data) => match encode(codec, port, data).await {
                    Ok(encoded) => encoded,
                    Err(r) => return WriteOutcome::Refused(r),
                },
            };
            if !command.in_time() {
                return WriteOutcome::Refused(Refusal::expired("its downlink to be encoded"));
            }
            let (reply, mut outcome) = oneshot::channel();
            let ticket = waiting.open(reply, command.deadline);
            let item = Queued {
                port,
                data,
                confirmed: false,
                ticket: Some(ticket),
            };
            if queue
                .send((command.device.as_str().to_string(), Ok(item)))
                .await
                .is_err()
            {
                waiting.forget(ticket);
                return stopped();
            }
            // Never past max_age: a payload still queued then is withdrawn.
            let give_up = Instant::now() + wait;
            let until = command.deadline.map_or(give_up, |d| d.min(give_up));
            if let Ok(answer) = tokio::time::timeout_at(until, &mut outcome).await {
                return answer.unwrap_or_else(|_| stopped());
            }
            match waiting.expire(ticket) {
                Expired::Withdrawn if !command.in_time() || until < give_up => {
                    WriteOutcome::Refused(Refusal::expired(UPLINK))
                }
                Expired::Withdrawn => WriteOutcome::Refused(Refusal::new(
                    "no_uplink",
                    format!(
                        "no uplink from the device within {} (command_wait): withdrawn, never sent",
                        gateway_core::config::values::duration::render(wait)
                    ),
                )),
                Expired::Resolved => outcome.try_recv().unwrap_or_else(|_| stopped()),
                Expired::Claimed => match tokio::time::timeout(TX_ACK_WAIT, &mut outcome).await {
                    Ok(answer) => answer.unwrap_or_else(|_| stopped()),
                    Err(_) => {
                        waiting.forget(ticket);
                        WriteOutcome::Failed(Refusal::new(
                            "timeout",
                            "handed to the forwarder, which sent no TX_ACK",
                        ))
                    }
                },
            }
        })
    }
}

fn stopped() -> WriteOutcome {
    WriteOutcome::Failed(Refusal::new("stopped", "the semtech_udp adapter stopped"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn command(value: CommandValue) -> Command {
        Command {
            id: "c".into(),
            device: DeviceId::new("node-1").unwrap(),
            metric: String::new(),
            value,
            deadline: None,
        }
    }

    fn target(wait: Duration) -> (Arc<LorawanTarget>, mpsc::Receiver<FeedItem>, Arc<Waiting>) {
        let waiting = Arc::new(Waiting::default());
        let devices = HashMap::from([(DeviceId::new("node-1").unwrap(), None)]);
        let (t, rx) = LorawanTarget::new(devices, waiting.clone(), wait);
        (t, rx, waiting)
    }

    #[test]
    fn only_downlinks_that_fit_are_accepted() {
        let (t, _rx, _) = target(Duration::from_secs(1));
        assert!(t.serves(&DeviceId::new("node-1").unwrap()));
        assert!(!t.serves(&DeviceId::new("node-2").unwrap()));
        let down = |port, len| CommandValue::Downlink {
            port,
            data: vec![0; len],
        };
        assert!(t.check(&command(down(10, MAX_PAYLOAD))).is_ok());
        for (value, reason) in [
            (down(10, MAX_PAYLOAD + 1), "out_of_range"),
            (down(224, 1), "out_of_range"),
            (CommandValue::Number(1.0), "type"),
        ] {
            assert_eq!(t.check(&command(value)).unwrap_err().reason, reason);
        }
    }

    const GW: GatewayEui = GatewayEui([1; 8]);

    #[tokio::test(start_paused = true)]
    async fn done_on_a_clean_tx_ack_failed_on_an_error_after_the_rx2_retry() {
        let (t, mut rx, waiting) = target(Duration::from_secs(60));
        let down = CommandValue::Downlink {
            port: 3,
            data: vec![1, 2],
        };
        let write = tokio::spawn(t.write(command(down.clone())));
        let (device, item) = rx.recv().await.unwrap();
        let item = item.unwrap();
        assert_eq!(
            (device.as_str(), item.port, item.data.as_slice()),
            ("node-1", 3, &[1, 2][..])
        );
        let ticket = item.ticket.unwrap();
        assert!(waiting.claim(ticket, Instant::now()));
        waiting.sent(ticket, GW, [0, 9], None);
        waiting.tx_ack(GW, [0, 8], None, false);
        assert!(!write.is_finished(), "another token's TX_ACK");
        waiting.tx_ack(GW, [0, 9], None, false);
        assert_eq!(write.await.unwrap(), WriteOutcome::Done { value: None });

        let write = tokio::spawn(t.write(command(down)));
        let ticket = rx.recv().await.unwrap().1.unwrap().ticket.unwrap();
        assert!(waiting.claim(ticket, Instant::now()));
        waiting.sent(ticket, GW, [0, 10], None);
        waiting.tx_ack(GW, [0, 10], Some("TOO_LATE"), true);
        tokio::task::yield_now().await;
        assert!(!write.is_finished(), "the RX2 retry decides");
        waiting.tx_ack(GW, [0, 10], Some("TX_FREQ"), false);
        let out = write.await.unwrap();
        assert!(
            matches!(&out, WriteOutcome::Failed(r) if r.reason == "tx_ack" && r.detail.contains("TX_FREQ")),
            "{out:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_uplink_the_payload_is_withdrawn_and_never_sent() {
        let (t, mut rx, waiting) = target(Duration::from_secs(30));
        let write = tokio::spawn(t.write(command(CommandValue::Downlink {
            port: 3,
            data: vec![1],
        })));
        let ticket = rx.recv().await.unwrap().1.unwrap().ticket.unwrap();
        let out = write.await.unwrap();
        assert!(
            matches!(&out, WriteOutcome::Refused(r) if r.reason == "no_uplink"),
            "{out:?}"
        );
        assert!(!waiting.is_open(ticket));
        assert!(!waiting.claim(ticket, Instant::now()), "the socket loop then skips it");

        // Claimed just before the wait ran out: its TX_ACK still decides,
        // and no TX_ACK at all is a timeout.
        let write = tokio::spawn(t.write(command(CommandValue::Downlink {
            port: 3,
            data: vec![1],
        })));
        let ticket = rx.recv().await.unwrap().1.unwrap().ticket.unwrap();
        assert!(waiting.claim(ticket, Instant::now()));
        waiting.sent(ticket, GW, [0, 11], None);
        let out = write.await.unwrap();
        assert!(
            matches!(&out, WriteOutcome::Failed(r) if r.reason == "timeout"),
            "{out:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_an_uplink_ends_at_max_age_and_the_payload_is_never_sent() {
        // max_age 20 s, command_wait 30 s, the next uplink at 25 s.
        let (t, mut rx, waiting) = target(Duration::from_secs(30));
        let start = Instant::now();
        let write = tokio::spawn(t.write(Command {
            deadline: Some(start + Duration::from_secs(20)),
            ..command(CommandValue::Downlink {
                port: 10,
                data: vec![1, 2],
            })
        }));
        let ticket = rx.recv().await.unwrap().1.unwrap().ticket.unwrap();
        let out = write.await.unwrap();
        assert!(
            matches!(&out, WriteOutcome::Refused(r) if r.reason == Refusal::EXPIRED),
            "{out:?}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!waiting.is_open(ticket));
        assert!(!waiting.claim(ticket, Instant::now()), "the uplink at 25 s sends nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_claimed_sent_or_resent_at_or_after_the_deadline() {
        let waiting = Waiting::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        // An uplink as the deadline comes, before the command's own wait
        // has ended it: the payload is not taken.
        let (reply, _outcome) = oneshot::channel();
        let ticket = waiting.open(reply, Some(deadline));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(!waiting.is_open(ticket));
        assert!(!waiting.claim(ticket, Instant::now()));

        // Taken in time, but the deadline passes before the PULL_RESP
        // leaves: ended expired, not sent.
        let (reply, outcome) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_secs(1);
        let ticket = waiting.open(reply, Some(deadline));
        assert!(waiting.claim(ticket, Instant::now()));
        assert!(!waiting.expired_since_claim(ticket, Instant::now()), "still in time");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(waiting.expired_since_claim(ticket, Instant::now()));
        let out = outcome.await.unwrap();
        assert!(
            matches!(&out, WriteOutcome::Refused(r) if r.reason == Refusal::EXPIRED),
            "{out:?}"
        );

        // Sent in time; its RX1 refused after the deadline: no RX2 resend.
        let (reply, _outcome) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_secs(1);
        let ticket = waiting.open(reply, Some(deadline));
        assert!(waiting.claim(ticket, Instant::now()));
        waiting.sent(ticket, GW, [0, 12], None);
        assert!(waiting.may_resend(GW, [0, 12]));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!waiting.may_resend(GW, [0, 12]));
        assert!(waiting.may_resend(GW, [0, 13]), "no command's downlink");

        // What counts is when the radio sends it (the receive window, a
        // second or two after the uplink), not when the PULL_RESP leaves:
        // 0.4 s left, RX1 a second away, is too late; in RX1 in time, but
        // scheduled into RX2 past the deadline, also.
        let (reply, _outcome) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_millis(400);
        let ticket = waiting.open(reply, Some(deadline));
        assert!(!waiting.claim(ticket, Instant::now() + Duration::from_secs(1)));
        let (reply, _outcome) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_millis(1500);
        let ticket = waiting.open(reply, Some(deadline));
        assert!(waiting.claim(ticket, Instant::now() + Duration::from_secs(1)));
        assert!(waiting.expired_since_claim(ticket, Instant::now() + Duration::from_secs(2)));

        // RX1 in time; the forwarder refuses it (TOO_LATE) at once, but the
        // RX2 retry would be on air past the deadline: not sent.
        let (reply, _outcome) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_millis(1500);
        let ticket = waiting.open(reply, Some(deadline));
        assert!(waiting.claim(ticket, Instant::now() + Duration::from_secs(1)));
        waiting.sent(ticket, GW, [0, 14], Some(Instant::now() + Duration::from_secs(2)));
        assert!(!waiting.may_resend(GW, [0, 14]));
    }
}
