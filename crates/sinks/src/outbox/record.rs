//! The outbox's on-disk record: a pure codec.
//!
//! ```text
//! record  = len:u32le crc:u32le body          (crc = CRC-32 of body)
//! body    = kind:u8 seq:u64le rest
//! MESSAGE rest = created_ms:i64le retain:u8 topic_len:u16le topic payload
//! ACK / DROP / FLOOR rest = (empty)
//! ```
//!
//! FLOOR opens each new segment (kind 4, added after the first release:
//! an older gateway reads it as a few damaged bytes and carries on).
//!
//! The length and checksum frame every record, so a torn or scribbled tail
//! is recognised and skipped, and the reader can find the next intact
//! record after damage.

use gateway_core::OutboundMessage;

use gateway_core::state_file::fields::Reader;
use gateway_core::state_file::frame::{self, Frame};

/// 4 bytes length + 4 bytes CRC.
pub const HEADER: usize = frame::HEADER;
/// Larger records are refused on write and read as damage.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

const KIND_MESSAGE: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_DROP: u8 = 3;
const KIND_FLOOR: u8 = 4;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Message {
        seq: u64,
        created_ms: i64,
        msg: OutboundMessage,
    },
    /// The broker acknowledged `seq`.
    Ack { seq: u64 },
    /// `seq` was dropped (expired, or evicted by policy).
    Drop { seq: u64 },
    /// Every number up to `seq` has been given out: keeps the numbering
    /// (the upstream `seq` field) monotonic once the segments that held
    /// those messages are deleted.
    Floor { seq: u64 },
}

/// What reading at an offset found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A record and its total length in bytes.
    Record(Record, usize),
    /// The buffer ends inside a record: a torn write at the tail.
    Incomplete,
    /// Bytes that are not a record.
    Damaged,
}

/// The length of `record`'s encoding, frame included; `None` when
/// [`encode`] refuses it (a topic over 64 KiB, a body over [`MAX_BODY`]).
pub fn encoded_len(record: &Record) -> Option<usize> {
    match record {
        Record::Message { msg, .. } => message_len(msg),
        Record::Ack { .. } | Record::Drop { .. } | Record::Floor { .. } => Some(HEADER + MARK_BODY),
    }
}

/// [`encoded_len`] of a MESSAGE record of `msg`.
pub fn message_len(msg: &OutboundMessage) -> Option<usize> {
    u16::try_from(msg.topic.len()).ok()?;
    let body = MESSAGE_FIXED + msg.topic.len() + msg.payload.len();
    (body <= MAX_BODY).then_some(HEADER + body)
}

/// What a MESSAGE record of a topic of `topic_len` bytes takes beside
/// its payload, frame included.
pub fn message_overhead(topic_len: usize) -> usize {
    HEADER + MESSAGE_FIXED + topic_len
}

/// A MESSAGE body's bytes beside its topic and payload: kind, seq,
/// created_ms, retain, topic_len.
const MESSAGE_FIXED: usize = 1 + 8 + 8 + 1 + 2;
/// An ACK, DROP or FLOOR body: kind and seq.
pub const MARK_BODY: usize = 1 + 8;

/// Appends the encoding of `record` to `out`; `None` if it is too large.
/// Room for it is made once, before (written record by record into a run
/// of a hundred, the buffer grew a few times a record).
pub fn encode(record: &Record, out: &mut Vec<u8>) -> Option<()> {
    out.reserve(encoded_len(record)?);
    let frame_start = frame::begin(out);
    let start = out.len();
    match record {
        Record::Message {
            seq,
            created_ms,
            msg,
        } => {
            let topic_len = u16::try_from(msg.topic.len()).ok()?;
            out.push(KIND_MESSAGE);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&created_ms.to_le_bytes());
            out.push(u8::from(msg.retain));
            out.extend_from_slice(&topic_len.to_le_bytes());
            out.extend_from_slice(msg.topic.as_bytes());
            out.extend_from_slice(&msg.payload);
        }
        Record::Ack { seq } => {
            out.push(KIND_ACK);
            out.extend_from_slice(&seq.to_le_bytes());
        }
        Record::Drop { seq } => {
            out.push(KIND_DROP);
            out.extend_from_slice(&seq.to_le_bytes());
        }
        Record::Floor { seq } => {
            out.push(KIND_FLOOR);
            out.extend_from_slice(&seq.to_le_bytes());
        }
    }
    if out.len() - start > MAX_BODY {
        out.truncate(frame_start);
        return None;
    }
    frame::end(out, frame_start);
    Some(())
}

/// Reads the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    // The smallest body is an ACK or DROP: kind and sequence number.
    match frame::decode(buf, 9..=MAX_BODY) {
        Frame::Whole { body, len } => match parse_body(body) {
            Some(r) => Decoded::Record(r, len),
            None => Decoded::Damaged,
        },
        Frame::Incomplete => Decoded::Incomplete,
        Frame::Damaged => Decoded::Damaged,
    }
}

fn parse_body(body: &[u8]) -> Option<Record> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let seq = r.u64()?;
    match kind {
        KIND_ACK if r.is_empty() => Some(Record::Ack { seq }),
        KIND_DROP if r.is_empty() => Some(Record::Drop { seq }),
        KIND_FLOOR if r.is_empty() => Some(Record::Floor { seq }),
        KIND_MESSAGE => {
            let created_ms = r.i64()?;
            let retain = r.u8()? == 1;
            let topic = r.text()?.to_string();
            Some(Record::Message {
                seq,
                created_ms,
                msg: OutboundMessage {
                    topic,
                    payload: r.rest().to_vec(),
                    retain,
                },
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> Record {
        Record::Message {
            seq,
            created_ms: 1_795_255_200_000,
            msg: OutboundMessage {
                topic: "building/hq/d/aggregated".into(),
                payload: br#"{"id":"x"}"#.to_vec(),
                retain: seq.is_multiple_of(2),
            },
        }
    }

    #[test]
    fn records_round_trip() {
        for r in [
            message(1),
            message(2),
            Record::Ack { seq: 7 },
            Record::Drop { seq: 9 },
            Record::Floor { seq: 11 },
        ] {
            let mut buf = Vec::new();
            encode(&r, &mut buf).unwrap();
            assert_eq!(decode(&buf), Decoded::Record(r, buf.len()));
        }
    }

    /// `encoded_len` is what `encode` writes (the outbox sizes its runs
    /// and its limits by it), and `None` exactly where `encode` refuses.
    #[test]
    fn the_encoded_length_is_known_before_encoding() {
        let long = |topic: usize, payload: usize| Record::Message {
            seq: u64::MAX,
            created_ms: -1,
            msg: OutboundMessage {
                topic: "t".repeat(topic),
                payload: vec![b'x'; payload],
                retain: true,
            },
        };
        for r in [
            message(1),
            Record::Ack { seq: 7 },
            Record::Drop { seq: 0 },
            Record::Floor { seq: u64::MAX },
            long(0, 0),
            long(usize::from(u16::MAX), 3),
            long(usize::from(u16::MAX) + 1, 0),
            long(10, MAX_BODY - MESSAGE_FIXED - 10),
            long(10, MAX_BODY - MESSAGE_FIXED - 9),
        ] {
            let mut buf = vec![0xa5; 3];
            let encoded = encode(&r, &mut buf).map(|()| buf.len() - 3);
            assert_eq!(encoded_len(&r), encoded);
            if encoded.is_none() {
                assert_eq!(buf, [0xa5; 3], "a refused record leaves nothing");
            }
        }
    }

    #[test]
    fn torn_and_scribbled_records_are_told_apart() {
        let mut buf = Vec::new();
        encode(&message(1), &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
        for i in HEADER..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode(&bad), Decoded::Damaged, "flip at {i}");
        }
        assert_eq!(decode(&[0xff; 64]), Decoded::Damaged);
        assert_eq!(decode(&[0; 64]), Decoded::Damaged);
    }
}
