//! Keeping a unit's answers in step with its requests on an RTU line.
//!
//! RTU has no transaction id: an answer names its unit and function and,
//! for a read, its byte count, never the address read. A late answer
//! (held back by a buffering converter past its timeout) or a second copy
//! of one therefore passes for the answer to the next request of the same
//! shape: the register at 100 would be reported with the value at 0.
//!
//! After a timeout, a garbled or a stray answer, the line drains to
//! silence and the unit is *out of step*: the shapes of the requests whose
//! answers may still come are kept ([`Suspects`]). Its next request is not
//! trusted unless its answer cannot have any of those shapes; when it
//! could, a [`probe`] is sent first, a read nearby whose answer no suspect
//! looks like. An answer to it proves the line is in step again (answers
//! come in the order their requests were sent), and the suspects are
//! forgotten. A unit that keeps answering out of step never gets there:
//! its readings are withheld until it does. Pure.

use std::collections::VecDeque;

use super::frame::{Checked, Request, Shape};
use super::registers::Table;

/// Suspect shapes kept per unit: an answer later than this many requests
/// is not a late answer, and the list of a unit that never answers must
/// not grow.
const KEPT: usize = 8;

/// The shapes of a unit's requests whose answers may still arrive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suspects {
    shapes: VecDeque<Shape>,
}

impl Suspects {
    /// Notes that an answer of `shape` may still come.
    pub fn add(&mut self, shape: Shape) {
        if self.shapes.contains(&shape) {
            return;
        }
        if self.shapes.len() == KEPT {
            self.shapes.pop_front();
        }
        self.shapes.push_back(shape);
    }

    /// Whether an answer of `shape` may be a stale one.
    pub fn may_be(&self, shape: Shape) -> bool {
        self.shapes.contains(&shape)
    }

    /// Whether a stale exception to `function` may still come (an
    /// exception carries only the function and a code).
    fn has_function(&self, function: u8) -> bool {
        self.shapes.iter().any(|s| s.function() == function)
    }

    /// Forgets the oldest suspect. Suspects age by the requests sent
    /// after them; a unit no probe could be sent to gets no request, so
    /// each poll that finds none ages its suspects instead: a late answer
    /// does not come polls later, and a unit must not stay silenced for
    /// good.
    pub fn age(&mut self) {
        self.shapes.pop_front();
    }
}

/// The other table read at the same addresses (holding and input
/// registers, coils and discrete inputs): another function code, so
/// neither its answer nor an exception to it can be a stale answer to the
/// first.
fn sibling(table: Table) -> Table {
    match table {
        Table::Holding => Table::Input,
        Table::Input => Table::Holding,
        Table::Coil => Table::Discrete,
        Table::Discrete => Table::Coil,
    }
}

/// The read a request is about: itself, or the register a write sets.
fn about(request: &Request) -> (Table, u16, u16) {
    match request {
        Request::Read {
            table,
            start,
            count,
        } => (*table, *start, *count),
        Request::WriteCoil { address, .. } => (Table::Coil, *address, 1),
        Request::WriteRegister { address, .. } => (Table::Holding, *address, 1),
        Request::WriteRegisters { address, words } => (
            Table::Holding,
            *address,
            u16::try_from(words.len()).unwrap_or(1),
        ),
    }
}

/// What to send so that `request` can be trusted: `request` itself when
/// no suspect answer has its answer's shape, else a read nearby whose
/// answer no suspect has (the same start in the other table, fewer or
/// more items). `None` when every candidate is suspect.
pub fn probe(request: &Request, suspects: &Suspects) -> Option<Request> {
    if !suspects.may_be(request.shape()) {
        return Some(request.clone());
    }
    let (table, start, count) = about(request);
    let read = |table: Table, start: u16, count: u16| Request::Read {
        table,
        start,
        count,
    };
    let fits = |r: &Request| {
        let (t, from, n) = about(r);
        n >= 1 && n <= t.max_per_read() && u32::from(from) + u32::from(n) <= 65_536
    };
    let other = sibling(table);
    let longer = |extra: u16| {
        // More items after it, or, at the top of the address space, before.
        if u32::from(start) + u32::from(count) + u32::from(extra) <= 65_536 {
            read(table, start, count.saturating_add(extra))
        } else {
            read(
                table,
                start.saturating_sub(extra),
                count.saturating_add(extra),
            )
        }
    };
    // Bits come eight to a byte: a read of 1 to 8 coils and its sibling's
    // answer in one byte whatever the count, so only a read a byte longer
    // has another shape.
    let bytes_longer = |extra_bytes: u16| {
        let per_byte = if table.is_bits() { 8 } else { 1 };
        longer(extra_bytes * per_byte)
    };
    // Then one item of each table of the other kind (registers for a bit
    // read, bits for a register read): their answers or exceptions carry
    // a function no suspect has, so even a device without such a table
    // proves it answers in step by refusing the read. Last, a bit read a
    // byte or two longer (which a small board may refuse, inconclusively).
    let other_kind = [Table::Holding, Table::Input, Table::Coil, Table::Discrete]
        .into_iter()
        .filter(move |t| t.is_bits() != table.is_bits())
        .map(move |t| read(t, start, 1));
    std::iter::once(read(other, start, 1))
        .chain((1..count).rev().map(|n| read(table, start, n)))
        .chain((1..=4).map(longer))
        .chain((2..=5u16).map(|n| {
            let from = u32::from(start).min(65_536 - u32::from(n));
            read(other, u16::try_from(from).unwrap_or(start), n)
        }))
        .chain(other_kind)
        .chain((1..=2).map(bytes_longer))
        .find(|r| fits(r) && !suspects.may_be(r.shape()))
}

/// Whether `answer` to `probe` proves the unit answers in step: any
/// answer of an unsuspected shape does; an exception does only when no
/// suspect request had its function (else it may be a stale one).
pub fn confirms(suspects: &Suspects, probe: &Request, answer: &Checked) -> bool {
    match answer {
        Checked::Words(_) | Checked::Bits(_) | Checked::Written => !suspects.may_be(probe.shape()),
        Checked::Exception(_) => !suspects.has_function(probe.function()),
        Checked::NotOurs => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn holding(start: u16, count: u16) -> Request {
        Request::Read {
            table: Table::Holding,
            start,
            count,
        }
    }

    #[test]
    fn a_request_unlike_every_suspect_is_its_own_proof() {
        let mut s = Suspects::default();
        s.add(holding(0, 1).shape());
        // Two registers: an answer of 4 bytes, no suspect has that shape.
        assert_eq!(probe(&holding(10, 2), &s), Some(holding(10, 2)));
        // One register at 100: its answer looks like the one at 0's.
        let p = probe(&holding(100, 1), &s).unwrap();
        assert_eq!(
            p,
            Request::Read {
                table: Table::Input,
                start: 100,
                count: 1
            }
        );
        // Whatever the probe gets (even exception 1 or 2) proves the
        // line in step: no suspect used function 4.
        assert!(confirms(&s, &p, &Checked::Exception(2)));
        assert!(confirms(&s, &p, &Checked::Words(vec![7])));
        assert!(!confirms(&s, &holding(100, 1), &Checked::Exception(2)));
        assert!(!confirms(&s, &p, &Checked::NotOurs));
    }

    #[test]
    fn probes_avoid_every_suspect_shape_and_stay_within_the_protocol() {
        let mut s = Suspects::default();
        s.add(holding(0, 3).shape());
        s.add(
            Request::Read {
                table: Table::Input,
                start: 0,
                count: 1,
            }
            .shape(),
        );
        // The sibling is suspect too: fewer registers.
        assert_eq!(probe(&holding(5, 3), &s), Some(holding(5, 2)));
        s.add(holding(0, 2).shape());
        assert_eq!(probe(&holding(5, 3), &s), Some(holding(5, 1)));
        s.add(holding(0, 1).shape());
        assert_eq!(probe(&holding(5, 3), &s), Some(holding(5, 4)));
        // At the top of the address space nothing may run past 65535.
        let top = probe(&holding(65535, 1), &s).unwrap();
        let (_, start, count) = about(&top);
        assert!(u32::from(start) + u32::from(count) <= 65_536, "{top:?}");
        // A write's proof is a read of what it writes.
        let write = Request::WriteRegister {
            address: 3,
            value: 1,
        };
        assert_eq!(probe(&write, &s), Some(write.clone()));
        s.add(write.shape());
        assert!(matches!(
            probe(&write, &s),
            Some(Request::Read { start: 3, .. })
        ));
    }

    fn coils(start: u16, count: u16) -> Request {
        Request::Read {
            table: Table::Coil,
            start,
            count,
        }
    }

    /// An eight-relay board: every read of its coils or inputs answers in
    /// one byte, so two timeouts made every bit read suspect and the unit
    /// was never asked anything again.
    #[test]
    fn a_bit_read_is_proved_by_a_longer_read_or_by_a_register_read() {
        let mut s = Suspects::default();
        s.add(coils(0, 3).shape());
        s.add(
            Request::Read {
                table: Table::Discrete,
                start: 0,
                count: 2,
            }
            .shape(),
        );
        let p = probe(&coils(0, 3), &s).unwrap();
        assert_eq!(p, holding(0, 1), "a register read when every bit read is suspect");
        // A relay board has no registers: its exception proves it in step.
        assert!(confirms(&s, &p, &Checked::Exception(2)));
        assert!(confirms(&s, &p, &Checked::Exception(1)));
        // With the registers' functions suspect too: nine coils answer in
        // two bytes.
        s.add(holding(0, 1).shape());
        s.add(
            Request::Read {
                table: Table::Input,
                start: 0,
                count: 1,
            }
            .shape(),
        );
        assert_eq!(probe(&coils(0, 3), &s), Some(coils(0, 11)));
    }

    #[test]
    fn a_unit_nothing_can_be_sent_to_ages_its_suspects() {
        let mut s = Suspects::default();
        for n in [1, 9, 17] {
            s.add(coils(0, n).shape());
            s.add(
                Request::Read {
                    table: Table::Discrete,
                    start: 0,
                    count: n,
                }
                .shape(),
            );
        }
        s.add(holding(0, 1).shape());
        s.add(
            Request::Read {
                table: Table::Input,
                start: 0,
                count: 1,
            }
            .shape(),
        );
        assert_eq!(probe(&coils(0, 1), &s), None);
        s.age();
        assert!(probe(&coils(0, 1), &s).is_some(), "the oldest forgotten");
    }

    #[test]
    fn the_suspects_of_a_silent_unit_stay_bounded() {
        let mut s = Suspects::default();
        for n in 1..=40 {
            s.add(holding(0, n).shape());
        }
        assert_eq!(s.shapes.len(), KEPT);
        assert!(s.may_be(holding(0, 40).shape()));
        assert!(!s.may_be(holding(0, 1).shape()));
    }
}
