//! The coap adapter's write side: a command's value PUT to an actuator's
//! resource as a confirmable request (RFC 7252), retransmitted with a
//! doubling wait until the actuator acknowledges. Done on a 2.xx answer
//! (or an empty ACK: a separate response follows, the actuator has the
//! request); refused on any other code; failed when nothing answers.
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
        Box::pin(async move {
            match payload {
                Ok(p) => put(&uri, mid, p).await,
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

/// PUTs `payload` to `uri` as a confirmable request with message id `mid`.
async fn put(uri: &str, mid: u16, payload: Vec<u8>) -> WriteOutcome {
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
    exchange(&socket, &bytes, mid, &token).await
}

/// Sends the request until its answer comes, doubling the wait each time.
async fn exchange(socket: &UdpSocket, request: &[u8], mid: u16, token: &[u8]) -> WriteOutcome {
    let mut wait = ACK_TIMEOUT;
    let mut buf = [0u8; 1500];
    for _ in 0..TRIES {
        if let Err(e) = socket.send(request).await {
            return failed("socket", e.to_string());
        }
        let deadline = gateway_core::deadline::from_now(wait);
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
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
