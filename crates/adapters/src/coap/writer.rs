//! The coap adapter's write side: a command's value PUT to an actuator's
//! resource as a confirmable request (RFC 7252), retransmitted with a
//! doubling wait until the actuator acknowledges. Done on a 2.xx answer
//! (or an empty ACK: a separate response follows, the actuator has the
//! request); refused on any other code; failed when nothing answers.
//! Nothing is sent, nor sent again, at or after the command's deadline
//! (what was left of its `max_age`): a retransmission of a lost request
//! is the write itself, arriving late.
//!
//! Today it serves the actuators a rule's `coap_put` action names
//! (`gateway_core::config::action`): one device each, whose one point
//! (`put`) takes the payload as it is.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use gateway_core::command::{
    Command, CommandTarget, RawPoint, Refusal, WritablePoint, WriteFuture, WriteOutcome,
};
use gateway_core::DeviceId;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// First wait for the ACK, doubled on each retry (RFC 7252 ACK_TIMEOUT
/// 2 s, MAX_RETRANSMIT 4; fewer here so a dead actuator is reported
/// within about 15 s, well inside a command's `max_age`).
const ACK_TIMEOUT: Duration = Duration::from_secs(1);
const TRIES: u32 = 4;

/// One actuator's resource.
pub struct CoapPutTarget {
    point: RawPoint,
    uri: String,
    /// Message ids of this target's requests, starting at a value of
    /// this process so a restart does not repeat the last one's.
    mid: AtomicU16,
}

impl CoapPutTarget {
    pub fn new(point: RawPoint, uri: &str) -> Arc<Self> {
        Arc::new(Self {
            point,
            uri: uri.to_string(),
            mid: AtomicU16::new((std::process::id() & 0xffff) as u16),
        })
    }
}

impl CommandTarget for CoapPutTarget {
    fn serves(&self, device: &DeviceId) -> bool {
        *device == self.point.device
    }

    fn check(&self, command: &Command) -> Result<(), Refusal> {
        self.point.payload(command).map(|_| ())
    }

    fn write(&self, command: Command) -> WriteFuture {
        let payload = self.point.payload(&command);
        let uri = self.uri.clone();
        let mid = self.mid.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let deadline = command.deadline;
        Box::pin(async move {
            match payload {
                Ok(p) => put(&uri, mid, p, deadline).await,
                Err(r) => WriteOutcome::Refused(r),
            }
        })
    }

    fn writable(&self) -> Vec<WritablePoint> {
        self.point.writable()
    }
}

/// A PUT that may or may not have reached the actuator.
fn failed(reason: &'static str, detail: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Failed(Refusal::new(reason, detail))
}

/// PUTs `payload` to `uri` as a confirmable request with message id `mid`,
/// sent only before `deadline`.
async fn put(uri: &str, mid: u16, payload: Vec<u8>, deadline: Option<Instant>) -> WriteOutcome {
    let bad_uri = || WriteOutcome::Refused(Refusal::new("uri", format!("cannot use {uri}")));
    let Ok(url) = url::Url::parse(uri) else {
        return bad_uri();
    };
    let Some(host) = url.host_str() else {
        return bad_uri();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port().unwrap_or(5683);
    let target = match tokio::net::lookup_host((host, port)).await {
        Ok(mut found) => match found.next() {
            Some(t) => t,
            None => return failed("resolve", format!("{host} has no address")),
        },
        Err(e) => return failed("resolve", format!("{host}: {e}")),
    };
    let local: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return failed("socket", e.to_string()),
    };
    if let Err(e) = socket.connect(target).await {
        return failed("socket", e.to_string());
    }
    let token = mid.to_be_bytes().to_vec();
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Put);
    p.header.message_id = mid;
    p.set_token(token.clone());
    for segment in url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
    {
        p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    p.payload = payload;
    let bytes = match p.to_bytes() {
        Ok(b) => b,
        Err(e) => return WriteOutcome::Refused(Refusal::new("too_large", e.to_string())),
    };
    exchange(&socket, &bytes, mid, &token, deadline).await
}

/// Sends the request until its answer comes, doubling the wait each time,
/// never at or after `deadline`; an answer is waited for until then.
async fn exchange(
    socket: &UdpSocket,
    request: &[u8],
    mid: u16,
    token: &[u8],
    deadline: Option<Instant>,
) -> WriteOutcome {
    let mut wait = ACK_TIMEOUT;
    let mut buf = [0u8; 1500];
    for tried in 0..TRIES {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return if tried == 0 {
                // The address lookup took what was left.
                WriteOutcome::Refused(Refusal::expired("the actuator's address"))
            } else {
                failed(
                    "timeout",
                    format!("no answer to {tried} tries before its max_age ran out; not sent again"),
                )
            };
        }
        if let Err(e) = socket.send(request).await {
            return failed("socket", e.to_string());
        }
        let retry = gateway_core::deadline::from_now(wait);
        let until = deadline.map_or(retry, |d| d.min(retry));
        loop {
            let n = match tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                // An ICMP port unreachable on a connected socket: nothing
                // listens there; the command runner must not wait 15 s on
                // it before the next command.
                Ok(Err(e)) => return failed("unreachable", e.to_string()),
                Err(_) => break,
            };
            let Ok(reply) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            if reply.header.message_id != mid && reply.get_token() != token {
                continue;
            }
            let class = u8::from(reply.header.code) >> 5;
            return match reply.header.code {
                MessageClass::Response(_) if class == 2 => WriteOutcome::Done { value: None },
                MessageClass::Empty if reply.header.get_type() == MessageType::Acknowledgement => {
                    WriteOutcome::Done { value: None }
                }
                MessageClass::Empty => failed("reset", "the actuator reset the request"),
                other => WriteOutcome::Refused(Refusal::new(
                    "refused",
                    format!("the actuator answered {other:?}"),
                )),
            };
        }
        wait *= 2;
    }
    failed("timeout", format!("no answer after {TRIES} tries"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The attack: an actuator that does not answer (its ACKs lost) got
    /// the PUT again at 1, 3 and 7 s whatever the command's deadline: a
    /// rule's action with 2.5 s of its max_age left was sent 1.5 and 4.5 s
    /// late. Now nothing leaves at or after the deadline.
    #[tokio::test(start_paused = true)]
    async fn a_put_is_not_resent_at_or_after_the_deadline() {
        let actuator = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(actuator.local_addr().unwrap()).await.unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(2_500);
        let outcome = exchange(&socket, b"put", 7, &[0, 7], Some(deadline)).await;
        assert!(
            matches!(&outcome, WriteOutcome::Failed(r) if r.reason == "timeout"),
            "{outcome:?}"
        );
        assert_eq!(Instant::now(), deadline, "waits until the deadline, no longer");
        let mut buf = [0u8; 16];
        let mut sent = 0;
        while actuator.try_recv(&mut buf).is_ok() {
            sent += 1;
        }
        assert_eq!(sent, 2, "sent at 0 and 1 s, not at 3 and 7 s");
        // Its deadline gone before the first send: nothing sent at all.
        let outcome = exchange(&socket, b"put", 8, &[0, 8], Some(Instant::now())).await;
        assert!(
            matches!(&outcome, WriteOutcome::Refused(r) if r.reason == Refusal::EXPIRED),
            "{outcome:?}"
        );
        assert!(actuator.try_recv(&mut buf).is_err());
    }
}
