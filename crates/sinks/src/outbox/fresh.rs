//! The messages the outbox has just written, kept in memory until they
//! are read for sending: an output reads each message once, moments after
//! storing it, and reading it back from the segment (a `pread`, the
//! record's checks and a copy of its topic and payload) cost about 2 100
//! instructions a window (issue 69). Only what is already on disk and
//! synced is kept, so what a crash leaves to resend is unchanged; a message
//! read again (a resend after a reconnect) comes from the disk.

use std::collections::VecDeque;

use gateway_core::OutboundMessage;

/// Messages kept: the windows of a few hundred devices closing at once
/// (64 let a third of 100 devices' windows be read back), few enough that
/// an outage's backlog stays on disk only.
const MAX_MESSAGES: usize = 256;
/// Bytes of payload and topic kept: at most this is held during an outage.
const MAX_BYTES: usize = 128 * 1024;

#[derive(Default)]
pub(super) struct Fresh {
    /// Oldest first, by sequence number.
    msgs: VecDeque<(u64, OutboundMessage)>,
    bytes: usize,
}

fn size(m: &OutboundMessage) -> usize {
    m.topic.len() + m.payload.len()
}

impl Fresh {
    /// Keeps `msg`, stored (and synced) under `seq`, dropping the oldest
    /// kept beyond the bounds.
    pub(super) fn keep(&mut self, seq: u64, msg: OutboundMessage) {
        let n = size(&msg);
        if n > MAX_BYTES {
            return;
        }
        while self.msgs.len() >= MAX_MESSAGES || self.bytes + n > MAX_BYTES {
            let Some((_, old)) = self.msgs.pop_front() else {
                break;
            };
            self.bytes -= size(&old);
        }
        self.bytes += n;
        self.msgs.push_back((seq, msg));
    }

    /// The message kept under `seq`, no longer kept.
    pub(super) fn take(&mut self, seq: u64) -> Option<OutboundMessage> {
        let i = self.msgs.iter().position(|(s, _)| *s == seq)?;
        let (_, msg) = self.msgs.remove(i)?;
        self.bytes -= size(&msg);
        Some(msg)
    }

    pub(super) fn len(&self) -> usize {
        self.msgs.len()
    }
}
