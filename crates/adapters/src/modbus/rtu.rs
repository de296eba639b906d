//! One RS-485 line, as a Modbus RTU master: one request at a time, its
//! answer framed by length and CRC ([`super::frame`]) and checked against
//! it, and never another request's answer taken for it.
//!
//! - **Silence between frames**: 3.5 characters before every request
//!   (tokio-modbus leaves it to its user, #180).
//! - **Stray bytes** found before a request, or after an answer within
//!   the time its device takes to answer, mean the line is out of step
//!   (a late answer, a second copy of one): the answer is not trusted,
//!   the line is drained to silence and the unit that sent them is out of
//!   step ([`super::step`]).
//! - **Timeout**: for the device to start answering; its answer then
//!   has the time its bytes take on the wire.
//! - **Draining to silence**: after a timeout, a garbled, stray or
//!   foreign answer, the line is emptied and listened to for a guard time
//!   as long as the timeout, again while anything still comes.
//! - **Out of step**: until a unit answers a request whose answer no late
//!   one can look like, its answers are refused ([`Answer::OutOfStep`]).
//! - **Echo** (`echo = true`): an adapter that hears its own transmission
//!   sends every request's bytes back before the answer; they are read
//!   and dropped, and anything else in their place (none, fewer, others)
//!   is [`Answer::BadEcho`], the line drained as after a garbled answer.
//!   With `echo` off, an answer awaited that starts with the request's
//!   own bytes, whole, and is not an answer is [`Answer::Echo`] (the
//!   adapter echoes) rather than a bare CRC error: bytes that may still
//!   become our request are waited for (until the timeout) before a
//!   garbled answer is declared, never a valid frame. Not for functions
//!   5 and 6, whose answer is the request's very bytes: there the echo is
//!   taken for the answer, and the device's own answer behind it makes
//!   the unit out of step, as a doubled answer would (no master can tell
//!   the two apart); the line's reads then say `echo`.
//!
//! What no master can tell apart: a stale answer of the same shape, from
//! a unit in step, that arrives after the request was sent while the
//! device's own answer comes later than a quarter past its slowest recent
//! turnaround, or never. Every other late or doubled answer is caught.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, sleep_until, timeout_at, Instant};
use tokio_serial::{ClearBuffer, SerialPort, SerialStream};

use super::frame::{check, parse, rtu_frame, Checked, Parsed, Request, Shape};
use super::poller::Answer;
use super::step::{confirms, probe, Suspects};

/// Draining stops after this many guard times with bytes still coming (a
/// babbling line): the next request then finds them and drains again.
const DRAIN_ROUNDS: u32 = 4;
/// Probes one request may send before its unit is reported out of step.
const PROBES: usize = 2;
/// The first guess of how long a device takes to start answering, before
/// one has.
const FIRST_TURNAROUND: Duration = Duration::from_millis(10);
/// The least time listened to after an answer for bytes behind it.
const MIN_TURNAROUND: Duration = Duration::from_millis(2);

/// The bytes of `request`'s answer (an exception's are fewer).
fn answer_len(request: &Request) -> u32 {
    match request.shape() {
        Shape::Data { bytes, .. } => 5 + u32::from(bytes),
        Shape::Echo { .. } => 8,
    }
}

/// How one exchange failed.
#[derive(Debug, Clone, PartialEq)]
enum Fault {
    Timeout,
    Crc,
    OutOfStep,
    BadEcho,
    Echo,
    Connection(String),
}

impl From<Fault> for Answer {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Timeout => Answer::Timeout,
            Fault::Crc => Answer::Crc,
            Fault::OutOfStep => Answer::OutOfStep,
            Fault::BadEcho => Answer::BadEcho,
            Fault::Echo => Answer::Echo,
            Fault::Connection(e) => Answer::Connection(e),
        }
    }
}

fn answer_of(checked: Checked) -> Answer {
    match checked {
        Checked::Words(w) => Answer::Words(w),
        Checked::Bits(b) => Answer::Bits(b),
        Checked::Written => Answer::Words(Vec::new()),
        Checked::Exception(code) => Answer::Exception(code),
        Checked::NotOurs => Answer::OutOfStep,
    }
}

/// An open RTU line.
pub struct RtuLine {
    port: SerialStream,
    /// The silence kept between frames.
    gap: Duration,
    /// One character on the wire.
    char_time: Duration,
    timeout: Duration,
    /// When the next frame may start.
    quiet_until: Instant,
    /// Units out of step, with the shapes of answers that may still come.
    lost: HashMap<u8, Suspects>,
    /// Units whose stray answers were dropped since [`Self::take_strays`].
    strays: Vec<u8>,
    /// The unit and answer shape of the last exchange: stray bytes found
    /// before the next request are its.
    last: Option<(u8, Shape)>,
    /// How long each unit lately took to start answering: a slow heat
    /// pump controller must not slow the meters beside it.
    turnaround: HashMap<u8, Duration>,
    /// Every request's bytes come back before its answer.
    echo: bool,
    buf: Vec<u8>,
}

impl RtuLine {
    pub fn new(port: SerialStream, gap: Duration, answer_timeout: Duration, echo: bool) -> Self {
        // Whatever a device sent before we opened is not an answer.
        let _ = port.clear(ClearBuffer::Input);
        Self {
            port,
            gap,
            char_time: gap * 2 / 7,
            timeout: answer_timeout,
            quiet_until: Instant::now(),
            lost: HashMap::new(),
            strays: Vec::new(),
            last: None,
            turnaround: HashMap::new(),
            echo,
            buf: Vec::with_capacity(256),
        }
    }

    /// Units whose stray answers (late, or a second copy) were dropped
    /// since the last call, for the caller to count.
    pub fn take_strays(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.strays)
    }

    /// Sends `request` to `unit` and returns its answer, or why there is
    /// none. A unit out of step is probed first (see [`super::step`]).
    pub async fn call(&mut self, unit: u8, request: &Request) -> Answer {
        let mut probes = 0;
        loop {
            let Some(suspects) = self.lost.get(&unit) else {
                return match self.exchange(unit, request).await {
                    Ok(checked) => answer_of(checked),
                    Err(f) => f.into(),
                };
            };
            if probes == PROBES {
                return Answer::OutOfStep;
            }
            probes += 1;
            let Some(sent) = probe(request, suspects) else {
                if let Some(suspects) = self.lost.get_mut(&unit) {
                    suspects.age();
                }
                return Answer::OutOfStep;
            };
            let suspects = suspects.clone();
            match self.exchange(unit, &sent).await {
                Ok(checked) if confirms(&suspects, &sent, &checked) => {
                    self.lost.remove(&unit);
                    if sent == *request {
                        return answer_of(checked);
                    }
                }
                // An exception that may be a stale one: its own answer
                // may still come.
                Ok(_) => {
                    self.suspect(unit, sent.shape());
                    self.drain().await;
                }
                Err(f) => return f.into(),
            }
        }
    }

    fn suspect(&mut self, unit: u8, shape: Shape) {
        self.lost.entry(unit).or_default().add(shape);
    }

    /// One request and its answer; on any fault the unit is out of step
    /// (the answer may still come) and the line drained.
    async fn exchange(&mut self, unit: u8, request: &Request) -> Result<Checked, Fault> {
        sleep_until(self.quiet_until).await;
        if self.pending() > 0 {
            if let Some((u, shape)) = self.last {
                self.suspect(u, shape);
                self.strays.push(u);
            }
            self.drain().await;
        }
        let result = self.transact(unit, request).await;
        match &result {
            Ok(_) => {
                self.last = Some((unit, request.shape()));
                // The line was listened to for at least the inter-frame
                // silence after the answer.
                self.quiet_until = Instant::now();
            }
            Err(Fault::Connection(_)) => {}
            Err(_) => {
                self.suspect(unit, request.shape());
                self.last = None;
                self.drain().await;
            }
        }
        result
    }

    async fn transact(&mut self, unit: u8, request: &Request) -> Result<Checked, Fault> {
        let frame = rtu_frame(unit, request);
        self.port
            .write_all(&frame)
            .await
            .map_err(|e| Fault::Connection(format!("cannot write to the serial port: {e}")))?;
        // The kernel takes the frame at once; the wire takes its time.
        let on_wire = Instant::now() + self.char_time * u32::try_from(frame.len()).unwrap_or(256);
        let mut deadline = on_wire + self.timeout;
        self.buf.clear();
        if self.echo {
            // The echo comes as the request goes on the wire; the device
            // cannot answer before it has heard it all.
            self.take_echo(&frame, deadline).await?;
        }
        let mut first_byte = None;
        let (len, reply) = loop {
            // Answer bytes may have come with the echo's last ones.
            if first_byte.is_none() && !self.buf.is_empty() {
                let at = Instant::now();
                first_byte = Some(at);
                // The timeout is for the device to start answering; its
                // answer then takes its own time on the wire (125
                // registers: over a second at 2400 baud).
                deadline = deadline.max(at + self.char_time * answer_len(request) + self.gap);
            }
            match parse(&self.buf) {
                Parsed::Frame { len, reply } => break (len, reply),
                // Maybe our own request coming back: wait for the rest of
                // it to say so (never delays a valid frame).
                Parsed::BadCrc { .. } | Parsed::Garbage if self.may_become(&frame) => {}
                Parsed::BadCrc { .. } => return Err(self.unless_echo(&frame, request, Fault::Crc)),
                Parsed::Garbage => return Err(self.unless_echo(&frame, request, Fault::OutOfStep)),
                Parsed::Incomplete => {}
            }
            let mut chunk = [0u8; 256];
            match timeout_at(deadline, self.port.read(&mut chunk)).await {
                Err(_) if self.buf.is_empty() => return Err(Fault::Timeout),
                // Bytes, but no frame: garbled.
                Err(_) => return Err(self.unless_echo(&frame, request, Fault::Crc)),
                Ok(Ok(0)) => return Err(Fault::Connection("the serial port closed".into())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    return Err(Fault::Connection(format!(
                        "cannot read the serial port: {e}"
                    )))
                }
            }
        };
        // Anything after the answer, now or until the device's own answer
        // would have started (its slowest lately, and a quarter more),
        // means this frame may be a late one and its request's own answer
        // is behind it. An answer in time has mostly used that wait up.
        if self.buf.len() > len {
            return Err(self.unless_echo(&frame, request, Fault::OutOfStep));
        }
        let listen_until =
            (on_wire + self.turnaround_of(unit) * 5 / 4 + self.gap).max(Instant::now() + self.gap);
        sleep_until(listen_until).await;
        if self.pending() > 0 {
            return Err(Fault::OutOfStep);
        }
        let checked = check(&reply, unit, request);
        if checked == Checked::NotOurs {
            return Err(Fault::OutOfStep);
        }
        if let Some(at) = first_byte {
            let took = at.saturating_duration_since(on_wire);
            // Slowly forgets a slow answer, at once learns a slower one.
            let learnt = took
                .max(self.turnaround_of(unit) * 31 / 32)
                .max(MIN_TURNAROUND);
            self.turnaround.insert(unit, learnt);
        }
        Ok(checked)
    }

    /// `echo = true`: reads the request's own bytes back (into `buf`,
    /// bounded by `deadline`) and drops them; what came after them stays
    /// in `buf`, the answer's start.
    async fn take_echo(&mut self, frame: &[u8], deadline: Instant) -> Result<(), Fault> {
        while self.buf.len() < frame.len() {
            if !frame.starts_with(&self.buf) {
                return Err(Fault::BadEcho);
            }
            let mut chunk = [0u8; 256];
            match timeout_at(deadline, self.port.read(&mut chunk)).await {
                // None, or not all of it: the adapter does not echo (or
                // no longer drives the line).
                Err(_) => return Err(Fault::BadEcho),
                Ok(Ok(0)) => return Err(Fault::Connection("the serial port closed".into())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    return Err(Fault::Connection(format!(
                        "cannot read the serial port: {e}"
                    )))
                }
            }
        }
        if !self.buf.starts_with(frame) {
            return Err(Fault::BadEcho);
        }
        self.buf.drain(..frame.len());
        Ok(())
    }

    /// `echo` off: whether the bytes received so far are the start of
    /// `frame`, our own request, not all of it yet.
    fn may_become(&self, frame: &[u8]) -> bool {
        !self.echo && self.buf.len() < frame.len() && frame.starts_with(&self.buf)
    }

    /// `fault`, or [`Fault::Echo`] when `echo` is off and the bytes
    /// received start with `frame`, our own request, whole: the adapter
    /// echoes. Only ever relabels a fault. Not for functions 5 and 6,
    /// whose answer is the very bytes of their request (a doubled answer
    /// there looks the same as an echo and its answer).
    fn unless_echo(&self, frame: &[u8], request: &Request, fault: Fault) -> Fault {
        let answer_is_request = matches!(
            request,
            Request::WriteCoil { .. } | Request::WriteRegister { .. }
        );
        if !self.echo && !answer_is_request && self.buf.starts_with(frame) {
            Fault::Echo
        } else {
            fault
        }
    }

    fn turnaround_of(&self, unit: u8) -> Duration {
        self.turnaround
            .get(&unit)
            .copied()
            .unwrap_or(FIRST_TURNAROUND)
    }

    /// Bytes waiting in the port's input buffer.
    pub(super) fn pending(&self) -> u32 {
        self.port.bytes_to_read().unwrap_or(0)
    }

    /// Empties the line and waits until it stays silent for a guard time
    /// as long as the timeout (a device may still answer a request that
    /// timed out).
    async fn drain(&mut self) {
        for _ in 0..DRAIN_ROUNDS {
            let _ = self.port.clear(ClearBuffer::Input);
            sleep(self.timeout).await;
            if self.pending() == 0 {
                break;
            }
        }
        let _ = self.port.clear(ClearBuffer::Input);
        self.quiet_until = Instant::now() + self.gap;
    }
}
