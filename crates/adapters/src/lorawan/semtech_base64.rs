//! The base64 of a PUSH_DATA's `data` and a downlink's: the standard
//! alphabet, padding optional, decoded by table on the common path.

/// Standard-alphabet base64 (RFC 4648 §4), padding optional because
/// forwarders omit it. `-` and `_` (the URL-safe alphabet) are refused, as
/// PROTOCOL.TXT promises the standard one.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64_decode_bytes(text.as_bytes())
}

/// [`base64_decode`] of a string's bytes.
pub(super) fn base64_decode_bytes(text: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const PADDING_OPTIONAL: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    // Padding is optional, but when present it must be whole ("Zg=" is
    // neither padded nor unpadded), which the crate's lenient mode allows.
    if text.ends_with(b"=") && !text.len().is_multiple_of(4) {
        return None;
    }
    plain_base64(text).or_else(|| PADDING_OPTIONAL.decode(text).ok())
}

/// The values of the standard alphabet's characters; 0xFF for the rest.
const BASE64_VALUES: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The base64 a forwarder writes, decoded by table: whole groups of four
/// characters of the standard alphabet, then an unpadded or `=`-padded
/// group of two or three whose unused bits are zero. `None` for anything
/// else, which the crate then decides (the same answer for what this
/// reads: standard base64 has one reading). The crate's general decoder
/// took a sixth of a PUSH_DATA's reading (about 100 instructions for a
/// frame of 20 bytes, callgrind, issue 69).
pub(super) fn plain_base64(text: &[u8]) -> Option<Vec<u8>> {
    let body = match text {
        [rest @ .., b'=', b'='] | [rest @ .., b'='] => rest,
        all => all,
    };
    // "Zg=" and the like were refused above; "Zg==" leaves a group of 2.
    if text.len() != body.len() && !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: &u8| match BASE64_VALUES[usize::from(*c)] {
        0xFF => None,
        v => Some(u32::from(v)),
    };
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut groups = body.chunks_exact(4);
    for g in &mut groups {
        let n = value(&g[0])? << 18 | value(&g[1])? << 12 | value(&g[2])? << 6 | value(&g[3])?;
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    match *groups.remainder() {
        [] => {}
        [a, b] => {
            let n = value(&a)? << 18 | value(&b)? << 12;
            // Bits past the last byte must be zero (the crate's default).
            if n & 0xFFFF != 0 {
                return None;
            }
            out.push((n >> 16) as u8);
        }
        [a, b, c] => {
            let n = value(&a)? << 18 | value(&b)? << 12 | value(&c)? << 6;
            if n & 0xFF != 0 {
                return None;
            }
            out.extend_from_slice(&n.to_be_bytes()[1..3]);
        }
        _ => return None,
    }
    Some(out)
}
