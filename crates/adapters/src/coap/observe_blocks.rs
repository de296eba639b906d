//! A notification too large for one datagram (RFC 7959 §2.4, "Block2 in
//! notifications"): the device sends its first block with the M bit set,
//! and the observer asks for the rest with plain GETs (no Observe option),
//! block by block, checking that the ETag stays the one of the first block
//! (the same representation), then decodes the whole body as one
//! notification. A newer notification, or a fault on the way, drops the
//! fetch: the next notification carries the state again.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use gateway_core::Timestamp;
use tokio::time::Instant;

use super::message;
use super::observe_exchange::Retransmit;

/// How long a block's separate response may take once its GET was
/// acknowledged empty: RFC 7252's MAX_TRANSMIT_WAIT (93 s) bounds the
/// device's own retransmissions of it.
const SEPARATE_WAIT: std::time::Duration = std::time::Duration::from_secs(93);

/// The largest body assembled: as large as a single-datagram notification
/// may be, so a device cannot make the observer hold more by splitting it.
pub(super) const MAX_BODY: usize = 65_535;

/// A Block2 option's value (§2.2): block number, more to come, size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    pub num: u32,
    pub more: bool,
    /// SZX: the block is 2^(szx + 4) bytes; 7 is reserved.
    pub szx: u8,
}

impl Block {
    pub fn read(p: &Packet) -> Option<Result<Self, &'static str>> {
        let raw = p.get_first_option(CoapOption::Block2)?;
        let Some(v) = message::read_uint(raw).filter(|_| raw.len() <= 3) else {
            return Some(Err("a Block2 option longer than 3 bytes"));
        };
        let szx = (v & 0x7) as u8;
        if szx == 7 {
            return Some(Err("a Block2 option with the reserved size 7"));
        }
        Some(Ok(Self {
            num: v >> 4,
            more: v & 0x8 != 0,
            szx,
        }))
    }

    fn size(self) -> usize {
        1 << (usize::from(self.szx) + 4)
    }

    fn value(self) -> Vec<u8> {
        message::uint((self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx))
    }
}

/// What a response to the fetch's GET did.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Not this fetch's (another token, or an ACK for another message).
    NotOurs,
    /// Acknowledged without its block (a separate response follows), or a
    /// block taken and the next GET to send.
    Continue(Option<Vec<u8>>),
    /// The whole body, its Content-Format and when its first block came.
    Done {
        body: Vec<u8>,
        content_format: Option<u32>,
        arrival: Timestamp,
    },
    /// Given up: the error kind and what happened.
    Failed(&'static str, String),
}

/// The rest of one notification's body, being fetched.
pub(super) struct BlockFetch {
    path: Vec<String>,
    token: Vec<u8>,
    mid: u16,
    block: Block,
    etag: Option<Vec<u8>>,
    content_format: Option<u32>,
    arrival: Timestamp,
    body: Vec<u8>,
    /// The GET in flight, sent again until answered.
    request: Vec<u8>,
    /// `Some` until the GET in flight is acknowledged.
    pub retransmit: Option<Retransmit>,
    /// Once the GET is acknowledged empty: when its separate response is
    /// given up.
    separate_by: Option<Instant>,
}

impl BlockFetch {
    /// Starts on a first block (num 0, more set): the fetch and its first
    /// GET. `token` and `mid` are fresh ones of the observer.
    pub fn start(
        first: &Packet,
        block: Block,
        path: &[String],
        token: Vec<u8>,
        mid: u16,
        arrival: Timestamp,
        now: Instant,
    ) -> Result<(Self, Vec<u8>), (&'static str, String)> {
        if block.num != 0 || first.payload.len() != block.size() {
            return Err((
                "observe_block2",
                format!(
                    "a first block numbered {} of {} bytes where {} were due",
                    block.num,
                    first.payload.len(),
                    block.size()
                ),
            ));
        }
        let mut fetch = Self {
            path: path.to_vec(),
            token,
            mid,
            block: Block {
                num: 1,
                more: false,
                szx: block.szx,
            },
            etag: first.get_first_option(CoapOption::ETag).cloned(),
            content_format: first
                .get_first_option(CoapOption::ContentFormat)
                .map(|v| message::read_uint(v).unwrap_or(u32::MAX)),
            arrival,
            body: first.payload.clone(),
            request: Vec::new(),
            retransmit: None,
            separate_by: None,
        };
        let get = fetch.next_request(now);
        Ok((fetch, get))
    }

    /// When the GET in flight is due again, or its separate response
    /// is given up.
    pub fn resend_at(&self) -> Option<Instant> {
        self.retransmit.as_ref().map(|r| r.next).or(self.separate_by)
    }

    /// Whether the GET in flight was acknowledged (its block to come as a
    /// separate response).
    pub fn acknowledged(&self) -> bool {
        self.separate_by.is_some()
    }

    /// The GET to send again now, or `None` when its tries are spent (or
    /// the separate response it was acknowledged for never came).
    pub fn resend(&mut self, now: Instant) -> Option<&[u8]> {
        let r = self.retransmit.as_mut()?;
        r.again(now).then_some(self.request.as_slice())
    }

    fn next_request(&mut self, now: Instant) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = self.mid;
        p.set_token(self.token.clone());
        for segment in &self.path {
            p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        p.add_option(CoapOption::Block2, self.block.value());
        self.request = message::encode(&p);
        self.retransmit = Some(Retransmit::new(now));
        self.separate_by = None;
        self.request.clone()
    }

    /// Takes a datagram from the device. `next_mid` gives the message id
    /// of the next GET.
    pub fn take(&mut self, p: &Packet, now: Instant, next_mid: impl FnOnce() -> u16) -> Step {
        let by_mid = p.header.message_id == self.mid
            && matches!(
                p.header.get_type(),
                MessageType::Acknowledgement | MessageType::Reset
            );
        let by_token = p.get_token() == self.token.as_slice();
        if !by_mid && !by_token {
            return Step::NotOurs;
        }
        if p.header.get_type() == MessageType::Reset {
            return Step::Failed("observe_block2", "the device reset a block's GET".into());
        }
        if p.header.code == MessageClass::Empty {
            // The GET is acknowledged; its block comes as a separate
            // response.
            if by_mid && self.retransmit.take().is_some() {
                self.separate_by = Some(now + SEPARATE_WAIT);
            }
            return Step::Continue(None);
        }
        if !by_token {
            return Step::NotOurs;
        }
        match p.header.code {
            MessageClass::Response(ResponseType::Content) => {}
            other => {
                return Step::Failed(
                    "observe_block2",
                    format!("block {} answered {other:?}", self.block.num),
                )
            }
        }
        let block = match Block::read(p) {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Step::Failed("observe_block2", e.into()),
            None => {
                return Step::Failed(
                    "observe_block2",
                    format!("block {} came without a Block2 option", self.block.num),
                )
            }
        };
        // A device may answer in smaller blocks than asked (§2.4): where
        // the block lies in the body is what must follow on.
        let at = (block.num as usize).saturating_mul(block.size());
        if at < self.body.len() && at.saturating_add(p.payload.len()) <= self.body.len() {
            // A copy of a block taken (a GET sent again and both answered).
            return Step::Continue(None);
        }
        if at != self.body.len() {
            return Step::Failed(
                "observe_block2",
                format!(
                    "block {} of {} bytes does not follow the {} bytes taken",
                    block.num,
                    block.size(),
                    self.body.len()
                ),
            );
        }
        self.retransmit = None;
        self.separate_by = None;
        if p.get_first_option(CoapOption::ETag) != self.etag.as_ref() {
            return Step::Failed(
                "observe_block2",
                "the resource changed while its blocks were fetched".into(),
            );
        }
        if self.body.len() + p.payload.len() > MAX_BODY {
            return Step::Failed(
                "payload_too_large",
                format!("a notification's blocks add up to more than {MAX_BODY} bytes"),
            );
        }
        if block.more && p.payload.len() != block.size() {
            return Step::Failed(
                "observe_block2",
                format!(
                    "block {} holds {} bytes of {}",
                    block.num,
                    p.payload.len(),
                    block.size()
                ),
            );
        }
        self.body.extend_from_slice(&p.payload);
        if !block.more {
            return Step::Done {
                body: std::mem::take(&mut self.body),
                content_format: self.content_format,
                arrival: self.arrival,
            };
        }
        self.block = Block {
            num: block.num + 1,
            more: false,
            szx: block.szx,
        };
        self.mid = next_mid();
        Step::Continue(Some(self.next_request(now)))
    }

    /// Whether `p` is a CON the device sent for this fetch (a separate
    /// response), which must be acknowledged.
    pub fn wants_ack(&self, p: &Packet) -> bool {
        p.header.get_type() == MessageType::Confirmable && p.get_token() == self.token.as_slice()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn response(token: &[u8], mid: u16, etag: u8, block2: u32, payload: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(MessageType::Acknowledgement);
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.header.message_id = mid;
        p.set_token(token.to_vec());
        p.add_option(CoapOption::ETag, vec![etag]);
        p.add_option(CoapOption::Block2, message::uint(block2));
        p.payload = payload.to_vec();
        p
    }

    /// A fetch after a first block of 16 bytes (SZX 0), GET mid 10.
    fn fetch() -> BlockFetch {
        let first = response(b"obs", 1, 7, 0x08, &[b'a'; 16]);
        let block = Block::read(&first).unwrap().unwrap();
        let path = ["t".to_string()];
        let (f, get) = BlockFetch::start(
            &first,
            block,
            &path,
            b"tk".to_vec(),
            10,
            Timestamp::from_millis(5).unwrap(),
            Instant::now(),
        )
        .unwrap();
        assert!(!get.is_empty());
        f
    }

    #[tokio::test]
    async fn blocks_that_follow_on_make_the_body_and_a_copy_is_passed_over() {
        let mut f = fetch();
        let now = Instant::now();
        let step = f.take(&response(b"tk", 10, 7, 0x18, &[b'b'; 16]), now, || 11);
        assert!(matches!(step, Step::Continue(Some(_))), "{step:?}");
        // Block 1 again (its GET was sent twice): no harm.
        let copy = f.take(&response(b"tk", 10, 7, 0x18, &[b'b'; 16]), now, || 12);
        assert_eq!(copy, Step::Continue(None));
        let done = f.take(&response(b"tk", 11, 7, 0x20, b"end"), now, || 12);
        let Step::Done { body, arrival, .. } = done else {
            panic!("{done:?}")
        };
        assert_eq!(body.len(), 35);
        assert!(body.ends_with(b"bend"));
        assert_eq!(arrival, Timestamp::from_millis(5).unwrap());
        assert_eq!(f.take(&response(b"xx", 99, 7, 0x20, b""), now, || 13), Step::NotOurs);
    }

    #[tokio::test]
    async fn a_separate_response_that_never_comes_ends_the_fetch() {
        let mut f = fetch();
        let now = Instant::now();
        let mut empty_ack = response(b"", 10, 7, 0, b"");
        empty_ack.header.code = MessageClass::Empty;
        empty_ack.clear_all_options();
        assert_eq!(f.take(&empty_ack, now, || 11), Step::Continue(None));
        let due = f.resend_at().expect("the separate response is waited for");
        assert_eq!(due, now + SEPARATE_WAIT);
        assert_eq!(f.resend(due), None, "given up, not sent again");
    }

    #[tokio::test]
    async fn a_changed_etag_a_gap_an_oversized_body_or_a_reset_ends_the_fetch() {
        let now = Instant::now();
        let kind = |step: Step| match step {
            Step::Failed(kind, _) => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kind(fetch().take(&response(b"tk", 10, 8, 0x18, &[0; 16]), now, || 11)),
            "observe_block2",
            "another representation"
        );
        assert_eq!(
            kind(fetch().take(&response(b"tk", 10, 7, 0x28, &[0; 16]), now, || 11)),
            "observe_block2",
            "block 2 before block 1"
        );
        let mut f = fetch();
        let mut last = Step::NotOurs;
        // 16-byte blocks, each with more to come, past the limit.
        for (mid, num) in (10u16..).zip(1..=(MAX_BODY / 16) as u32) {
            last = f.take(
                &response(b"tk", mid, 7, (num << 4) | 0x08, &[0; 16]),
                now,
                || mid + 1,
            );
            if !matches!(last, Step::Continue(Some(_))) {
                break;
            }
        }
        assert_eq!(kind(last), "payload_too_large");
        let mut reset = response(b"", 10, 7, 0, b"");
        reset.header.set_type(MessageType::Reset);
        reset.header.code = MessageClass::Empty;
        assert_eq!(kind(fetch().take(&reset, now, || 11)), "observe_block2");
    }
}
