//! What a request's options say: the option numbers and Content-Formats the
//! server reads, and the one walk over a request's options.

use crate::payload::PayloadFormat;

/// Content-Format ids (RFC 7252 §12.3, RFC 8428 §12.3).
pub(super) const CF_TEXT: u32 = 0;
pub(super) const CF_LINK_FORMAT: u32 = 40;
pub(super) const CF_JSON: u32 = 50;
pub(super) const CF_SENML_JSON: u32 = 110;
pub(super) const CF_SENML_CBOR: u32 = 112;

/// Option numbers read by number (RFC 7252 §12.2, RFC 7959 §2.1).
pub(super) const URI_PATH: u16 = 11;
pub(super) const CONTENT_FORMAT: u16 = 12;
/// A codec's `?fport=`, and a filter on `/.well-known/core` (RFC 6690 §4.1).
pub(super) const URI_QUERY: u16 = 15;
pub(super) const BLOCK1: u16 = 27;
const URI_HOST: u16 = 3;
const URI_PORT: u16 = 7;
const ACCEPT: u16 = 17;
const BLOCK2: u16 = 23;

/// Option numbers the server understands. Any other critical (odd) option
/// in a request is answered 4.02 Bad Option (§5.4.1).
pub(super) const UNDERSTOOD_CRITICAL: [u16; 7] = [
    3,  // Uri-Host
    7,  // Uri-Port
    11, // Uri-Path
    15, // Uri-Query (a codec's fport, a discovery filter)
    17, // Accept (ignored: each resource has one representation)
    23, // Block2 (a GET's answer in blocks)
    27, // Block1
];

/// Uri-Path segments read without allocating: one more than the longest
/// resource path, so a longer path still matches none.
pub(super) const MAX_SEGMENTS: usize = 4;

/// What the server reads of a request's options, from the one walk over
/// them.
pub(super) struct OptionsRead<'a> {
    /// The resources served have at most three segments: a longer path
    /// is only ever answered 4.04, and its message reads it again. No
    /// vector per datagram; the segments stay bytes until a path needs
    /// them as text.
    pub(super) raw: [&'a [u8]; MAX_SEGMENTS],
    /// Uri-Path segments in all.
    pub(super) depth: usize,
    /// Whether the segments past those kept are text: only that decides
    /// their answer (4.00 or 4.04).
    pub(super) path_utf8: bool,
    pub(super) cf: Option<&'a [u8]>,
    pub(super) block1: Option<&'a [u8]>,
    pub(super) block2: Option<&'a [u8]>,
    /// The first critical option not understood: one we do not know, one
    /// repeated that is defined once (§5.4.5), or one whose value is
    /// longer than its format allows (§5.4.3).
    pub(super) unsupported: Option<u16>,
    /// The critical options defined once that were met, a bit each.
    once: u8,
}

impl Default for OptionsRead<'_> {
    fn default() -> Self {
        Self {
            raw: [&[]; MAX_SEGMENTS],
            depth: 0,
            path_utf8: true,
            cf: None,
            block1: None,
            block2: None,
            unsupported: None,
            once: 0,
        }
    }
}

impl<'a> OptionsRead<'a> {
    // Called per option of every datagram; out of line it cost more than
    // its match (issue 69).
    #[inline]
    pub(super) fn add(&mut self, number: u16, value: &'a [u8]) {
        match number {
            URI_PATH => {
                match self.raw.get_mut(self.depth) {
                    Some(slot) => *slot = value,
                    None => self.path_utf8 &= std::str::from_utf8(value).is_ok(),
                }
                self.depth += 1;
            }
            CONTENT_FORMAT => {
                self.cf.get_or_insert(value);
            }
            BLOCK1 => {
                self.once(0, number, value, 3);
                self.block1.get_or_insert(value);
            }
            URI_HOST => self.once(1, number, value, 255),
            URI_PORT => self.once(2, number, value, 2),
            ACCEPT => self.once(3, number, value, 2),
            BLOCK2 => {
                self.once(4, number, value, 3);
                self.block2.get_or_insert(value);
            }
            n if n % 2 == 1 && !UNDERSTOOD_CRITICAL.contains(&n) => {
                self.unsupported.get_or_insert(n);
            }
            _ => {}
        }
    }

    /// A critical option defined once, its value at most `longest` bytes:
    /// a second occurrence, or a longer value, is not understood.
    fn once(&mut self, bit: u8, number: u16, value: &[u8], longest: usize) {
        let seen = self.once & 1 << bit != 0;
        self.once |= 1 << bit;
        if seen || value.len() > longest {
            self.unsupported.get_or_insert(number);
        }
    }
}

/// The first values of the options an update reads, from the one walk
/// over a request's options.
#[derive(Clone, Copy)]
pub(super) struct FirstOptions<'a> {
    pub(super) cf: Option<&'a [u8]>,
    pub(super) block1: Option<&'a [u8]>,
}

/// The payload decoder for a Content-Format; `None` for one we do not read.
/// A message without Content-Format is read by its shape.
pub(crate) fn format_for(cf: Option<u32>) -> Option<PayloadFormat> {
    Some(match cf {
        None => PayloadFormat::Auto { columns: None },
        Some(CF_TEXT) => PayloadFormat::Number,
        Some(CF_JSON) => PayloadFormat::Json,
        Some(CF_SENML_JSON) => PayloadFormat::Senml,
        Some(CF_SENML_CBOR) => PayloadFormat::SenmlCbor,
        Some(_) => return None,
    })
}
