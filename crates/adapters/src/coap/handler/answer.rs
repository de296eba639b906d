//! A response under construction, before it is encoded.

use coap_lite::{CoapOption, ResponseType};

/// Longest diagnostic payload of an error response: small on purpose, since
/// requests are unauthenticated (§11.3, amplification).
pub(super) const MAX_DIAGNOSTIC: usize = 96;

/// A response under construction: code, payload, and options to add.
#[derive(Clone)]
pub(super) struct Answer {
    pub(super) code: ResponseType,
    pub(super) content_format: Option<u32>,
    pub(super) payload: Vec<u8>,
    pub(super) options: Vec<(CoapOption, Vec<u8>)>,
}

impl Answer {
    pub(super) fn new(code: ResponseType) -> Self {
        Self {
            code,
            content_format: None,
            payload: Vec::new(),
            options: Vec::new(),
        }
    }

    pub(super) fn content(format: u32, payload: Vec<u8>) -> Self {
        Self {
            content_format: Some(format),
            payload,
            ..Self::new(ResponseType::Content)
        }
    }

    /// An error with a short diagnostic payload (§5.5.2).
    pub(super) fn error(code: ResponseType, diagnostic: &str) -> Self {
        let mut end = diagnostic.len().min(MAX_DIAGNOSTIC);
        while !diagnostic.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            payload: diagnostic.as_bytes()[..end].to_vec(),
            ..Self::new(code)
        }
    }

    pub(super) fn with(mut self, option: CoapOption, value: Vec<u8>) -> Self {
        self.options.push((option, value));
        self
    }
}
