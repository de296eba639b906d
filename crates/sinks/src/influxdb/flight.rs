//! The records of the requests in flight: which outbox records the next
//! request takes (the oldest not already in one), and what a finished
//! request does to them (acknowledged after a 2xx, put back otherwise).

use gateway_core::deadline;
use hyper::body::Bytes;
use tokio::time::Instant;
use tracing::error;

use super::deliver::Settled;
use super::line;
use super::Writer;

/// A batch being delivered: its outbox records and points.
pub(super) struct Flight {
    pub seqs: Vec<u64>,
    pub points: usize,
}

impl Writer {
    /// Reads the oldest records not in a delivery, up to `batch_size`
    /// points (at least one record), into one request body.
    pub(super) fn take_batch(&mut self) -> Option<(Flight, Bytes)> {
        let cap = self.config.batch_size;
        let mut flight = Flight {
            seqs: Vec::new(),
            points: 0,
        };
        let mut body = Vec::new();
        let candidates = self
            .spool
            .outbox()
            .seqs_after(self.cursor, cap + self.flying.len());
        for seq in candidates {
            if self.flying.contains(&seq) {
                continue;
            }
            match self.spool.read(seq) {
                Ok(Some(m)) => {
                    let n = m.payload.iter().filter(|b| **b == b'\n').count();
                    if flight.points > 0 && flight.points + n > cap {
                        break;
                    }
                    flight.points += n;
                    if m.topic == line::NS_RECORD {
                        body.extend_from_slice(&m.payload);
                    } else {
                        // Stored by a version that wrote milliseconds.
                        line::ms_record_to_ns(&m.payload, &mut body);
                    }
                    flight.seqs.push(seq);
                }
                // Gone (expired, evicted) or unreadable (counted): skip it,
                // the outbox keeps or drops it by its own rules.
                Ok(None) => {}
                Err(e) => {
                    error!(output = %self.config.name, seq, error = %e, "Outbox: cannot read a record; dropping it.");
                    self.spool.ack(seq);
                }
            }
        }
        let last = *flight.seqs.last()?;
        self.cursor = self.cursor.max(last);
        self.flying.extend(&flight.seqs);
        Some((flight, Bytes::from(body)))
    }

    /// Acknowledges a delivered batch's records, or puts them back to be
    /// sent again after a wait.
    pub(super) fn settle_flight(&mut self, flight: Flight, settled: Settled) {
        for seq in &flight.seqs {
            self.flying.remove(seq);
        }
        match settled {
            Settled::Done => {
                for seq in &flight.seqs {
                    self.spool.ack(*seq);
                }
                self.backoff.reset();
            }
            Settled::Retry {
                wait,
                missing_database,
            } => {
                if missing_database {
                    self.create_pending = true;
                }
                self.cursor = 0;
                self.unsent += flight.points;
                self.plan.stored(Instant::now());
                // The server's wait is capped where it is read; the backoff by its
                // own cap. Both come from outside (a header, the config):
                // the sum is checked. The server's wait is a floor, not a
                // replacement: `Retry-After: 0` (or a date its clock puts
                // in the past) had the batch resent at once, in a loop.
                let backoff = self.backoff.next_delay();
                let wait = wait.map_or(backoff, |asked| asked.max(backoff));
                self.plan.retry_at(deadline::from_now(wait));
            }
        }
    }

    /// Points stored and not in a delivery, counted from the outbox up to
    /// a batch (at start and now and then).
    pub(super) fn unsent_points(&self) -> usize {
        let outbox = self.spool.outbox();
        let mut n = 0;
        for seq in outbox.seqs_after(0, self.config.batch_size + self.flying.len()) {
            if self.flying.contains(&seq) {
                continue;
            }
            if let Ok(Some(m)) = outbox.read(seq) {
                n += m.payload.iter().filter(|b| **b == b'\n').count();
            }
            if n >= self.config.batch_size {
                break;
            }
        }
        n
    }
}
