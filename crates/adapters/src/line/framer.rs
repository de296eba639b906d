//! Bytes → lines: LF or CRLF, at most `max_line_bytes` each.
//!
//! NUL bytes between lines, and a run of them right before or after a
//! line's LF or CRLF, are no part of any line: much firmware writes a C
//! string with its terminator (`Serial.write(buf, strlen(buf) + 1)`), and
//! the NUL then led the next line, whose first field was refused (a good
//! reading lost), or sat alone after the last one until the serial
//! adapter dropped it as a stalled line. A NUL inside a line's content
//! is kept, so the decoder refuses it as before.
//!
//! Pure and incremental (sans I/O): a read may end inside a line, which is
//! kept until its newline arrives. A line longer than the limit is dropped
//! up to its newline and reported once as [`Frame::TooLong`], so a sender
//! without newlines cannot make us buffer without bound.
//!
//! At the clean end of a stream (a TCP client's FIN) [`Framer::finish`]
//! hands over the partial line: the last line a device writes before it
//! closes often has no newline (MicroPython's `s.send(line); s.close()`,
//! `printf … | socat`), and it is a line like any other. An end that is
//! no close (a reset, a serial port unplugged) cuts a line anywhere: the
//! caller [`Framer::reset`]s, forgetting the partial line, so it is never
//! taken and never glued to the first line of the next stream.
//!
//! A serial port has no such end when the board behind a USB bridge
//! resets mid-line: the only sign is the board's boot pause. The serial
//! adapter [`Framer::mark_pause`]s where a reset-sized silence fell inside
//! a partial line, and [`Framer::next_marked`] hands that position over
//! with the line, so a line refused whole can be read again from there.

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
    /// Where in `partial` the port last went quiet ([`Framer::mark_pause`]).
    pause: Option<usize>,
}

impl Framer {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            partial: Vec::new(),
            line: Vec::new(),
            max: max_line_bytes,
            discarding: false,
            pause: None,
        }
    }

    /// The next complete line in `data` (advanced past it), or `None` once
    /// `data` holds no newline (the rest is kept for the next call).
    pub fn next<'x, 's: 'x, 'd: 'x>(&'s mut self, data: &mut &'d [u8]) -> Option<Frame<'x>> {
        self.next_or_last(data, false)
    }

    /// As [`Framer::next`]; where the input `end`s with `data`, the partial
    /// line left after its last newline comes last ([`Framer::finish`]).
    pub fn next_or_last<'x, 's: 'x, 'd: 'x>(
        &'s mut self,
        data: &mut &'d [u8],
        end: bool,
    ) -> Option<Frame<'x>> {
        self.frame(data, end).map(|(frame, _)| frame)
    }

    /// As [`Framer::next`], with the line the position in it (from its
    /// start) of the last [`Framer::mark_pause`] while it was partial.
    pub fn next_marked<'x, 's: 'x, 'd: 'x>(
        &'s mut self,
        data: &mut &'d [u8],
    ) -> Option<(Frame<'x>, Option<usize>)> {
        self.frame(data, false)
    }

    /// Notes that the port was silent, long enough for a board to have
    /// reset, before the bytes about to be fed: the partial line held now
    /// may be a cut line's start. Nothing is noted between lines.
    pub fn mark_pause(&mut self) {
        if !self.partial.is_empty() && !self.discarding {
            self.pause = Some(self.partial.len());
        }
    }

    fn frame<'x, 's: 'x, 'd: 'x>(
        &'s mut self,
        data: &mut &'d [u8],
        end: bool,
    ) -> Option<(Frame<'x>, Option<usize>)> {
        if self.partial.is_empty() && !self.discarding {
            // Between lines: a C string's terminator after the last line,
            // never kept, so it neither leads the next line nor holds a
            // partial line open (the serial stall timer, `has_partial`).
            let nuls = data.iter().take_while(|&&b| b == 0).count();
            *data = &data[nuls..];
        }
        // memchr: a byte-by-byte search was a twentieth of an
        // acknowledged CSV line's instructions.
        let Some(nl) = memchr::memchr(b'\n', data) else {
            self.keep(data);
            *data = &[];
            return if end {
                self.finish().map(|frame| (frame, None))
            } else {
                None
            };
        };
        let whole: &'d [u8] = data;
        let (head, rest) = whole.split_at(nl);
        *data = rest.get(1..).unwrap_or_default();
        // The mark belongs to this line, whatever becomes of it.
        let pause = self.pause.take();
        if self.discarding {
            self.discarding = false;
            return Some((Frame::TooLong, None));
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
        let line = without_ending(line);
        if line.len() > self.max {
            return Some((Frame::TooLong, None));
        }
        // Only the end is trimmed: the mark still counts from the start.
        Some((Frame::Line(line), pause))
    }

    /// The partial line at the end of the input, as if its newline had
    /// come: `None` when nothing but white space is held. The framer is
    /// empty afterwards.
    pub fn finish(&mut self) -> Option<Frame<'_>> {
        self.pause = None;
        if std::mem::take(&mut self.discarding) {
            self.partial.clear();
            return Some(Frame::TooLong);
        }
        if self
            .partial
            .iter()
            .all(|b| b.is_ascii_whitespace() || *b == 0)
        {
            self.partial.clear();
            return None;
        }
        std::mem::swap(&mut self.partial, &mut self.line);
        self.partial.clear();
        let line = without_ending(&self.line);
        if line.len() > self.max {
            return Some(Frame::TooLong);
        }
        Some(Frame::Line(line))
    }

    /// Forgets a partial line.
    pub fn reset(&mut self) {
        self.partial.clear();
        self.discarding = false;
        self.pause = None;
    }

    /// Whether bytes of an unfinished line are held.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || self.discarding
    }

    fn keep(&mut self, data: &[u8]) {
        if self.discarding {
            return;
        }
        // +2: room for the CR of a CRLF and a C string's NUL that end a
        // line of exactly `max`.
        if self.partial.len() + data.len() > self.max + 2 {
            self.partial.clear();
            self.pause = None;
            self.discarding = true;
            return;
        }
        self.partial.extend_from_slice(data);
    }
}

/// A line without its CR and the NULs around it (`…\0\r`, `…\r\0`).
fn without_ending(line: &[u8]) -> &[u8] {
    let line = trim_nuls(line);
    trim_nuls(line.strip_suffix(b"\r").unwrap_or(line))
}

fn trim_nuls(line: &[u8]) -> &[u8] {
    let kept = line.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &line[..kept]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A line, or `Err` for one over the limit.
    type Framed = Result<String, ()>;

    fn framed(frame: Frame<'_>) -> Framed {
        match frame {
            Frame::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
            Frame::TooLong => Err(()),
        }
    }

    /// The framer after `chunks`, fed in that order, and every frame.
    fn feed(max: usize, chunks: &[&[u8]]) -> (Framer, Vec<Framed>) {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut data = *chunk;
            while let Some(frame) = f.next(&mut data) {
                out.push(framed(frame));
            }
        }
        (f, out)
    }

    /// Every frame of `chunks`.
    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Framed> {
        feed(max, chunks).1
    }

    fn line(s: &str) -> Framed {
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

    /// Every frame of `chunks`, then what `finish` hands over.
    fn frames_to_end(max: usize, chunks: &[&[u8]]) -> (Vec<Framed>, Option<Framed>) {
        let (mut f, out) = feed(max, chunks);
        let last = f.finish().map(framed);
        assert!(!f.has_partial(), "finish leaves nothing behind");
        (out, last)
    }

    #[test]
    fn the_partial_line_at_the_end_of_input_is_a_line() {
        // MicroPython's `s.send(line); s.close()`: no newline at all.
        assert_eq!(
            frames_to_end(64, &[b"21.4,1013,45,12000"]),
            (vec![], Some(line("21.4,1013,45,12000")))
        );
        // Several lines, the last without its newline, split across reads.
        assert_eq!(
            frames_to_end(64, &[b"a,1\nb,", b"2\r\nc,3"]),
            (vec![line("a,1"), line("b,2")], Some(line("c,3")))
        );
        assert_eq!(
            frames_to_end(64, &[b"c,3\r"]).1,
            Some(line("c,3")),
            "a lone CR"
        );
        assert_eq!(
            frames_to_end(64, &[b"a,1\n"]).1,
            None,
            "nothing after the newline"
        );
        assert_eq!(
            frames_to_end(64, &[b"a,1\n \r"]).1,
            None,
            "only white space"
        );
        // Too long without a newline: reported, never silent.
        assert_eq!(frames_to_end(8, &[b"123456789"]).1, Some(Err(())));
        assert_eq!(
            frames_to_end(8, &[b"1234", b"56789012345"]).1,
            Some(Err(()))
        );
        assert_eq!(frames_to_end(8, &[b"12345678\r"]).1, Some(line("12345678")));
    }

    /// `Serial.write(buf, strlen(buf) + 1)`: each line comes with its C
    /// string's NUL, after its newline or right before it.
    #[test]
    fn nuls_between_lines_and_around_a_line_ending_are_no_part_of_a_line() {
        assert_eq!(
            frames(64, &[b"a,1\n\0b,2\n\0", b"\0c,3\r\n\0", b"d,4\0\n", b"e,5\0\r\n", b"f,6\r\0\n"]),
            [line("a,1"), line("b,2"), line("c,3"), line("d,4"), line("e,5"), line("f,6")]
        );
        assert_eq!(
            frames(64, &[b"\0\0", b"\0", b"a,1\n"]),
            [line("a,1")],
            "NULs alone in a read, before the first line"
        );
        assert_eq!(
            frames(64, &[b"a\0,1\n", b"a,1\n\0\0x\0y\n"]),
            [line("a\0,1"), line("a,1"), line("x\0y")],
            "inside a line a NUL stays, for the decoder to refuse"
        );
        assert_eq!(
            frames(8, &[b"12345678\0\r\n", b"\x00123456789\0\n"]),
            [line("12345678"), Err(())],
            "the limit counts the content only"
        );
        assert_eq!(
            frames(8, &[b"1234", b"5678\0\r", b"\n"]),
            [line("12345678")],
            "across reads"
        );
    }

    #[test]
    fn a_nul_after_the_last_line_leaves_no_partial_line() {
        // The serial adapter drops a partial line that stalls, counted
        // `incomplete_line`: the NUL after the last line must not be one.
        let (f, out) = feed(64, &[b"a,1\n\0"]);
        assert_eq!(out, [line("a,1")]);
        assert!(!f.has_partial());
        assert_eq!(frames_to_end(64, &[b"a,1\r\n\0\0"]), (vec![line("a,1")], None));
        assert_eq!(
            frames_to_end(64, &[b"a,1\n", b"b,2\0"]),
            (vec![line("a,1")], Some(line("b,2"))),
            "the last line of a TCP client that closes, with its NUL"
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

    /// The serial adapter marks where the port went quiet inside a line:
    /// the line carries the last such position, counted from its start,
    /// and the lines after it none.
    #[test]
    fn a_pause_inside_a_line_is_handed_over_with_it() {
        let mut f = Framer::new(64);
        let marked = |f: &mut Framer, chunk: &[u8]| {
            let mut data = chunk;
            let mut out = Vec::new();
            while let Some((frame, pause)) = f.next_marked(&mut data) {
                out.push((framed(frame), pause));
            }
            out
        };
        f.mark_pause();
        assert_eq!(marked(&mut f, b"1,"), [], "no mark between lines");
        assert_eq!(marked(&mut f, b"21.5,4"), []);
        f.mark_pause();
        assert_eq!(marked(&mut f, b"22.0,"), []);
        f.mark_pause();
        assert_eq!(
            marked(&mut f, b"45.1\r\n3,4\n"),
            [(line("1,21.5,422.0,45.1"), Some(13)), (line("3,4"), None)],
            "the last pause; none for the next line"
        );
        f.mark_pause();
        f.reset();
        assert_eq!(marked(&mut f, b"5,6\n"), [(line("5,6"), None)], "reset forgets it");
        let mut g = Framer::new(8);
        assert_eq!(marked(&mut g, b"12345"), []);
        g.mark_pause();
        assert_eq!(
            marked(&mut g, b"67890\n1,2\n"),
            [(Err(()), None), (line("1,2"), None)],
            "too long: the mark goes with it"
        );
    }
}
