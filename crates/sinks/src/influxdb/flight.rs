//! The records of the requests in flight: which outbox records the next
//! request takes (the oldest not already in one), and what a finished
//! request does to them (acknowledged after a 2xx, put back otherwise;
//! a record only partly written is put back without the part written).

use gateway_core::deadline;
use hyper::body::Bytes;
use tokio::time::Instant;
use tracing::error;

use super::deliver::{Delivered, Settled};
use super::line;
use super::Writer;

/// A batch being delivered: its outbox records and points.
pub(super) struct Flight {
    pub records: Vec<Carried>,
    pub points: usize,
}

/// One outbox record in a request body, in order.
pub(super) struct Carried {
    pub seq: u64,
    /// Its first lines, written by an earlier delivery cut short, left
    /// out of this one.
    pub skipped: usize,
    /// Its lines in this body.
    pub points: usize,
}

impl Writer {
    /// Reads the oldest records not in a delivery, up to `batch_size`
    /// points (at least one record), into one request body.
    pub(super) fn take_batch(&mut self) -> Option<(Flight, Bytes)> {
        let cap = self.config.batch_size;
        let cap = self.pace.limit().min(cap);
        let mut flight = Flight {
            records: Vec::new(),
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
                    let skipped = self.partly_written.get(&seq).copied().unwrap_or(0);
                    let rest = after_lines(&m.payload, skipped);
                    let n = rest.iter().filter(|b| **b == b'\n').count();
                    if flight.points > 0 && flight.points + n > cap {
                        break;
                    }
                    let start = body.len();
                    if m.topic == line::NS_RECORD {
                        body.extend_from_slice(rest);
                    } else {
                        // Stored by a version that wrote milliseconds.
                        line::ms_record_to_ns(rest, &mut body);
                    }
                    let n = body[start..].iter().filter(|b| **b == b'\n').count();
                    flight.points += n;
                    flight.records.push(Carried {
                        seq,
                        skipped,
                        points: n,
                    });
                }
                // Gone (expired, evicted) or unreadable (counted): skip it,
                // the outbox keeps or drops it by its own rules.
                Ok(None) => {
                    self.partly_written.remove(&seq);
                }
                Err(e) => {
                    error!(output = %self.config.name, seq, error = %e, "Outbox: cannot read a record; dropping it.");
                    self.partly_written.remove(&seq);
                    self.spool.ack(seq);
                }
            }
        }
        let last = flight.records.last()?.seq;
        self.cursor = self.cursor.max(last);
        self.flying.extend(flight.records.iter().map(|r| r.seq));
        Some((flight, Bytes::from(body)))
    }

    /// Acknowledges a delivered batch's records, or puts them back to be
    /// sent again after a wait: all but the points already settled.
    pub(super) fn settle_flight(&mut self, flight: Flight, delivered: Delivered) {
        let mut settled_points = match delivered.settled {
            Settled::Done => flight.points,
            Settled::Retry { .. } => delivered.settled_points,
        };
        for record in &flight.records {
            self.flying.remove(&record.seq);
            let here = settled_points.min(record.points);
            settled_points -= here;
            if here == record.points {
                self.partly_written.remove(&record.seq);
                self.spool.ack(record.seq);
            } else if here > 0 {
                // Not sent again: each point is counted written once.
                self.partly_written
                    .insert(record.seq, record.skipped + here);
            }
        }
        match delivered.settled {
            Settled::Done => {
                self.backoff.reset();
            }
            Settled::Retry {
                wait,
                missing_database,
            } => {
                if missing_database {
                    self.create_pending = true;
                }
                if delivered.settled_points > 0 {
                    // Points went in: the server is taking writes, not
                    // down; the rest goes after the shortest wait.
                    self.backoff.reset();
                }
                self.cursor = 0;
                self.unsent += flight.points.saturating_sub(delivered.settled_points);
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

/// `payload` without its first `lines` lines.
fn after_lines(payload: &[u8], lines: usize) -> &[u8] {
    if lines == 0 {
        return payload;
    }
    payload
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines - 1)
        .map_or(&[][..], |(i, _)| &payload[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::after_lines;

    #[test]
    fn the_lines_already_written_are_left_out() {
        let record = b"a x=1 1\nb x=2 2\nc x=3 3\n";
        assert_eq!(after_lines(record, 0), &record[..]);
        assert_eq!(after_lines(record, 1), b"b x=2 2\nc x=3 3\n");
        assert_eq!(after_lines(record, 3), b"");
        assert_eq!(after_lines(record, 9), b"");
    }
}
