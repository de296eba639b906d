//! The stateless half of the DTLS cookie exchange (RFC 6347 §4.2.1).
//!
//! A ClientHello without a cookie our HMAC accepts is answered here with a
//! HelloVerifyRequest and forgotten: no OpenSSL session, no handshake
//! slot, no charge on the per-address handshake rate. Only a ClientHello
//! that returns a valid cookie (its sender received our datagram, so the
//! address is not spoofed) gets an OpenSSL session, which then sees the
//! exchange as if it had made it itself (see [`primer`]).
//!
//! OpenSSL's own `DTLSv1_listen` does the same, but the `openssl` crate
//! does not expose it and this crate has no unsafe code.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use tokio::time::Instant;

/// How long a cookie secret signs new cookies; the one before it is still
/// accepted, so a cookie lives between one and two of these.
pub const COOKIE_ROTATION: Duration = Duration::from_secs(300);

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const HELLO_VERIFY_REQUEST: u8 = 3;
/// RFC 6347 §4.2.1: a DTLS 1.2 server answers with DTLS 1.0 in the
/// HelloVerifyRequest, which every DTLS client understands.
const DTLS1_0: [u8; 2] = [0xfe, 0xff];
const RECORD_HEADER: usize = 13;
const HANDSHAKE_HEADER: usize = 12;

/// The content type and epoch of a datagram's first record.
pub fn record_header(d: &[u8]) -> Option<(u8, u16)> {
    (d.len() >= RECORD_HEADER).then(|| (d[0], u16::from_be_bytes([d[3], d[4]])))
}

/// True for a record that belongs to a handshake whatever session the
/// address has: epoch 0 (the hellos, key exchange, ChangeCipherSpec) or
/// an encrypted handshake message (Finished).
pub fn is_handshake_record(d: &[u8]) -> bool {
    matches!(record_header(d), Some((_, 0) | (HANDSHAKE, _)))
}

/// An unfragmented epoch-0 ClientHello, the only kind a stateless server
/// can read (a cookie must not depend on reassembly state).
pub struct ClientHello {
    record_version: [u8; 2],
    record_seq: u64,
    pub msg_seq: u16,
    pub random: [u8; 32],
    pub cookie: Vec<u8>,
    /// The message body with an empty cookie: what the cookie covers, so a
    /// second ClientHello must repeat the first one's parameters.
    bare_body: Vec<u8>,
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// The ClientHello a datagram starts with, if it is one.
pub fn client_hello(d: &[u8]) -> Option<ClientHello> {
    let (ty, epoch) = record_header(d)?;
    if ty != HANDSHAKE || epoch != 0 {
        return None;
    }
    let mut seq = [0u8; 8];
    seq[2..].copy_from_slice(&d[5..11]);
    let len = usize::from(u16::from_be_bytes([d[11], d[12]]));
    let rec = d.get(RECORD_HEADER..RECORD_HEADER + len)?;
    if rec.len() < HANDSHAKE_HEADER || rec[0] != CLIENT_HELLO {
        return None;
    }
    let msg_len = u24(&rec[1..4]);
    let frag_off = u24(&rec[6..9]);
    let frag_len = u24(&rec[9..12]);
    if frag_off != 0 || frag_len != msg_len {
        return None;
    }
    let body = rec.get(HANDSHAKE_HEADER..HANDSHAKE_HEADER + msg_len)?;
    // client_version(2) random(32) session_id<0..32> cookie<0..255> ...
    let sid_len = usize::from(*body.get(34)?);
    let cookie_at = 35 + sid_len;
    let cookie_len = usize::from(*body.get(cookie_at)?);
    let cookie = body.get(cookie_at + 1..cookie_at + 1 + cookie_len)?.to_vec();
    let mut bare_body = Vec::with_capacity(body.len() - cookie_len);
    bare_body.extend_from_slice(&body[..cookie_at]);
    bare_body.push(0);
    bare_body.extend_from_slice(&body[cookie_at + 1 + cookie_len..]);
    let mut random = [0u8; 32];
    random.copy_from_slice(&body[2..34]);
    Some(ClientHello {
        record_version: [d[1], d[2]],
        record_seq: u64::from_be_bytes(seq),
        msg_seq: u16::from_be_bytes([rec[4], rec[5]]),
        random,
        cookie,
        bare_body,
    })
}

fn record(version: [u8; 2], seq: u64, msg_type: u8, msg_seq: u16, body: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(RECORD_HEADER + HANDSHAKE_HEADER + body.len());
    d.push(HANDSHAKE);
    d.extend_from_slice(&version);
    // Epoch 0 and the 48-bit sequence number.
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(&seq.to_be_bytes()[2..]);
    let rec_len = HANDSHAKE_HEADER + body.len();
    d.extend_from_slice(&(rec_len as u16).to_be_bytes());
    let len = (body.len() as u32).to_be_bytes();
    d.push(msg_type);
    d.extend_from_slice(&len[1..]);
    d.extend_from_slice(&msg_seq.to_be_bytes());
    d.extend_from_slice(&[0, 0, 0]);
    d.extend_from_slice(&len[1..]);
    d.extend_from_slice(body);
    d
}

/// The HelloVerifyRequest answering `ch` with `cookie`: record sequence
/// number copied from the ClientHello (§4.2.1), message sequence 0.
pub fn hello_verify_request(ch: &ClientHello, cookie: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(3 + cookie.len());
    body.extend_from_slice(&DTLS1_0);
    body.push(cookie.len() as u8);
    body.extend_from_slice(cookie);
    record(DTLS1_0, ch.record_seq, HELLO_VERIFY_REQUEST, 0, &body)
}

/// What a fresh OpenSSL session is fed before the ClientHello that carries
/// a valid cookie: the same ClientHello without it, as message 0, so that
/// OpenSSL answers it (a HelloVerifyRequest we throw away) and then
/// expects the real one as message 1, exactly as if it had kept state.
/// The record numbers keep OpenSSL's replay window happy: the primer
/// comes just before the real record; a real record numbered 0 (no
/// client we know does that) is renumbered 1, which epoch 0, carrying no
/// MAC, allows. Returns the primer and the real datagram to feed next.
pub fn primer(ch: &ClientHello, real: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut real = real.to_vec();
    let seq = if ch.record_seq == 0 {
        real[5..11].copy_from_slice(&1u64.to_be_bytes()[2..]);
        0
    } else {
        ch.record_seq - 1
    };
    (
        record(ch.record_version, seq, CLIENT_HELLO, 0, &ch.bare_body),
        real,
    )
}

/// The cookie secrets: the current one and the one before.
pub struct CookieKeys {
    current: PKey<Private>,
    previous: Option<PKey<Private>>,
    since: Instant,
}

fn fresh_key() -> Result<PKey<Private>, ErrorStack> {
    let mut s = [0u8; 32];
    openssl::rand::rand_bytes(&mut s)?;
    PKey::hmac(&s)
}

impl CookieKeys {
    /// # Errors
    /// OpenSSL's, when it has no randomness.
    pub fn new(now: Instant) -> Result<Self, ErrorStack> {
        Ok(Self {
            current: fresh_key()?,
            previous: None,
            since: now,
        })
    }

    /// A new secret every [`COOKIE_ROTATION`], so a cookie once seen
    /// (in a capture, say) stops working.
    ///
    /// # Errors
    /// OpenSSL's, when it has no randomness; the secret is then kept.
    pub fn rotate(&mut self, now: Instant) -> Result<(), ErrorStack> {
        if now.duration_since(self.since) >= COOKIE_ROTATION {
            let next = fresh_key()?;
            self.previous = Some(std::mem::replace(&mut self.current, next));
            self.since = now;
        }
        Ok(())
    }

    fn mac(key: &PKey<Private>, peer: SocketAddr, ch: &ClientHello) -> Result<Vec<u8>, ErrorStack> {
        let mut signer = Signer::new(MessageDigest::sha256(), key)?;
        match peer.ip() {
            IpAddr::V4(ip) => signer.update(&ip.octets())?,
            IpAddr::V6(ip) => signer.update(&ip.octets())?,
        }
        signer.update(&peer.port().to_be_bytes())?;
        signer.update(&ch.bare_body)?;
        signer.sign_to_vec()
    }

    /// The cookie for `ch` from `peer`, under the current secret.
    ///
    /// # Errors
    /// OpenSSL's.
    pub fn cookie(&self, peer: SocketAddr, ch: &ClientHello) -> Result<Vec<u8>, ErrorStack> {
        Self::mac(&self.current, peer, ch)
    }

    /// Whether `ch` returns a cookie we gave `peer` for these parameters.
    pub fn verify(&self, peer: SocketAddr, ch: &ClientHello) -> bool {
        if ch.cookie.is_empty() {
            return false;
        }
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|key| {
                Self::mac(key, peer, ch).is_ok_and(|want| {
                    want.len() == ch.cookie.len() && openssl::memcmp::eq(&want, &ch.cookie)
                })
            })
    }
}
