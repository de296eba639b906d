//! Length + CRC framing for the append-only logs (the ingress journal and
//! the outbox): a pure codec.
//!
//! ```text
//! frame = len:u32le crc32(body):u32le body
//! ```
//!
//! Reading tells three cases apart, because recovery treats them
//! differently: a whole frame; a buffer that ends inside a frame (a torn
//! write at the tail: cut it); and bytes that are not a frame (damage: skip
//! to the next frame that holds, see [`resync`]).

/// 4 bytes length + 4 bytes CRC-32 of the body.
pub const HEADER: usize = 8;

/// What the bytes at an offset are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A frame whose checksum holds: its body and its whole length.
    Whole { body: &'a [u8], len: usize },
    /// The buffer ends inside a frame.
    Incomplete,
    /// Not a frame: a length out of bounds or a checksum that fails.
    Damaged,
}

/// Starts a frame at the end of `out`; returns where it starts, for
/// [`end`]. The body is then appended to `out`.
pub fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    start
}

/// Completes the frame started at `start`: its length and checksum.
pub fn end(out: &mut [u8], start: usize) {
    let body = &out[start + HEADER..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
    let crc = crc32fast::hash(body).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + HEADER].copy_from_slice(&crc);
}

/// The frame at the start of `buf`. Bodies outside `body_len` are damage:
/// a scribbled length must not pass for a frame.
pub fn decode(buf: &[u8], body_len: std::ops::RangeInclusive<usize>) -> Frame<'_> {
    let Some(header) = buf.get(..HEADER) else {
        return Frame::Incomplete;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !body_len.contains(&len) {
        return Frame::Damaged;
    }
    let Some(body) = buf.get(HEADER..HEADER + len) else {
        return Frame::Incomplete;
    };
    if crc32fast::hash(body) != crc {
        return Frame::Damaged;
    }
    Frame::Whole {
        body,
        len: HEADER + len,
    }
}

/// The first offset after `from` where `intact` finds a record (a whole
/// frame whose body also parses), or `buf.len()` when none is left. A
/// false match needs a CRC-32 collision that also parses: about one in
/// four billion.
pub fn resync(buf: &[u8], from: usize, intact: impl Fn(&[u8]) -> bool) -> usize {
    (from + 1..buf.len())
        .find(|&o| intact(&buf[o..]))
        .unwrap_or(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let start = begin(&mut out);
        out.extend_from_slice(body);
        end(&mut out, start);
        out
    }

    #[test]
    fn a_frame_reads_back_and_a_torn_or_scribbled_one_is_told_apart() {
        let f = framed(b"hello");
        assert_eq!(
            decode(&f, 1..=64),
            Frame::Whole {
                body: b"hello",
                len: 13
            }
        );
        assert_eq!(decode(&f[..10], 1..=64), Frame::Incomplete, "torn tail");
        assert_eq!(decode(&f[..3], 1..=64), Frame::Incomplete, "torn header");
        let mut bad = f.clone();
        bad[10] ^= 1;
        assert_eq!(decode(&bad, 1..=64), Frame::Damaged, "checksum");
        assert_eq!(decode(&f, 6..=64), Frame::Damaged, "length out of bounds");
    }

    #[test]
    fn resync_finds_the_next_intact_frame_after_damage() {
        let mut buf = framed(b"one");
        buf.extend_from_slice(b"garbage!");
        let second = buf.len();
        buf.extend_from_slice(&framed(b"two"));
        let whole = |b: &[u8]| matches!(decode(b, 1..=64), Frame::Whole { .. });
        assert_eq!(resync(&buf, 11, whole), second);
        assert_eq!(resync(&buf, second, whole), buf.len());
    }
}
