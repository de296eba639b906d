//! The task that only polls rumqttc's event loop and reports what matters.
//!
//! rumqttc's `poll()` is not documented as cancel-safe (rumqtt#601), so it
//! is never raced against the forwarder's other work in one `select!`; a
//! stop token is the only thing it races.

use rumqttc::{Event, EventLoop, MqttOptions, Outgoing, Packet};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use gateway_core::backoff::Backoff;

pub(super) enum PollEvent {
    /// A CONNACK from node `node` (an index into the node list).
    Connected {
        node: usize,
    },
    Sent(u16),
    Acked(u16),
    Lost {
        node: usize,
        error: String,
        kind: FaultKind,
    },
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

/// Polls until stopped or disconnected. After a lost connection (or a
/// failed attempt) it waits on `resume` (the forwarder has forgotten its
/// in-flight set), empties the client's queues, moves on to the next of
/// `nodes` (the options of each node of a cluster; `eventloop` starts with
/// the first) and reconnects after the jittered backoff, so a fleet that
/// lost one node does not land on the next in lockstep.
pub(super) async fn poll_loop(
    mut eventloop: EventLoop,
    nodes: Vec<MqttOptions>,
    events: mpsc::UnboundedSender<PollEvent>,
    mut resume: mpsc::Receiver<()>,
    mut backoff: Backoff,
    stop: CancellationToken,
) {
    let mut node = 0;
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            e = eventloop.poll() => e,
        };
        let event = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                PollEvent::Connected { node }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => PollEvent::Sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => PollEvent::Acked(ack.pkid),
            Ok(Event::Incoming(Packet::PubComp(comp))) => PollEvent::Acked(comp.pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                let lost = PollEvent::Lost {
                    node,
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
                if nodes.len() > 1 {
                    node = (node + 1) % nodes.len();
                    if let Some(next) = nodes.get(node) {
                        eventloop.mqtt_options = next.clone();
                    }
                }
                let delay = backoff.next_delay();
                let (host, port) = eventloop.mqtt_options.broker_address();
                debug!(%host, port, ?delay, "Upstream reconnect backoff.");
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
