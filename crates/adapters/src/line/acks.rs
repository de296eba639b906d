//! The acknowledgement contract of `ack = true`, without I/O.
//!
//! Every newline-terminated line of a connection has a number (1, 2, …;
//! empty lines count). `ok N` means every line up to N is durable or was
//! refused; `err N reason` says line N was refused, and is written before
//! the `ok` that covers it. `ok` is cumulative, so one answer covers all
//! the lines that became durable together (one journal sync).

use std::io::Write;

/// Line numbers of one connection and the last `ok` written.
#[derive(Debug, Default)]
pub struct AckState {
    last: u64,
    reported: u64,
}

impl AckState {
    /// Numbers the next line.
    pub fn next_line(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// The `ok N` to write now, if N moved: every line before
    /// `first_waiting` (the oldest line not yet durable), or every line
    /// numbered so far when none waits.
    pub fn advance(&mut self, first_waiting: Option<u64>) -> Option<u64> {
        let upto = first_waiting.map_or(self.last, |n| n.saturating_sub(1));
        (upto > self.reported).then(|| {
            self.reported = upto;
            upto
        })
    }
}

/// Appends `ok N\n`.
pub fn write_ok(out: &mut Vec<u8>, n: u64) {
    // Writing to a Vec cannot fail.
    let _ = writeln!(out, "ok {n}");
}

/// Appends `err N reason\n`; `reason` is a snake_case error type.
pub fn write_err(out: &mut Vec<u8>, n: u64, reason: &str) {
    let _ = writeln!(out, "err {n} {reason}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_covers_every_line_before_the_first_still_waiting() {
        let mut a = AckState::default();
        let (l1, l2, l3) = (a.next_line(), a.next_line(), a.next_line());
        assert_eq!((l1, l2, l3), (1, 2, 3));
        assert_eq!(a.advance(Some(1)), None, "line 1 waits");
        assert_eq!(a.advance(Some(3)), Some(2));
        assert_eq!(a.advance(Some(3)), None, "said once");
        assert_eq!(a.advance(None), Some(3));
        a.next_line();
        assert_eq!(a.advance(None), Some(4), "a refused or empty line");
    }

    #[test]
    fn answers_on_the_wire() {
        let mut out = Vec::new();
        write_err(&mut out, 2, "csv_column_count");
        write_ok(&mut out, 3);
        assert_eq!(out, b"err 2 csv_column_count\nok 3\n");
    }
}
