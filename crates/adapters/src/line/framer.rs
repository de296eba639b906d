//! Bytes → lines: LF or CRLF, at most `max_line_bytes` each.
//!
//! Pure and incremental (sans I/O): a read may end inside a line, which is
//! kept until its newline arrives. A line longer than the limit is dropped
//! up to its newline and reported once as [`Frame::TooLong`], so a sender
//! without newlines cannot make us buffer without bound. [`Framer::reset`]
//! forgets a partial line (a dropped connection, a serial port that reset),
//! so it is never glued to the first line of the next stream.

/// What the next newline closed.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A line without its LF or CRLF.
    Line(&'a [u8]),
    /// A line over the limit, dropped.
    TooLong,
}

/// Splits a byte stream into lines.
#[derive(Debug)]
pub struct Framer {
    partial: Vec<u8>,
    /// The last line completed from `partial` (its buffer is reused).
    line: Vec<u8>,
    max: usize,
    /// Inside a line already over the limit: skip to its newline.
    discarding: bool,
}

impl Framer {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            partial: Vec::new(),
            line: Vec::new(),
            max: max_line_bytes,
            discarding: false,
        }
    }

    /// The next complete line in `data` (advanced past it), or `None` once
    /// `data` holds no newline (the rest is kept for the next call).
    pub fn next<'x, 's: 'x, 'd: 'x>(&'s mut self, data: &mut &'d [u8]) -> Option<Frame<'x>> {
        let Some(nl) = data.iter().position(|&b| b == b'\n') else {
            self.keep(data);
            *data = &[];
            return None;
        };
        let whole: &'d [u8] = data;
        let (head, rest) = whole.split_at(nl);
        *data = rest.get(1..).unwrap_or_default();
        if self.discarding {
            self.discarding = false;
            return Some(Frame::TooLong);
        }
        let line: &[u8] = if self.partial.is_empty() {
            // The common case: the whole line in one read, no copy.
            head
        } else {
            self.partial.extend_from_slice(head);
            std::mem::swap(&mut self.partial, &mut self.line);
            self.partial.clear();
            &self.line
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max {
            return Some(Frame::TooLong);
        }
        Some(Frame::Line(line))
    }

    /// Forgets a partial line.
    pub fn reset(&mut self) {
        self.partial.clear();
        self.discarding = false;
    }

    /// Whether bytes of an unfinished line are held.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || self.discarding
    }

    fn keep(&mut self, data: &[u8]) {
        if self.discarding {
            return;
        }
        // +1: room for the CR of a CRLF that ends a line of exactly `max`.
        if self.partial.len() + data.len() > self.max + 1 {
            self.partial.clear();
            self.discarding = true;
            return;
        }
        self.partial.extend_from_slice(data);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every frame of `chunks`, fed in that order.
    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Result<String, ()>> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut data = *chunk;
            while let Some(frame) = f.next(&mut data) {
                out.push(match frame {
                    Frame::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                    Frame::TooLong => Err(()),
                });
            }
        }
        out
    }

    fn line(s: &str) -> Result<String, ()> {
        Ok(s.to_string())
    }

    #[test]
    fn lf_crlf_empty_lines_and_lines_split_across_reads() {
        assert_eq!(
            frames(64, &[b"a,1\r\nb,2\n\n\r\nc,", b"3", b"\r", b"\nd"]),
            [line("a,1"), line("b,2"), line(""), line(""), line("c,3")],
            "d has no newline yet"
        );
    }

    #[test]
    fn a_line_over_the_limit_is_dropped_to_its_newline_once() {
        let long = [b'x'; 10];
        assert_eq!(
            frames(8, &[b"ok\n", &long, &long, b"tail\nnext\n"]),
            [line("ok"), Err(()), line("next")]
        );
        assert_eq!(
            frames(8, &[b"123456789\n12345678\r\n"]),
            [Err(()), line("12345678")],
            "in one read; CRLF does not count"
        );
        assert_eq!(
            frames(8, &[b"1234", b"56789\n", b"12345678", b"\r\n"]),
            [Err(()), line("12345678")],
            "across reads"
        );
    }

    #[test]
    fn reset_discards_a_partial_line() {
        let mut f = Framer::new(64);
        let mut data: &[u8] = b"21.5,10";
        assert_eq!(f.next(&mut data), None);
        assert!(f.has_partial());
        f.reset();
        let mut data: &[u8] = b"22.0,11\n";
        assert_eq!(f.next(&mut data), Some(Frame::Line(b"22.0,11")));
    }
}
