//! What the source and the writer ask of a connection to the bus,
//! whichever it is (a UDP or TCP tunnel, a routing multicast): telegrams
//! seen on the bus come out as [`LinkEvent`]s, telegrams to send go in as
//! [`Outgoing`], each answered once the interface confirmed it (or not).
//! Sending is paced here, for every transport alike.

use std::sync::Arc;
use std::time::Duration;

use gateway_core::telemetry::LogThrottle;
use gateway_core::{AdapterStats, Clock, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::address::{GroupAddress, IndividualAddress};
use super::cemi::{Data, GroupService, LData, Payload, Telegram};

/// The bytes of a group value, kept inline: a telegram crosses from the
/// link to the source without an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataBuf {
    small: Option<u8>,
    len: u8,
    bytes: [u8; 16],
}

impl DataBuf {
    pub fn new(data: Data<'_>) -> Self {
        match data {
            Data::Small(v) => Self {
                small: Some(v),
                len: 0,
                bytes: [0; 16],
            },
            Data::Bytes(b) => {
                // Longer than any group value (16.x's 14 bytes): kept cut
                // at 16, which no DPT takes, so it is still refused.
                let n = b.len().min(16);
                let mut bytes = [0; 16];
                bytes[..n].copy_from_slice(&b[..n]);
                Self {
                    small: None,
                    len: n as u8,
                    bytes,
                }
            }
        }
    }

    pub fn as_data(&self) -> Data<'_> {
        match self.small {
            Some(v) => Data::Small(v),
            None => Data::Bytes(&self.bytes[..usize::from(self.len)]),
        }
    }
}

/// The wall clock a link stamps each telegram with as its datagram is
/// received: telegrams that wait together in the source's queue (a
/// router's burst) keep the times they arrived at, not one for all.
#[derive(Clone)]
pub struct ArrivalClock(pub Arc<dyn Clock>);

impl ArrivalClock {
    pub fn now(&self) -> Timestamp {
        self.0.now()
    }
}

impl Default for ArrivalClock {
    fn default() -> Self {
        Self(Arc::new(gateway_core::SystemClock))
    }
}

impl std::fmt::Debug for ArrivalClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArrivalClock")
    }
}

/// A group telegram seen on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTelegram {
    pub source: IndividualAddress,
    pub destination: GroupAddress,
    pub service: GroupService,
    pub data: DataBuf,
    /// When its datagram was received.
    pub at: Timestamp,
}

impl GroupTelegram {
    /// The group telegram an L_Data frame received `at` carries, if it is one.
    pub fn from_ldata(f: &LData<'_>, at: Timestamp) -> Option<Self> {
        match f.telegram {
            Telegram::Group {
                destination,
                service,
                data,
            } => Some(Self {
                source: f.source,
                destination,
                service,
                data: DataBuf::new(data),
                at,
            }),
            Telegram::Other => None,
        }
    }
}

/// What the link tells the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Connected (again): the tunnel's own individual address, or the
    /// router's configured one.
    Connected(IndividualAddress),
    /// Not connected (any more), and why: a clause that follows the
    /// adapter's name in `/health` ("has no tunnel to its KNXnet/IP
    /// interface 192.168.1.30:3671: the interface has no more
    /// connections…").
    Down(String),
    Telegram(GroupTelegram),
}

/// Why a telegram was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    #[error("not connected to the KNXnet/IP interface")]
    NotConnected,
    #[error("the interface did not acknowledge the telegram, sent twice (TUNNELLING_ACK missing)")]
    AckMissing,
    #[error("the interface could not send it on the bus (negative L_Data.con)")]
    NotConfirmed,
    /// Its TUNNELLING_ACK had an error status, the repeat's too.
    #[error("the interface refused it twice: {0}")]
    Refused(String),
    #[error("the interface sent no L_Data.con within {0:?}")]
    NoConfirmation(Duration),
    #[error("the connection was lost before the interface confirmed it")]
    ConnectionLost,
    #[error("the adapter is stopping")]
    Stopping,
    #[error("it waited for the bus past its max_age; not sent")]
    Expired,
}

impl SendFailure {
    /// The short label of a failed command's result.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotConnected | Self::Stopping => "offline",
            Self::AckMissing => "ack_missing",
            // As before the variant of its own: the command's reason
            // labels stay as they were.
            Self::NotConfirmed | Self::Refused(_) => "not_confirmed",
            Self::NoConfirmation(_) => "timeout",
            Self::ConnectionLost => "connection",
            Self::Expired => "max_age",
        }
    }
}

pub type Confirmation = oneshot::Sender<Result<(), SendFailure>>;

/// A telegram to send.
#[derive(Debug)]
pub struct Outgoing {
    pub destination: GroupAddress,
    pub service: GroupService,
    pub payload: Option<Payload>,
    /// Told how it went; `None` for reads (nobody waits on them).
    pub done: Option<Confirmation>,
    /// A command's `max_age`: dropped unsent once it has passed, however
    /// long the bus kept it waiting (a router's ROUTING_BUSY, a tunnel
    /// reconnecting).
    pub deadline: Option<tokio::time::Instant>,
}

impl Outgoing {
    pub fn read(destination: GroupAddress) -> Self {
        Self {
            destination,
            service: GroupService::Read,
            payload: None,
            done: None,
            deadline: None,
        }
    }

    pub fn fail(self, why: SendFailure) {
        if let Some(done) = self.done {
            let _ = done.send(Err(why));
        }
    }

    pub fn succeed(self) {
        if let Some(done) = self.done {
            let _ = done.send(Ok(()));
        }
    }
}

/// Writes waiting for the link: beyond, a write is refused at once (the
/// bus is far behind).
pub const OUTGOING_QUEUE: usize = 256;

/// What the link sends: writes first, then reads. Reads come through a
/// one-place queue, so the source holds the rest and a write waits
/// behind one read at most, not behind a whole export's reads on start.
#[derive(Debug)]
pub struct Outbox {
    pub writes: mpsc::Receiver<Outgoing>,
    pub reads: mpsc::Receiver<Outgoing>,
}

impl Outbox {
    /// The two queues: writes (for the command target) and reads (the
    /// source's), and the link's side of them.
    pub fn new() -> (mpsc::Sender<Outgoing>, mpsc::Sender<Outgoing>, Self) {
        let (writes_tx, writes) = mpsc::channel(OUTGOING_QUEUE);
        let (reads_tx, reads) = mpsc::channel(1);
        (writes_tx, reads_tx, Self { writes, reads })
    }

    /// The next telegram, a write if one waits; `None` once both queues
    /// are closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        loop {
            let next = tokio::select! {
                biased;
                Some(w) = self.writes.recv() => w,
                Some(r) = self.reads.recv() => r,
                else => return None,
            };
            if next
                .deadline
                .is_some_and(|d| tokio::time::Instant::now() > d)
            {
                next.fail(SendFailure::Expired);
                continue;
            }
            return Some(next);
        }
    }
}

/// The gateway's side of a link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    pub tx: mpsc::Sender<Outgoing>,
}

/// Faults of one adapter: counted by reason in
/// `edge_gateway_adapter_errors_total{error_type}`, logged once a minute
/// per reason (with how many were not logged).
#[derive(Clone)]
pub struct Faults {
    pub adapter: String,
    pub stats: AdapterStats,
    throttle: std::sync::Arc<LogThrottle>,
}

impl Faults {
    pub fn new(adapter: &str, stats: AdapterStats) -> Self {
        Self {
            adapter: adapter.to_string(),
            stats,
            throttle: std::sync::Arc::new(LogThrottle::new(Duration::from_secs(60))),
        }
    }

    /// Counts one fault of `reason`, logging `message` if none of its kind
    /// was logged in the last minute.
    pub fn count(&self, reason: &'static str, message: impl std::fmt::Display) {
        gateway_core::refuse!(self.stats, self.throttle, reason;
            adapter = %self.adapter, reason, "{message}");
    }
}

/// Spaces telegrams at most `pace` a second.
#[derive(Debug)]
pub struct Pacer {
    gap: Duration,
    next: Instant,
}

impl Pacer {
    pub fn new(pace: f64) -> Self {
        Self {
            gap: Duration::from_secs_f64(1.0 / pace.max(0.001)),
            next: Instant::now(),
        }
    }

    /// When the next telegram may go.
    pub fn ready_at(&self) -> Instant {
        self.next
    }

    /// A telegram went now.
    pub fn sent(&mut self) {
        let now = Instant::now();
        // From now after a quiet spell: it earns no burst.
        self.next = now.max(self.next) + self.gap;
    }

    /// The bus asked for quiet (ROUTING_BUSY): nothing before `until`.
    pub fn hold_until(&mut self, until: Instant) {
        self.next = self.next.max(until);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn telegrams_are_spaced_by_the_pace_and_held_while_the_bus_is_busy() {
        let start = Instant::now();
        let mut p = Pacer::new(10.0);
        assert_eq!(p.ready_at(), start);
        p.sent();
        assert_eq!(p.ready_at(), start + Duration::from_millis(100));
        p.sent();
        assert_eq!(p.ready_at(), start + Duration::from_millis(200));
        p.hold_until(start + Duration::from_secs(1));
        assert_eq!(p.ready_at(), start + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(5)).await;
        p.sent();
        assert_eq!(p.ready_at(), start + Duration::from_millis(5100));
    }

    #[tokio::test]
    async fn a_write_goes_before_the_reads_waiting() {
        let (writes, reads, mut outbox) = Outbox::new();
        reads
            .send(Outgoing::read("1/1/1".parse().unwrap()))
            .await
            .unwrap();
        // The one-place read queue is full: the source holds the rest.
        assert!(reads
            .try_send(Outgoing::read("1/1/2".parse().unwrap()))
            .is_err());
        let mut w = Outgoing::read("2/2/2".parse().unwrap());
        w.service = GroupService::Write;
        writes.send(w).await.unwrap();
        assert_eq!(outbox.recv().await.unwrap().service, GroupService::Write);
        assert_eq!(outbox.recv().await.unwrap().service, GroupService::Read);
        drop((writes, reads));
        assert!(outbox.recv().await.is_none());
    }

    /// A write whose command's max_age passed while the bus kept it
    /// waiting is never sent: it is answered `Expired` and the next one
    /// goes.
    #[tokio::test(start_paused = true)]
    async fn a_write_past_its_deadline_is_dropped_unsent() {
        let (writes, _reads, mut outbox) = Outbox::new();
        let (done, told) = oneshot::channel();
        let mut late = Outgoing::read("2/2/2".parse().unwrap());
        late.service = GroupService::Write;
        late.done = Some(done);
        late.deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1));
        writes.send(late).await.unwrap();
        let mut next = Outgoing::read("2/2/3".parse().unwrap());
        next.service = GroupService::Write;
        writes.send(next).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        let sent = outbox.recv().await.unwrap();
        assert_eq!(sent.destination, "2/2/3".parse().unwrap());
        assert_eq!(told.await.unwrap(), Err(SendFailure::Expired));
    }

    #[test]
    fn group_values_cross_inline_and_oversized_ones_stay_refusable() {
        let d = DataBuf::new(Data::Bytes(&[0x0C, 0x33]));
        assert_eq!(d.as_data(), Data::Bytes(&[0x0C, 0x33]));
        assert_eq!(DataBuf::new(Data::Small(1)).as_data(), Data::Small(1));
        let long = DataBuf::new(Data::Bytes(&[1; 40]));
        assert_eq!(long.as_data(), Data::Bytes(&[1; 16]));
    }
}
