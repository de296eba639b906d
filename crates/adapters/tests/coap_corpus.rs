//! Regression corpus for the CoAP server's datagram handling: every
//! malformed datagram in `data/coap_malformed.txt` is counted by its type and
//! answered as RFC 7252 §4.2 says, and a deterministic sweep of random and
//! mutated datagrams never panics and never answers with anything but a
//! Reset or a response to the same Message ID.

#![cfg(feature = "coap")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Instant;

use adapters::coap::handler::{Handler, Limits};
use gateway_core::Timestamp;

fn handler() -> Handler {
    Handler::new(
        Limits {
            max_payload_bytes: 1024,
            max_body_bytes: 8192,
            dedup_capacity: 1024,
            max_devices: 64,
            max_readings_per_message: adapters::payload::DEFAULT_MAX_READINGS_PER_MESSAGE,
        },
        1,
    )
}

fn peer() -> SocketAddr {
    "192.0.2.7:5683".parse().unwrap()
}

fn arrival() -> Timestamp {
    Timestamp::from_millis(1_763_719_200_000).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    // An odd trailing digit is a truncated byte: dropped, as a short read.
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn corpus_datagrams_are_counted_and_answered_per_rfc() {
    let corpus = include_str!("data/coap_malformed.txt");
    let mut h = handler();
    let mut cases = 0;
    for line in corpus.lines() {
        if line.starts_with('#') || line.trim().is_empty() && !line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A line of only white space before the kind is the empty datagram.
        let (bytes, kind, reply) = match fields.as_slice() {
            [kind, reply] if line.starts_with(' ') => (Vec::new(), *kind, *reply),
            [h, kind, reply] => (hex(h), *kind, *reply),
            _ => continue,
        };
        let out = h.handle(peer(), &bytes, Instant::now(), arrival());
        let kinds: Vec<&str> = out.errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, [kind], "{line}");
        assert!(out.readings.is_empty(), "{line}");
        let want = (reply != "-").then(|| hex(reply));
        let got = out.reply.map(|r| r[..r.len().min(4)].to_vec());
        assert_eq!(got, want, "{line}");
        cases += 1;
    }
    assert!(cases >= 25, "corpus read {cases} cases");
}

/// xorshift64: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_mutated_datagrams_never_panic_or_misanswer() {
    // Valid requests to mutate: CON POST /s/d/t "21.5", NON POST SenML,
    // a Block1 block, CON GET /.well-known/core.
    let seeds = [
        // Uri-Path s, d, t; Content-Format 0; "21.5"
        hex("41027d3442b1730164017410ff32312e35"),
        // Uri-Path s, d; Content-Format 110; [{"n":"t","v":1}]
        hex("51027d3542b1730164116eff5b7b226e223a2274222c2276223a317d5d"),
        // the same as one last Block1 block (NUM 0, M 0, SZX 2)
        hex("41027d3642b1730164116ed10202ff5b7b226e223a2274222c2276223a317d5d"),
        hex("41017d3742bb2e77656c6c2d6b6e6f776e04636f7265"),
    ];
    let mut h = handler();
    for seed in &seeds {
        let out = h.handle(peer(), seed, Instant::now(), arrival());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let readings = out.readings.len();
        // CON answers 2.04/2.05; the NON update gets no answer but a reading.
        assert!(out.reply.is_none_or(|r| r[1] >> 5 == 2) && (readings == 1 || seed[1] == 1));
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut h = handler();
    for i in 0..50_000u32 {
        let datagram: Vec<u8> = if i % 2 == 0 {
            let len = (rng.next() % 64) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut d = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
            for _ in 0..=(rng.next() % 4) {
                match rng.next() % 3 {
                    0 if !d.is_empty() => {
                        let at = (rng.next() as usize) % d.len();
                        d[at] ^= 1 << (rng.next() % 8);
                    }
                    1 if !d.is_empty() => d.truncate((rng.next() as usize) % d.len()),
                    _ => d.push(rng.next() as u8),
                }
            }
            d
        };
        let out = h.handle(peer(), &datagram, Instant::now(), arrival());
        if let Some(reply) = out.reply {
            assert!(reply.len() >= 4 && reply[0] >> 6 == 1, "{datagram:02x?}");
            let kind = (reply[0] >> 4) & 0b11;
            // Reset or ACK echo the request's Message ID; a NON has its own.
            if kind != 1 {
                assert_eq!(reply[2..4], datagram[2..4], "{datagram:02x?}");
            }
            assert!(reply.len() <= 1152, "reply of {} bytes", reply.len());
        }
    }
}
