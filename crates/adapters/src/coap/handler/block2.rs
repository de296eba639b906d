//! A GET's representation in Block2 blocks (RFC 7959 §2.4): a building
//! has more devices than one datagram can list, and a constrained client
//! may ask for blocks smaller than ours.
//!
//! Stateless, as the RFC allows: every block request builds the
//! representation again and answers its slice. An ETag (a hash of the
//! whole representation) goes with each block, so a client that follows
//! the blocks while devices are added sees that the listing changed under
//! it and starts over, rather than joining slices of two listings.

use coap_lite::{CoapOption, ResponseType};

use super::answer::Answer;
use super::latest::MAX_RESPONSE_PAYLOAD;
use crate::coap::message;

/// Our block size exponent (§2.2: size = 2^(SZX + 4)): 1024 bytes, the
/// §4.6 payload bound, and the largest a client may ask for.
const OUR_SZX: u32 = 6;

/// `answer` as the request's Block2 option asks for it: whole when no block
/// was asked for and it fits one datagram; otherwise the block asked for
/// (the first when none was), of the size asked for or ours if smaller.
pub(super) fn serve(answer: Answer, block2: Option<&[u8]>) -> Answer {
    if answer.code != ResponseType::Content {
        return answer;
    }
    let requested = match block2.map(parse) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(why)) => return Answer::error(ResponseType::BadRequest, why),
    };
    let whole = &answer.payload;
    if requested.is_none() && whole.len() <= MAX_RESPONSE_PAYLOAD {
        return answer;
    }
    let (num, szx) = requested.unwrap_or((0, OUR_SZX));
    let szx = szx.min(OUR_SZX);
    let size = 1usize << (szx + 4);
    let start = usize::try_from(num).unwrap_or(usize::MAX).saturating_mul(size);
    if start > whole.len() || (start == whole.len() && num > 0) {
        return Answer::error(
            ResponseType::BadOption,
            &format!(
                "Block2 block {num} of {size} bytes is past the {} bytes",
                whole.len()
            ),
        );
    }
    let end = (start + size).min(whole.len());
    let more = end < whole.len();
    let value = num << 4 | u32::from(more) << 3 | szx;
    let etag = etag(whole);
    let total = u32::try_from(whole.len()).unwrap_or(u32::MAX);
    let slice = whole[start..end].to_vec();
    let mut out = Answer {
        payload: slice,
        ..answer
    };
    out = out
        .with(CoapOption::ETag, etag.to_vec())
        .with(CoapOption::Block2, message::uint(value));
    if num == 0 {
        // The whole size up front (§4), so a client can tell how many
        // blocks will follow before it asks for them.
        out = out.with(CoapOption::Size2, message::uint(total));
    }
    out
}

/// A Block2 value: (NUM, SZX). The M bit means nothing in a request.
fn parse(raw: &[u8]) -> Result<(u32, u32), &'static str> {
    // The options walk already refused a value longer than 3 bytes.
    let v = raw.iter().fold(0u32, |v, b| v << 8 | u32::from(*b));
    let szx = v & 0x7;
    if szx == 7 {
        return Err("Block2 size exponent 7 is reserved");
    }
    Ok((v >> 4, szx))
}

/// Four bytes of FNV-1a over the representation: enough to tell two
/// listings apart between one block and the next.
fn etag(bytes: &[u8]) -> [u8; 4] {
    let h = bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    h.to_be_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn content(len: usize) -> Answer {
        let payload = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        Answer::content(40, payload)
    }

    fn option(a: &Answer, which: CoapOption) -> Option<u32> {
        a.options
            .iter()
            .find(|(o, _)| *o == which)
            .map(|(_, v)| v.iter().fold(0u32, |x, b| x << 8 | u32::from(*b)))
    }

    #[test]
    fn a_small_answer_without_block2_goes_whole_and_plain() {
        let a = serve(content(1024), None);
        assert_eq!(a.payload.len(), 1024);
        assert!(a.options.is_empty());
    }

    #[test]
    fn a_large_answer_goes_in_1024_byte_blocks_that_join_into_the_whole() {
        let whole = content(2500).payload;
        let first = serve(content(2500), None);
        assert_eq!(first.payload.len(), 1024);
        assert_eq!(option(&first, CoapOption::Block2), Some(0x0e), "NUM 0, M, SZX 6");
        assert_eq!(option(&first, CoapOption::Size2), Some(2500));
        let mut joined = first.payload.clone();
        let mut num = 1u32;
        loop {
            let a = serve(content(2500), Some(&message::uint(num << 4 | 6)));
            assert_eq!(option(&a, CoapOption::ETag), option(&first, CoapOption::ETag));
            assert_eq!(option(&a, CoapOption::Size2), None);
            joined.extend(&a.payload);
            let b = option(&a, CoapOption::Block2).unwrap();
            assert_eq!(b >> 4, num);
            if b & 0x8 == 0 {
                break;
            }
            num += 1;
        }
        assert_eq!(num, 2);
        assert_eq!(joined, whole);
    }

    #[test]
    fn a_client_asking_small_blocks_gets_them_even_for_a_small_answer() {
        let a = serve(content(40), Some(&[0x00]));
        assert_eq!(a.payload.len(), 16);
        assert_eq!(option(&a, CoapOption::Block2), Some(0x08), "NUM 0, M, SZX 0");
        let last = serve(content(40), Some(&[0x20]));
        assert_eq!(last.payload, content(40).payload[32..]);
        assert_eq!(option(&last, CoapOption::Block2), Some(0x20), "NUM 2, last");
    }

    #[test]
    fn a_block_larger_than_ours_is_answered_at_our_size() {
        // SZX 6 is the largest a client can ask for; anything else is a
        // smaller size, so a request of 1024 takes ours.
        let a = serve(content(3000), Some(&message::uint(1 << 4 | 6)));
        assert_eq!(a.payload, content(3000).payload[1024..2048]);
    }

    #[test]
    fn a_block_past_the_end_and_the_reserved_size_are_refused() {
        let past = serve(content(100), Some(&message::uint(7 << 4 | 2)));
        assert_eq!(past.code, ResponseType::BadOption);
        assert!(String::from_utf8_lossy(&past.payload).contains("past"));
        let exact_end = serve(content(64), Some(&message::uint(1 << 4 | 2)));
        assert_eq!(exact_end.code, ResponseType::BadOption);
        let reserved = serve(content(100), Some(&[0x07]));
        assert_eq!(reserved.code, ResponseType::BadRequest);
        // An empty representation still has its one (empty) block.
        let empty = serve(content(0), Some(&[0x02]));
        assert_eq!(empty.code, ResponseType::Content);
        assert_eq!(option(&empty, CoapOption::Block2), Some(0x02));
    }

    #[test]
    fn the_etag_tells_two_listings_apart() {
        assert_ne!(etag(b"</s>,</s/a>"), etag(b"</s>,</s/b>"));
        assert_eq!(etag(b"same"), etag(b"same"));
    }
}
