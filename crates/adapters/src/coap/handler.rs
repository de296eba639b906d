//! The CoAP server's request handling, without sockets: one datagram and its
//! sender in, the reply and the readings out ([`Handler::handle`]).
//!
//! It owns the state that RFC 7252 asks of a server: the duplicate cache
//! (§4.5), Block1 reassembly (RFC 7959 §2.5) and, for `GET /s/{device}`, the
//! latest value of every metric. Time comes in as an argument, so tests drive
//! expiry without waiting.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use gateway_core::{DeviceId, MetricName, Reading, Timestamp};

use super::dedup::{Dedup, Inserted, Seen};
use super::message::{self, FormatError, Head, CON, NON};
use super::names::{Ids, Metrics};
use crate::payload::PayloadFormat;

mod answer;
mod block1;
mod block2;
mod body;
mod latest;
mod options;
mod outcome;

use answer::Answer;
use block1::{Finished, Transfer};
use body::Read;
use latest::Devices;
pub use outcome::Outcome;
pub(crate) use options::format_for;
pub(crate) use latest::LISTING_TRUNCATED;
use options::*;

/// Limits of the handler, from the adapter config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one request (or one block).
    pub max_payload_bytes: usize,
    /// Largest body reassembled from Block1 transfers.
    pub max_body_bytes: usize,
    /// Entries of each duplicate cache (CON's, NON's).
    pub dedup_capacity: usize,
    /// Devices remembered for `GET /s/{device}`.
    pub max_devices: usize,
    /// A body yielding more readings is refused whole (4.13), counted before
    /// it is parsed where its format allows (`crate::payload::decode_bounded`).
    pub max_readings_per_message: usize,
}

/// The server's state between datagrams.
pub struct Handler {
    limits: Limits,
    /// The duplicate caches of CON and of NON requests: one each, so that
    /// each holds one lifetime and its oldest is the first to expire. In
    /// one cache a CON (247 s) at the front kept NONs (145 s) that had
    /// expired behind it counted as held, and a source at its share, or a
    /// full cache, gave up that CON early: its retransmission was taken
    /// again.
    dedup_con: Dedup,
    dedup_non: Dedup,
    transfers: HashMap<(SocketAddr, String), Transfer>,
    /// Block1 transfers completed lately, by the same key: their last
    /// block and its answer.
    finished: HashMap<(SocketAddr, String), Finished>,
    /// Exchanges the duplicate cache gave up before their lifetime, not
    /// yet counted, and the address of the last.
    dedup_given_up: u64,
    dedup_given_up_by: Option<std::net::IpAddr>,
    /// Their counter, made at the first: a flood from one address meets
    /// it on every wake-up, where a labelled lookup costs more than the add.
    dedup_share_full: Option<gateway_core::telemetry::Counter>,
    latest: Devices,
    ids: Ids,
    metrics: Metrics,
    next_mid: u16,
    /// Tests turn the fast paths off to compare them with the general one.
    #[cfg(test)]
    fast: bool,
    #[cfg(feature = "lorawan")]
    codec: Option<super::config::BodyCodec>,
}

impl Handler {
    /// Exchanges given up before their lifetime since the last call, and
    /// the last address that gave one up.
    pub fn take_dedup_given_up(&mut self) -> Option<(u64, std::net::IpAddr)> {
        let n = std::mem::take(&mut self.dedup_given_up);
        let ip = self.dedup_given_up_by.take()?;
        (n > 0).then_some((n, ip))
    }

    /// Where exchanges given up early are counted (`dedup_share_full`).
    pub fn dedup_share_full_counter(
        &mut self,
        stats: &gateway_core::component::AdapterStats,
    ) -> &gateway_core::telemetry::Counter {
        self.dedup_share_full
            .get_or_insert_with(|| stats.error_counter("dedup_share_full"))
    }

    /// The share of the duplicate cache one address holds.
    pub fn dedup_share(&self) -> usize {
        Dedup::share(self.limits.dedup_capacity)
    }

    /// Forgets what `peer` sent before: its duplicate cache entries and
    /// its uploads under way. For a new DTLS session from an address that
    /// had one (a restarted device, or another behind the same NAT port).
    pub fn forget_peer(&mut self, peer: SocketAddr) {
        self.dedup_con.forget_peer(peer);
        self.dedup_non.forget_peer(peer);
        self.transfers.retain(|(from, _), _| *from != peer);
        self.finished.retain(|(from, _), _| *from != peer);
    }

    /// A handler with empty tables; `first_mid` starts the Message IDs of
    /// NON responses (random in the server, §4.4).
    pub fn new(limits: Limits, first_mid: u16) -> Self {
        Self {
            dedup_con: Dedup::new(limits.dedup_capacity),
            dedup_non: Dedup::new(limits.dedup_capacity),
            ids: Ids::new(limits.max_devices),
            metrics: Metrics::default(),
            limits,
            transfers: HashMap::new(),
            finished: HashMap::new(),
            dedup_given_up: 0,
            dedup_given_up_by: None,
            dedup_share_full: None,
            latest: Devices::default(),
            next_mid: first_mid,
            #[cfg(test)]
            fast: true,
            #[cfg(feature = "lorawan")]
            codec: None,
        }
    }

    /// Whether the fast paths may answer (always, outside tests).
    fn fast(&self) -> bool {
        #[cfg(test)]
        return self.fast;
        #[cfg(not(test))]
        true
    }

    /// The handler of a configured server: its limits, and its `codec`
    /// for binary bodies.
    pub fn for_server(config: &super::config::CoapServerConfig, first_mid: u16) -> Self {
        let handler = Self::new(config.limits.clone(), first_mid);
        #[cfg(feature = "lorawan")]
        let handler = Self {
            codec: config.codec.clone(),
            ..handler
        };
        handler
    }

    /// Handles one datagram from `peer`, received at `now` (monotonic) and
    /// `arrival` (wall clock, for readings without a time of their own).
    pub fn handle(
        &mut self,
        peer: SocketAddr,
        datagram: &[u8],
        now: Instant,
        arrival: Timestamp,
    ) -> Outcome {
        self.handle_as(peer, datagram, now, arrival, None)
    }

    /// [`handle`](Self::handle) for a peer authenticated as `only` (a DTLS
    /// identity): its `/s/{device}` resources are the only ones it may
    /// write or read, anything else is 4.03 Forbidden (`error_type`
    /// `forbidden`).
    pub fn handle_as(
        &mut self,
        peer: SocketAddr,
        datagram: &[u8],
        now: Instant,
        arrival: Timestamp,
        only: Option<&DeviceId>,
    ) -> Outcome {
        let mut readings = Vec::new();
        let mut out = Outcome::default();
        self.handle_onto(peer, datagram, now, arrival, only, &mut readings, &mut out);
        out.readings = readings;
        out
    }

    /// [`handle_as`](Self::handle_as) with the readings added to the end
    /// of `readings` and the outcome written to `out`, which the caller
    /// has emptied ([`Outcome::clear`]): the server gathers a wake-up's
    /// readings in one list for the pipeline and keeps one outcome for all
    /// datagrams, where each had its own vector and outcome, made, moved
    /// and dropped (issue 69: the allocator was about a tenth of a
    /// datagram's instructions).
    #[allow(clippy::too_many_arguments)]
    pub fn handle_onto(
        &mut self,
        peer: SocketAddr,
        datagram: &[u8],
        now: Instant,
        arrival: Timestamp,
        only: Option<&DeviceId>,
        readings: &mut Vec<Reading>,
        out: &mut Outcome,
    ) {
        // Read once: the checks of `message::check` are the same walk.
        // What the server reads of the options, gathered in the walk
        // that checks them.
        let mut options = OptionsRead::default();
        let request = match message::Request::read_visiting(datagram, |n, v| options.add(n, v)) {
            Ok(request) => request,
            Err(e) => {
                out.error(e.kind(), e.to_string());
                // §4.2: a malformed CON is rejected with a Reset; anything
                // else, and an unknown version (§3), is silently ignored.
                if let (Some(head), false) = (
                    Head::read(datagram),
                    matches!(e, FormatError::UnknownVersion(_)),
                ) {
                    if head.kind == CON {
                        out.reply = Some(message::reset(head.mid));
                    }
                }
                return;
            }
        };
        let head = request.head;
        if head.kind != CON && head.kind != NON {
            // ACK and RST: the server sends no CON, so there is nothing to
            // match them to (§4.2).
            return;
        }
        if head.code == 0 {
            // A CON Empty is a ping (§4.3): answered with a Reset.
            if head.kind == CON {
                out.reply = Some(message::reset(head.mid));
            } else {
                out.error("empty_non", "NON message with code 0.00");
            }
            return;
        }
        let class = head.code >> 5;
        if class != 0 {
            let kind = if matches!(class, 1 | 6 | 7) {
                "reserved_code_class"
            } else {
                "unexpected_response"
            };
            out.error(kind, format!("code {}.{:02}", class, head.code & 0x1F));
            if head.kind == CON {
                out.reply = Some(message::reset(head.mid));
            }
            return;
        }
        let confirmable = head.kind == CON;
        let cache = if confirmable {
            &self.dedup_con
        } else {
            &self.dedup_non
        };
        let probe = match cache.look(peer, head.mid, now) {
            Seen::Before(cached) => {
                out.duplicate = true;
                out.reply = cached;
                return;
            }
            Seen::New(probe) => probe,
        };
        let start = readings.len();
        let answer = self.request(
            peer, request, &options, now, arrival, only, out, readings,
        );
        // A successful NON update gets no response; errors and GETs do,
        // and so does a NON block of an upload: its 2.31 Continue is what
        // the device waits for before the next block (RFC 7959 §2.5).
        let respond = confirmable
            || answer.code.is_error()
            || matches!(answer.code, ResponseType::Content | ResponseType::Continue);
        if respond {
            let mid = self.next_mid;
            self.next_mid = self.next_mid.wrapping_add(1);
            let mut p = message::response(&request, confirmable, mid, answer.code);
            if let Some(cf) = answer.content_format {
                p.add_option(CoapOption::ContentFormat, message::uint(cf));
            }
            for (option, value) in answer.options {
                p.add_option(option, value);
            }
            p.payload = answer.payload;
            out.reply = Some(message::encode(&p));
        }
        let (cache, lifetime) = if confirmable {
            (&mut self.dedup_con, super::dedup::EXCHANGE_LIFETIME)
        } else {
            (&mut self.dedup_non, super::dedup::NON_LIFETIME)
        };
        let kept = cache.insert_looked(probe, out.reply.clone(), now, lifetime);
        if kept == Inserted::Full {
            // Not an error of this request either: the cache is full of
            // exchanges too young to push out (a flood from many addresses,
            // forged perhaps), so this one is unprotected from a
            // retransmission processed twice. Raise `dedup_capacity` if
            // genuine traffic fills it.
            out.error("dedup_full", "duplicate cache full of recent exchanges: not remembered");
        }
        if kept == Inserted::GaveUpOwn {
            // Not an error of this request: its address sends more than its
            // share of the cache holds for a lifetime (many devices behind
            // one NAT?), so one of its older exchanges is no longer
            // protected from a retransmission processed twice. Counted by
            // the batch (`take_dedup_given_up`): under a flood from one
            // address it happens on every datagram.
            self.dedup_given_up += 1;
            self.dedup_given_up_by = Some(peer.ip());
        }
        self.remember(&readings[start..]);
    }

    /// Answers a datagram that filled the receive buffer: it was truncated,
    /// so only its header and token are trusted (RFC 7252 §4.6: 4.13).
    pub fn oversize(&mut self, datagram: &[u8]) -> Outcome {
        let mut out = Outcome::default();
        out.error(
            "datagram_too_large",
            format!("datagram of at least {} bytes", datagram.len()),
        );
        let Some(head) = Head::read(datagram) else {
            return out;
        };
        let (Some(token), true) = (head.token(datagram), head.kind == CON) else {
            return out;
        };
        if head.code >> 5 != 0 || head.code == 0 {
            return out;
        }
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(coap_lite::MessageType::Acknowledgement);
        p.header.message_id = head.mid;
        p.header.code = MessageClass::Response(ResponseType::RequestEntityTooLarge);
        p.set_token(token.to_vec());
        p.add_option(CoapOption::Size1, message::uint(self.size1()));
        out.reply = Some(message::encode(&p));
        out
    }

    fn size1(&self) -> u32 {
        u32::try_from(self.limits.max_payload_bytes).unwrap_or(u32::MAX)
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        peer: SocketAddr,
        request: message::Request<'_>,
        options: &OptionsRead<'_>,
        now: Instant,
        arrival: Timestamp,
        only: Option<&DeviceId>,
        out: &mut Outcome,
        readings: &mut Vec<Reading>,
    ) -> Answer {
        let OptionsRead {
            raw,
            depth,
            path_utf8,
            cf,
            block1,
            block2,
            unsupported,
            ..
        } = options;
        let (depth, mut path_utf8, cf, block1) = (*depth, *path_utf8, *cf, *block1);
        let block2 = *block2;
        if let Some(number) = *unsupported {
            out.error("bad_option", format!("critical option {number}"));
            return Answer::error(ResponseType::BadOption, "unsupported critical option");
        }
        let options = FirstOptions { cf, block1 };
        let method = match request.class() {
            MessageClass::Request(m) => m,
            _ => RequestType::UnKnown,
        };
        let updating = matches!(method, RequestType::Post | RequestType::Put);
        let at = (now, arrival);
        if updating && self.fast() {
            if let Some((device, metric)) = self.known_update(&raw[..depth.min(MAX_SEGMENTS)]) {
                if let Some(own) = only.filter(|own| own.as_str() != device.as_str()) {
                    out.error("forbidden", format!("{own} on /s/{device}"));
                    return Answer::error(ResponseType::Forbidden, "not this identity's device");
                }
                return self.ingest(peer, request, options, device, metric, at, out, readings);
            }
        }
        let mut segments = [""; MAX_SEGMENTS];
        for (text, bytes) in segments.iter_mut().zip(&raw[..depth.min(MAX_SEGMENTS)]) {
            match std::str::from_utf8(bytes) {
                Ok(s) => *text = s,
                Err(_) => path_utf8 = false,
            }
        }
        if !path_utf8 {
            out.error("invalid_path", "Uri-Path is not UTF-8");
            return Answer::error(ResponseType::BadRequest, "Uri-Path is not UTF-8");
        }
        let path = &segments[..depth.min(MAX_SEGMENTS)];
        let whole_path = || {
            let segments = request.option(URI_PATH);
            let segments: Vec<_> = segments.map(String::from_utf8_lossy).collect();
            segments.join("/")
        };
        if let (Some(own), ["s", device, ..]) = (only, path) {
            // The path as the device spells its id (`24-6F-28-AA-BB-09`,
            // as configured) is its id: compared canonical, as plain CoAP
            // takes it.
            let same = own.as_str() == *device
                || DeviceId::new(*device).is_ok_and(|d| d.as_str() == own.as_str());
            if !same {
                out.error("forbidden", format!("{own} on /s/{device}"));
                return Answer::error(ResponseType::Forbidden, "not this identity's device");
            }
        }
        match (path, method) {
            ([".well-known", "core"], RequestType::Get) => {
                block2::serve(self.discovery(&request, out), block2)
            }
            (["s", device], RequestType::Get) => {
                block2::serve(self.latest_json(device, out), block2)
            }
            (["s", device], _) if updating => match self.device(device, out) {
                Ok(device) => self.ingest(peer, request, options, device, None, at, out, readings),
                Err(answer) => answer,
            },
            (["s", device, metric], _) if updating => match self.device(device, out) {
                Ok(device) => {
                    let metric = Some(*metric);
                    self.ingest(peer, request, options, device, metric, at, out, readings)
                }
                Err(answer) => answer,
            },
            ([".well-known", "core"] | ["s", _] | ["s", _, _], _) => {
                out.error("method_not_allowed", format!("{method:?} {}", whole_path()));
                Answer::new(ResponseType::MethodNotAllowed)
            }
            _ => {
                out.error("not_found", format!("/{}", whole_path()));
                Answer::new(ResponseType::NotFound)
            }
        }
    }

    /// The device and metric of an update of `/s/{device}[/{metric}]`
    /// whose device was heard lately, read from the segments' bytes: the
    /// path of nearly every datagram. Its segments are text without a
    /// check (a literal, a kept id's text), and the id is at hand. `None`
    /// for any other path, which the general match reads.
    fn known_update<'p>(&self, path: &[&'p [u8]]) -> Option<(DeviceId, Option<&'p str>)> {
        let (device, metric) = match *path {
            [b"s", device] => (device, None),
            [b"s", device, metric] => (device, Some(std::str::from_utf8(metric).ok()?)),
            _ => return None,
        };
        Some((self.ids.known(device)?.clone(), metric))
    }

    /// The id of a `/s/{device}` segment, or the 4.00 that refuses it.
    fn device(&mut self, text: &str, out: &mut Outcome) -> Result<DeviceId, Answer> {
        self.ids.get(text).map_err(|e| {
            out.error("invalid_device_id", e.to_string());
            Answer::error(ResponseType::BadRequest, &format!("device: {e}"))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn ingest(
        &mut self,
        peer: SocketAddr,
        request: message::Request<'_>,
        options: FirstOptions<'_>,
        device: DeviceId,
        metric: Option<&str>,
        (now, arrival): (Instant, Timestamp),
        out: &mut Outcome,
        readings: &mut Vec<Reading>,
    ) -> Answer {
        let metric = match metric.map(MetricName::new).transpose() {
            Ok(m) => m,
            Err(e) => {
                out.error("invalid_metric_name", e.to_string());
                return Answer::error(ResponseType::BadRequest, &format!("metric: {e}"));
            }
        };
        let cf = options
            .cf
            .map(|v| message::read_uint(v).unwrap_or(u32::MAX));
        #[cfg(feature = "lorawan")]
        let codec = match self.codec.clone().filter(|_| super::codec::takes(cf)) {
            None => None,
            Some(c) => match super::codec::fport(request.option(URI_QUERY), c.fport) {
                Ok(fport) => Some((c, fport)),
                Err(e) => {
                    out.error("invalid_fport", e.clone());
                    return Answer::error(ResponseType::BadRequest, &e);
                }
            },
        };
        #[cfg(not(feature = "lorawan"))]
        let codec: Option<((), u8)> = None;
        let format = match format_for(cf) {
            Some(f) => f,
            // Not read: the codec reads the body.
            None if codec.is_some() => PayloadFormat::Auto { columns: None },
            None => {
                let other = cf.unwrap_or_default();
                out.error(
                    "unsupported_content_format",
                    format!("Content-Format {other}"),
                );
                return Answer::error(
                    ResponseType::UnsupportedContentFormat,
                    "use 0, 50, 110 or 112",
                );
            }
        };
        if request.payload.len() > self.limits.max_payload_bytes {
            out.error(
                "payload_too_large",
                format!("{} bytes", request.payload.len()),
            );
            return Answer::new(ResponseType::RequestEntityTooLarge)
                .with(CoapOption::Size1, message::uint(self.size1()));
        }
        let Some(value) = options.block1 else {
            let body = Cow::Borrowed(request.payload);
            let read = Read { device, metric, format, arrival };
            return self.read_body(read, body, codec, out, readings);
        };
        let key = (
            peer,
            format!("{device}/{}", metric.as_ref().map_or("", |m| m.as_str())),
        );
        let (body, echo) = match self.block1(key.clone(), value, request.payload, now, out) {
            Ok(done) => done,
            Err(answer) => return answer,
        };
        let read = Read { device, metric, format, arrival };
        let answer = self
            .read_body(read, Cow::Owned(body), codec, out, readings)
            .with(CoapOption::Block1, echo);
        // Kept for the last block sent again under a new Message ID.
        self.block1_done(key, value, request.payload, &answer, now);
        answer
    }

}


#[cfg(test)]
#[path = "handler_tests.rs"]
#[allow(clippy::type_complexity)] // test tables
#[allow(clippy::unwrap_used)]
mod tests;
