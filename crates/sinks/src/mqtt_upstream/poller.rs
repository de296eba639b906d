//! The task that only polls rumqttc's event loop and reports what matters.
//!
//! rumqttc's `poll()` is not documented as cancel-safe (rumqtt#601), so it
//! is never raced against the forwarder's other work in one `select!`; a
//! stop token is the only thing it races.

use rumqttc::{Event, EventLoop, Outgoing, Packet};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use gateway_core::backoff::Backoff;

pub(super) enum PollEvent {
    Connected,
    Sent(u16),
    Acked(u16),
    Lost { error: String, kind: FaultKind },
}

/// Why a connection failed, because the remedies differ: a refused login or
/// a certificate problem does not fix itself by waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FaultKind {
    Network,
    Refused,
    Tls,
}

impl FaultKind {
    pub(super) fn of(e: &rumqttc::ConnectionError) -> Self {
        match e {
            rumqttc::ConnectionError::ConnectionRefused(_) => Self::Refused,
            rumqttc::ConnectionError::Tls(_) => Self::Tls,
            _ => Self::Network,
        }
    }
}

/// Polls until stopped or disconnected. After a lost connection it waits
/// on `resume` (the forwarder has forgotten its in-flight set) before it
/// empties the client's queues and reconnects with backoff.
pub(super) async fn poll_loop(
    mut eventloop: EventLoop,
    events: mpsc::UnboundedSender<PollEvent>,
    mut resume: mpsc::Receiver<()>,
    mut backoff: Backoff,
    stop: CancellationToken,
    broker: String,
) {
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            e = eventloop.poll() => e,
        };
        let event = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                PollEvent::Connected
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => PollEvent::Sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => PollEvent::Acked(ack.pkid),
            Ok(Event::Incoming(Packet::PubComp(comp))) => PollEvent::Acked(comp.pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                let lost = PollEvent::Lost {
                    error: e.to_string(),
                    kind: FaultKind::of(&e),
                };
                if events.send(lost).is_err() {
                    return;
                }
                // Wait until the forwarder has taken its messages back, then
                // empty the client's queues so nothing stale is resent.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = resume.recv() => if r.is_none() { return },
                }
                eventloop.clean();
                eventloop.pending.clear();
                // Events of the failed batch still buffered (a Publish
                // whose write failed, PubAcks read before the error) would
                // be yielded on the next connection and pair packet ids
                // with the wrong outbox messages.
                eventloop.state.events.clear();
                let delay = backoff.next_delay();
                debug!(%broker, ?delay, "Upstream reconnect backoff.");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        if events.send(event).is_err() {
            return;
        }
    }
}
