//! Reassembly of a segmented ComplexACK (ASHRAE 135-2020 §5.4.4, the
//! client's SEGMENTED_CONF state): segments are taken in order, the first
//! one and each full window acknowledged, a gap answered with a negative
//! SegmentACK so the device resends from the last good segment, and the
//! whole bounded by [`MAX_SEGMENTS`](super::apdu::MAX_SEGMENTS) and
//! [`MAX_BYTES`]. Pure: the client sends the acknowledgements it returns.

use super::apdu::{MAX_APDU_IP, MAX_SEGMENTS};

/// Bytes of service data one answer may reassemble to.
pub const MAX_BYTES: usize = MAX_SEGMENTS * MAX_APDU_IP;

/// Why a reassembly was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("the answer has more than {MAX_SEGMENTS} segments or {MAX_BYTES} bytes")]
    TooLarge,
    #[error("a segment changed the service choice")]
    ServiceChanged,
}

/// A SegmentACK to send: `(nak, sequence, window)`.
pub type Ack = (bool, u8, u8);

/// What one segment did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    pub ack: Option<Ack>,
    /// The whole service data, once the last segment is in.
    pub done: Option<Vec<u8>>,
}

/// One answer being reassembled.
#[derive(Debug, Clone)]
pub struct Reassembly {
    service: u8,
    next: u8,
    segments: usize,
    in_window: u8,
    data: Vec<u8>,
}

impl Reassembly {
    pub fn new(service: u8) -> Self {
        Self {
            service,
            next: 0,
            segments: 0,
            in_window: 0,
            data: Vec::new(),
        }
    }

    /// Takes segment `sequence` of a window of `window` (`more`: others
    /// follow).
    pub fn push(
        &mut self,
        sequence: u8,
        window: u8,
        more: bool,
        service: u8,
        body: &[u8],
    ) -> Result<Progress, SegmentError> {
        if service != self.service {
            return Err(SegmentError::ServiceChanged);
        }
        let window = window.clamp(1, 127);
        let last_good = self.next.wrapping_sub(1);
        if sequence != self.next {
            // A duplicate (the device resent a window) is acknowledged
            // again; a gap asks for a resend after the last good one.
            let behind = self.next.wrapping_sub(sequence);
            self.in_window = 0;
            if self.segments == 0 {
                return Ok(Progress::default());
            }
            let nak = !(1..=window).contains(&behind);
            return Ok(Progress {
                ack: Some((nak, last_good, window)),
                done: None,
            });
        }
        self.segments += 1;
        if self.segments > MAX_SEGMENTS || self.data.len() + body.len() > MAX_BYTES {
            return Err(SegmentError::TooLarge);
        }
        self.data.extend_from_slice(body);
        self.next = self.next.wrapping_add(1);
        self.in_window += 1;
        let ack_now = self.segments == 1 || self.in_window >= window || !more;
        let ack = ack_now.then(|| {
            self.in_window = 0;
            (false, sequence, window)
        });
        Ok(Progress {
            ack,
            done: (!more).then(|| std::mem::take(&mut self.data)),
        })
    }
}
