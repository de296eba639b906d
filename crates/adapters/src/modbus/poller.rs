//! When each device on a bus is read, and what each answer means: the
//! bus's logic without its socket or port (time is passed in).
//!
//! - Each device keeps its own period on a fixed grid (a slow answer does
//!   not push its next poll later), devices of one bus start spread over
//!   the first period so they do not all queue at once.
//! - A device that fails (timeout, CRC, out of step, exception 10 or 11:
//!   a Modbus gateway's path or target gone) is retried with one cheap request (its smallest read, not the
//!   whole map), and read whole as soon as that is answered. One that
//!   answered before is retried at its period (the backoff only shortens
//!   the first retries), so it is read again within a period of coming
//!   back, at the cost of one request per period while it is away; one
//!   that never answered (a wrong unit id) backs off up to `max_backoff`.
//!   It is reported offline after [`OFFLINE_AFTER`] failed polls in a
//!   row, and online at its first answer.
//! - Exceptions 1, 2 and 3 (illegal function, address, value) are the
//!   map's fault, not the device's: a merged read is split and retried at
//!   once, a register refused alone is disabled, and the device's other
//!   registers go on. A disabled register is asked again after
//!   [`REPROBE_FIRST`], then less and less often (up to [`REPROBE_MAX`]):
//!   a firmware update or a fixed map brings it back without a restart.
//! - Exceptions 4, 5 and 6 (device failure, acknowledge, busy) are an
//!   answer: that read gives nothing this poll and the rest of the poll
//!   goes on; a merged read refused with 4 is split, as one register's
//!   failure (a channel not fitted) must not cost the others theirs.
//! - A poll with at least one answer is an answered poll, even if a later
//!   read of it failed: the device is there (the fault is still counted
//!   and logged).

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::DeviceState;
use tokio::time::Instant;

use super::plan::{Plan, Read};
use super::registers::Register;

/// Failed polls in a row before a device is reported offline: one lost
/// answer on a noisy line is not an outage.
pub const OFFLINE_AFTER: u32 = 2;
/// When a register the device refused is first asked again.
pub const REPROBE_FIRST: Duration = Duration::from_secs(300);
/// The longest wait between two asks of a refused register.
pub const REPROBE_MAX: Duration = Duration::from_secs(3600);

/// What one read request got.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Words(Vec<u16>),
    Bits(Vec<bool>),
    /// An exception response, by its code.
    Exception(u8),
    /// Nothing within the timeout.
    Timeout,
    /// Bytes came, but no frame with a valid CRC (RTU).
    Crc,
    /// TCP: an answer that is not to this request (with its transaction
    /// id but another unit, function or count; an id never sent; bytes
    /// that cannot be framed). A late or doubled answer, with the id of a
    /// request already settled, is dropped, not this.
    Mismatch,
    /// RTU, `echo = true`: the request's own bytes did not come back as
    /// sent before the answer (none, fewer, or others).
    BadEcho,
    /// RTU, `echo` off: the request's own bytes came back where its answer
    /// was awaited (an adapter that echoes).
    Echo,
    /// RTU: the device answered out of step (a late or doubled answer,
    /// or it has not yet answered a request no late answer can look
    /// like): nothing it sent is trusted.
    OutOfStep,
    /// The connection or port failed.
    Connection(String),
}

/// What went wrong, as counted (`error_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Timeout,
    Crc,
    Mismatch,
    OutOfStep,
    BadEcho,
    Echo,
    Exception(u8),
    Connection,
}

impl Fault {
    /// The `error_type` label of `edge_gateway_adapter_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Crc => "crc",
            Self::Mismatch => "protocol",
            Self::OutOfStep => "out_of_step",
            Self::BadEcho => "bad_echo",
            Self::Echo => "echo",
            Self::Exception(_) => "exception",
            Self::Connection => "connection",
        }
    }
}

/// What to do after an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Readings: (register index, value); the registers whose value is
    /// not a finite number (an f32 NaN a meter sends for "no value") are
    /// left out and listed in `not_finite`; string registers' text in
    /// `texts`.
    Values {
        values: Vec<(usize, f64)>,
        not_finite: Vec<usize>,
        texts: Vec<(usize, String)>,
    },
    /// A merged read was refused: make these reads now instead.
    Split { code: u8, reads: Vec<Read> },
    /// A register was refused alone: disabled, asked again after `retry`.
    Disabled {
        member: usize,
        code: u8,
        retry: Duration,
    },
    /// A disabled register asked again was answered: read again from now
    /// on, with these values.
    Restored {
        member: usize,
        values: Vec<(usize, f64)>,
    },
    /// The device answered that it could not do this read now
    /// (exception 4, 5 or 6): no values from it this poll, the rest of the
    /// poll goes on.
    Skipped { code: u8 },
    /// The device failed this poll; the others go on.
    DeviceFault(Fault),
    /// The link failed (or cannot be trusted): reconnect.
    LinkFault(Fault),
}

/// One device of a bus and its schedule.
#[derive(Debug)]
pub struct Unit {
    pub unit: u8,
    pub registers: Vec<Register>,
    pub plan: Plan,
    period: Duration,
    /// Its next poll on its grid.
    slot: Instant,
    /// Set while it is failing: when to try again.
    retry_at: Option<Instant>,
    backoff: Backoff,
    failures: u32,
    state: Option<DeviceState>,
    /// It answered at least once since the start.
    answered_once: bool,
    /// Disabled registers: when each is asked again, and the wait after.
    reprobes: BTreeMap<usize, (Instant, Duration)>,
}

impl Unit {
    pub fn new(
        unit: u8,
        registers: Vec<Register>,
        max_gap: u16,
        period: Duration,
        first: Instant,
        backoff: Backoff,
    ) -> Self {
        let plan = Plan::new(&registers, max_gap);
        Self {
            unit,
            registers,
            plan,
            period,
            slot: first,
            retry_at: None,
            backoff,
            failures: 0,
            state: None,
            answered_once: false,
            reprobes: BTreeMap::new(),
        }
    }

    /// Its poll period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Whether its last poll failed.
    pub fn is_failing(&self) -> bool {
        self.failures > 0
    }

    /// Whether it answered at least once since the start.
    pub fn answered_once(&self) -> bool {
        self.answered_once
    }

    /// The reads of its next poll: the whole plan, or, while it fails,
    /// only its smallest read (the rest follow once that is answered).
    pub fn reads_for_poll(&self) -> Vec<Read> {
        if self.failures == 0 {
            return self.plan.reads().to_vec();
        }
        self.plan
            .reads()
            .iter()
            .min_by_key(|r| (r.count, r.start))
            .cloned()
            .into_iter()
            .collect()
    }

    /// The reads after `first` of a poll that began with one cheap read.
    pub fn rest_of_poll(&self, first: &Read) -> Vec<Read> {
        self.plan
            .reads()
            .iter()
            .filter(|r| *r != first)
            .cloned()
            .collect()
    }

    /// Disabled registers due to be asked again at `now`, each alone.
    pub fn reprobes_due(&self, now: Instant) -> Vec<Read> {
        self.reprobes
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(&m, _)| {
                let r = &self.registers[m];
                Read {
                    table: r.table,
                    start: r.address,
                    count: r.span(),
                    members: vec![m],
                }
            })
            .collect()
    }

    /// Whether `read` asks a disabled register again.
    pub fn is_reprobe(&self, read: &Read) -> bool {
        matches!(read.members.as_slice(), [m] if self.plan.disabled().contains(m))
    }

    /// When it is to be read next.
    pub fn due(&self) -> Instant {
        self.retry_at.unwrap_or(self.slot)
    }

    /// Judges `answer` to `read`, received at `now`.
    pub fn judge(&mut self, read: &Read, answer: Answer, now: Instant) -> Verdict {
        let reprobe = self.is_reprobe(read);
        match answer {
            Answer::Words(words) if words.len() == usize::from(read.count) => {
                let mut values = Vec::new();
                let mut not_finite = Vec::new();
                let mut texts = Vec::new();
                for &m in &read.members {
                    let r = &self.registers[m];
                    let Some(at) = r.address.checked_sub(read.start) else {
                        continue;
                    };
                    let Some(mine) = words.get(usize::from(at)..) else {
                        continue;
                    };
                    if r.is_text() {
                        if let Some(text) = r.text_of_words(mine) {
                            texts.push((m, text));
                        }
                        continue;
                    }
                    match r.value_of_words(mine) {
                        Some(v) => values.push((m, v)),
                        None => not_finite.push(m),
                    }
                }
                self.values(read, reprobe, values, not_finite, texts)
            }
            Answer::Bits(bits) if bits.len() == usize::from(read.count) => {
                let values = read
                    .members
                    .iter()
                    .filter_map(|&m| {
                        let r = &self.registers[m];
                        let bit = *bits.get(usize::from(r.address.checked_sub(read.start)?))?;
                        Some((m, r.value_of_bit(bit)))
                    })
                    .collect();
                self.values(read, reprobe, values, Vec::new(), Vec::new())
            }
            Answer::Words(_) | Answer::Bits(_) | Answer::Mismatch => {
                Verdict::LinkFault(Fault::Mismatch)
            }
            Answer::Exception(code @ 1..=3) => {
                if read.is_merged() {
                    let reads = self.plan.isolate(&self.registers, &read.members);
                    Verdict::Split { code, reads }
                } else {
                    let member = read.members[0];
                    self.plan.disable(&self.registers, member);
                    let retry = self
                        .reprobes
                        .get(&member)
                        .map_or(REPROBE_FIRST, |(_, wait)| (*wait * 2).min(REPROBE_MAX));
                    self.reprobes.insert(member, (now + retry, retry));
                    Verdict::Disabled {
                        member,
                        code,
                        retry,
                    }
                }
            }
            // A device failure (4) inside a merged read may be one
            // register's (a sensor channel not fitted): split, so the
            // others are read whatever that one does.
            Answer::Exception(code @ 4) if read.is_merged() => {
                let reads = self.plan.isolate(&self.registers, &read.members);
                Verdict::Split { code, reads }
            }
            // Failed or busy this time (4, 5, 6): the device answered, so
            // the rest of its poll goes on and this read is asked again
            // at its next one.
            Answer::Exception(code @ 4..=6) => Verdict::Skipped { code },
            Answer::Exception(code) => Verdict::DeviceFault(Fault::Exception(code)),
            Answer::Timeout => Verdict::DeviceFault(Fault::Timeout),
            Answer::Crc => Verdict::DeviceFault(Fault::Crc),
            Answer::OutOfStep => Verdict::DeviceFault(Fault::OutOfStep),
            Answer::BadEcho => Verdict::DeviceFault(Fault::BadEcho),
            Answer::Echo => Verdict::DeviceFault(Fault::Echo),
            Answer::Connection(_) => Verdict::LinkFault(Fault::Connection),
        }
    }

    fn values(
        &mut self,
        read: &Read,
        reprobe: bool,
        values: Vec<(usize, f64)>,
        not_finite: Vec<usize>,
        texts: Vec<(usize, String)>,
    ) -> Verdict {
        if reprobe {
            let member = read.members[0];
            self.reprobes.remove(&member);
            self.plan.enable(&self.registers, member);
            return Verdict::Restored { member, values };
        }
        Verdict::Values {
            values,
            not_finite,
            texts,
        }
    }

    /// Ends a poll at `now`: schedules the next one and returns the
    /// device's new state when it changed.
    pub fn finish(&mut self, now: Instant, answered: bool) -> Option<DeviceState> {
        // The grid keeps its phase: the next slot after now, skipping
        // those a slow bus missed rather than polling twice to catch up.
        while self.slot <= now {
            self.slot += self.period;
        }
        if answered {
            self.failures = 0;
            self.retry_at = None;
            self.answered_once = true;
            self.backoff.reset();
            return self.set(DeviceState::Online);
        }
        self.failures = self.failures.saturating_add(1);
        let mut wait = self.backoff.next_delay();
        if self.answered_once {
            // Back within a period of coming back, as a poller that
            // simply reads at its interval would be.
            wait = wait.min(self.period);
        }
        self.retry_at = Some(now + wait);
        if self.failures >= OFFLINE_AFTER {
            return self.set(DeviceState::Offline);
        }
        None
    }

    fn set(&mut self, state: DeviceState) -> Option<DeviceState> {
        if self.state == Some(state) {
            return None;
        }
        self.state = Some(state);
        Some(state)
    }
}

/// Longest spread of a bus's first polls: a device read hourly must still
/// give its first reading at start.
const MAX_SPREAD: Duration = Duration::from_secs(1);

/// The first slot of device `i` of `n` with `period`: spread over the
/// first period (a second at most), so a bus of a hundred meters does not
/// queue a hundred requests at one instant.
pub fn first_slot(start: Instant, period: Duration, i: usize, n: usize) -> Instant {
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    let i = u32::try_from(i).unwrap_or(0).min(n);
    start + period.min(MAX_SPREAD) * i / n
}

/// The device due first (lowest index on a tie).
pub fn next_due(units: &[Unit]) -> Option<usize> {
    units
        .iter()
        .enumerate()
        .min_by_key(|(i, u)| (u.due(), *i))
        .map(|(i, _)| i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::modbus::registers::{Order, Table, ValueType};

    fn reg(metric: &str, table: Table, address: u16, ty: ValueType) -> Register {
        Register {
            metric: metric.into(),
            table,
            address,
            ty,
            order: Order::Abcd,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            writable: false,
            min: None,
            max: None,
            bit: None,
            length: 0,
        }
    }

    fn unit(period: Duration, max_backoff: Duration) -> Unit {
        let regs = vec![
            reg("a", Table::Holding, 0, ValueType::U16),
            reg("b", Table::Holding, 2, ValueType::F32),
            reg("c", Table::Holding, 6, ValueType::I16),
        ];
        Unit::new(
            1,
            regs,
            4,
            period,
            Instant::now(),
            Backoff::with_seed(period, max_backoff, 7),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn answers_become_values_at_their_offsets() {
        let mut u = unit(Duration::from_secs(1), Duration::from_secs(8));
        let read = u.plan.reads()[0].clone();
        assert_eq!((read.start, read.count), (0, 7));
        let words = vec![7, 0xFFFF, 0x41C8, 0x0000, 0xFFFF, 0xFFFF, 0xFFFE];
        assert_eq!(
            u.judge(&read, Answer::Words(words), Instant::now()),
            Verdict::Values {
                values: vec![(0, 7.0), (1, 25.0), (2, -2.0)],
                not_finite: vec![],
                texts: vec![]
            }
        );
        // A late answer to another read, of another length: not trusted.
        assert_eq!(
            u.judge(&read, Answer::Words(vec![1, 2]), Instant::now()),
            Verdict::LinkFault(Fault::Mismatch)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_illegal_address_splits_then_disables_only_that_register() {
        let mut u = unit(Duration::from_secs(1), Duration::from_secs(8));
        let merged = u.plan.reads()[0].clone();
        let Verdict::Split { code: 2, reads } =
            u.judge(&merged, Answer::Exception(2), Instant::now())
        else {
            panic!("a merged read refused is split");
        };
        assert_eq!(reads.len(), 3);
        // The float at 2 is refused alone: disabled, the others read.
        let Verdict::Disabled {
            member: 1, code: 2, ..
        } = u.judge(&reads[1], Answer::Exception(2), Instant::now())
        else {
            panic!("refused alone: disabled");
        };
        assert_eq!(u.plan.reads().len(), 2);
        assert_eq!(
            u.judge(&reads[2], Answer::Words(vec![5]), Instant::now()),
            Verdict::Values {
                values: vec![(2, 5.0)],
                not_finite: vec![],
                texts: vec![]
            }
        );
        // Busy and device failure are an answer for this read only (the
        // register stays enabled); a Modbus gateway's missing target is the
        // device's silence.
        for code in [4, 5, 6] {
            assert_eq!(
                u.judge(&reads[0], Answer::Exception(code), Instant::now()),
                Verdict::Skipped { code }
            );
        }
        assert_eq!(u.plan.reads().len(), 2);
        assert_eq!(
            u.judge(&reads[0], Answer::Exception(11), Instant::now()),
            Verdict::DeviceFault(Fault::Exception(11))
        );
    }

    /// One register whose channel is not fitted answers exception 4: a
    /// merged read with it is split, so the others are read whatever it
    /// does, and it is asked again at every poll, not disabled.
    #[tokio::test(start_paused = true)]
    async fn a_device_failure_in_a_merged_read_costs_only_its_register() {
        let mut u = unit(Duration::from_secs(1), Duration::from_secs(8));
        let merged = u.plan.reads()[0].clone();
        let Verdict::Split { code: 4, reads } =
            u.judge(&merged, Answer::Exception(4), Instant::now())
        else {
            panic!("a merged read failing is split");
        };
        assert_eq!(reads.len(), 3);
        assert_eq!(
            u.judge(&reads[1], Answer::Exception(4), Instant::now()),
            Verdict::Skipped { code: 4 }
        );
        assert_eq!(u.plan.disabled().len(), 0);
        assert_eq!(u.plan.reads().len(), 3, "each register read alone");
        // A poll with an answer is answered, whatever failed after it.
        assert_eq!(u.finish(Instant::now(), true), Some(DeviceState::Online));
    }

    fn unmerged(period: Duration) -> Unit {
        let mut u = unit(period, Duration::from_secs(8));
        u.plan = Plan::new(&u.registers, 0);
        u
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_that_never_answered_backs_off_and_goes_offline() {
        let period = Duration::from_secs(1);
        let start = Instant::now();
        let mut u = unit(period, Duration::from_secs(8));
        assert_eq!(u.due(), start);
        let mut now = start;
        let mut waits = Vec::new();
        for i in 0..6 {
            let state = u.finish(now, false);
            assert_eq!(state, (i == 1).then_some(DeviceState::Offline), "poll {i}");
            let wait = u.due() - now;
            waits.push(wait);
            now = u.due();
        }
        assert!(waits[0] >= period / 2 && waits[0] <= period, "{waits:?}");
        assert!(waits.windows(2).take(3).all(|w| w[1] > w[0]), "{waits:?}");
        assert!(waits.iter().any(|w| *w > period), "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(8)),
            "{waits:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_that_answered_before_is_asked_cheaply_every_period_and_comes_back_on_its_grid(
    ) {
        let period = Duration::from_secs(1);
        let start = Instant::now();
        let mut u = unmerged(period);
        assert_eq!(u.reads_for_poll().len(), 3, "the whole map");
        // Answered: online once, next slot one period on.
        assert_eq!(u.finish(start, true), Some(DeviceState::Online));
        assert_eq!(u.due(), start + period);
        assert_eq!(u.finish(start + period, true), None);
        // Silent: asked again within a period each time, however long it
        // stays away (a backoff would leave it unread for max_backoff),
        // with one request, not the whole map.
        let mut now = start + 2 * period;
        for i in 0..8 {
            let state = u.finish(now, false);
            assert_eq!(state, (i == 1).then_some(DeviceState::Offline), "poll {i}");
            let wait = u.due() - now;
            assert!(wait <= period, "poll {i}: {wait:?}");
            let cheap = u.reads_for_poll();
            assert_eq!(cheap.len(), 1);
            assert_eq!(
                (cheap[0].start, cheap[0].count),
                (0, 1),
                "its smallest read"
            );
            assert_eq!(u.rest_of_poll(&cheap[0]).len(), 2);
            now = u.due();
        }
        // Back: online, and the next poll is on the original grid.
        assert_eq!(u.finish(now, true), Some(DeviceState::Online));
        let phase = (u.due() - start).as_nanos() % period.as_nanos();
        assert_eq!(phase, 0);
        assert!(u.due() > now && u.due() <= now + period);
        assert_eq!(u.reads_for_poll().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_register_is_asked_again_less_and_less_often_until_it_answers() {
        let t0 = Instant::now();
        let mut u = unmerged(Duration::from_secs(1));
        let float = u.plan.reads()[1].clone();
        assert_eq!(float.members, vec![1]);
        let Verdict::Disabled {
            member: 1,
            retry: REPROBE_FIRST,
            ..
        } = u.judge(&float, Answer::Exception(2), t0)
        else {
            panic!("refused alone: disabled")
        };
        assert_eq!(u.plan.reads().len(), 2);
        assert!(u.reprobes_due(t0 + REPROBE_FIRST / 2).is_empty());
        let mut now = t0 + REPROBE_FIRST;
        let again = u.reprobes_due(now);
        assert_eq!(again, vec![float.clone()]);
        assert!(u.is_reprobe(&again[0]));
        // Still refused: asked again twice as late, never later than the cap.
        let mut waits = Vec::new();
        for _ in 0..8 {
            let Verdict::Disabled { retry, .. } = u.judge(&again[0], Answer::Exception(2), now)
            else {
                panic!("still refused")
            };
            assert!(u.reprobes_due(now + retry / 2).is_empty());
            waits.push(retry);
            now += retry;
            assert_eq!(u.reprobes_due(now), again);
        }
        assert_eq!(waits[0], REPROBE_FIRST * 2);
        assert_eq!(waits.last().copied(), Some(REPROBE_MAX), "{waits:?}");
        // A firmware update later: it answers, and is read from then on.
        assert_eq!(
            u.judge(&again[0], Answer::Words(vec![0x41C8, 0]), now),
            Verdict::Restored {
                member: 1,
                values: vec![(1, 25.0)]
            }
        );
        assert_eq!(u.plan.reads().len(), 3);
        assert!(u.reprobes_due(now + REPROBE_MAX * 2).is_empty());
        assert!(!u.is_reprobe(&float));
    }

    #[tokio::test(start_paused = true)]
    async fn not_finite_values_are_listed_not_read() {
        let mut u = unmerged(Duration::from_secs(1));
        let float = u.plan.reads()[1].clone();
        assert_eq!(
            u.judge(&float, Answer::Words(vec![0x7FC0, 0]), Instant::now()),
            Verdict::Values {
                values: vec![],
                not_finite: vec![1],
                texts: vec![]
            }
        );
        assert_eq!(
            u.judge(&float, Answer::OutOfStep, Instant::now()),
            Verdict::DeviceFault(Fault::OutOfStep)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_poll_skips_missed_slots_instead_of_bursting() {
        let period = Duration::from_secs(1);
        let start = Instant::now();
        let mut u = unit(period, Duration::from_secs(8));
        u.finish(start + Duration::from_millis(3500), true);
        assert_eq!(u.due(), start + Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn devices_start_spread_and_the_earliest_is_next() {
        let start = Instant::now();
        let period = Duration::from_secs(1);
        let slots: Vec<Duration> = (0..4)
            .map(|i| first_slot(start, period, i, 4) - start)
            .collect();
        assert_eq!(
            slots,
            [0, 250, 500, 750].map(Duration::from_millis).to_vec()
        );
        let hourly = first_slot(start, Duration::from_secs(3600), 3, 4) - start;
        assert_eq!(hourly, Duration::from_millis(750), "read at start");
        let mut units: Vec<Unit> = (0..3)
            .map(|i| {
                let mut u = unit(period, period);
                u.slot = first_slot(start, period, 2 - i, 3);
                u
            })
            .collect();
        assert_eq!(next_due(&units), Some(2));
        units[2].finish(start, true);
        assert_eq!(next_due(&units), Some(1));
        assert_eq!(next_due(&[]), None);
    }
}
