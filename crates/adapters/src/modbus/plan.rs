//! Which reads one poll of a device makes: its registers grouped, per
//! table, into as few requests as the protocol allows.
//!
//! A meter answers one read of 20 registers as fast as one of 2, and on
//! RS-485 at 9600 baud each request costs a turnaround and an inter-frame
//! silence: ten metrics read one by one take ten times the bus time.
//! Registers of one table are merged while the span stays within the
//! protocol's limit (125 registers, 2000 bits) and the hole between two
//! of them is at most `max_gap` items. A device that refuses a merged read
//! (exception 2 for an address in the hole: many devices have holes in
//! their maps) gets the registers of that read asked alone from then on
//! ([`Plan::isolate`]); one that refuses a register alone has that register
//! disabled ([`Plan::disable`]) and its other registers go on, until the
//! poller finds it answered again ([`Plan::enable`]).
//!
//! Pure: registers in, reads out.

use std::collections::BTreeSet;

use super::registers::{Register, Table};

/// One read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub table: Table,
    /// First address read.
    pub start: u16,
    /// Items (registers or bits) read.
    pub count: u16,
    /// Indexes (into the device's register list) of the registers it
    /// carries, in address order.
    pub members: Vec<usize>,
}

impl Read {
    /// Whether it reads more than one configured register (a refusal may
    /// then be for a hole between them, not for a register).
    pub fn is_merged(&self) -> bool {
        self.members.len() > 1
    }
}

/// The reads of one device, and what its refusals taught.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    max_gap: u16,
    /// Registers read alone since a merged read with them was refused.
    isolated: BTreeSet<usize>,
    /// Registers the device refused alone: not read in a poll.
    disabled: BTreeSet<usize>,
    reads: Vec<Read>,
}

impl Plan {
    pub fn new(registers: &[Register], max_gap: u16) -> Self {
        let mut plan = Self {
            max_gap,
            isolated: BTreeSet::new(),
            disabled: BTreeSet::new(),
            reads: Vec::new(),
        };
        plan.reads = plan.group(registers);
        plan
    }

    pub fn reads(&self) -> &[Read] {
        &self.reads
    }

    pub fn disabled(&self) -> &BTreeSet<usize> {
        &self.disabled
    }

    /// Reads `members` alone from now on; returns their new reads, to be
    /// made at once so the poll loses nothing.
    pub fn isolate(&mut self, registers: &[Register], members: &[usize]) -> Vec<Read> {
        self.isolated.extend(members.iter().copied());
        self.reads = self.group(registers);
        self.reads
            .iter()
            .filter(|r| r.members.iter().all(|m| members.contains(m)))
            .cloned()
            .collect()
    }

    /// Stops reading `member` (the poller asks it again, alone, now and
    /// then).
    pub fn disable(&mut self, registers: &[Register], member: usize) {
        self.disabled.insert(member);
        self.reads = self.group(registers);
    }

    /// Reads `member` again: the device answered it.
    pub fn enable(&mut self, registers: &[Register], member: usize) {
        self.disabled.remove(&member);
        self.reads = self.group(registers);
    }

    fn group(&self, registers: &[Register]) -> Vec<Read> {
        let mut order: Vec<usize> = (0..registers.len())
            .filter(|i| !self.disabled.contains(i))
            .collect();
        order.sort_by_key(|&i| (registers[i].table, registers[i].address, i));
        let mut reads: Vec<Read> = Vec::new();
        for i in order {
            let r = &registers[i];
            let alone = self.isolated.contains(&i);
            if !alone {
                if let Some(last) = reads.last_mut() {
                    let last_alone = last.members.iter().any(|m| self.isolated.contains(m));
                    let end = u32::from(last.start) + u32::from(last.count);
                    let fits = last.table == r.table
                        && !last_alone
                        && u32::from(r.address) <= end + u32::from(self.max_gap)
                        && r.end().max(end) - u32::from(last.start)
                            <= u32::from(r.table.max_per_read());
                    if fits {
                        // Registers may overlap (one address read as two
                        // types): the read then already covers it.
                        let new_end = r.end().max(end);
                        last.count = (new_end - u32::from(last.start)) as u16;
                        last.members.push(i);
                        continue;
                    }
                }
            }
            reads.push(Read {
                table: r.table,
                start: r.address,
                count: r.span(),
                members: vec![i],
            });
        }
        reads
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::modbus::registers::{Order, ValueType};

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

    fn shape(plan: &Plan) -> Vec<(Table, u16, u16, Vec<usize>)> {
        plan.reads()
            .iter()
            .map(|r| (r.table, r.start, r.count, r.members.clone()))
            .collect()
    }

    #[test]
    fn an_sdm120_reads_in_two_requests_with_gaps_bridged() {
        use ValueType::F32;
        let regs = vec![
            reg("voltage", Table::Input, 0x00, F32),
            reg("current", Table::Input, 0x06, F32),
            reg("power", Table::Input, 0x0C, F32),
            reg("power_factor", Table::Input, 0x1E, F32),
            reg("frequency", Table::Input, 0x46, F32),
            reg("energy", Table::Input, 0x156, F32),
        ];
        // Holes of 4 registers between voltage, current, power; 16 before
        // the power factor.
        let plan = Plan::new(&regs, 4);
        assert_eq!(
            shape(&plan),
            vec![
                (Table::Input, 0x00, 0x0E, vec![0, 1, 2]),
                (Table::Input, 0x1E, 2, vec![3]),
                (Table::Input, 0x46, 2, vec![4]),
                (Table::Input, 0x156, 2, vec![5]),
            ]
        );
        let plan = Plan::new(&regs, 0);
        assert_eq!(plan.reads().len(), 6, "no gap bridged");
        let plan = Plan::new(&regs, 100);
        assert_eq!(
            shape(&plan),
            vec![
                (Table::Input, 0x00, 0x48, vec![0, 1, 2, 3, 4]),
                (Table::Input, 0x156, 2, vec![5]),
            ]
        );
    }

    #[test]
    fn tables_never_mix_and_a_read_stays_within_the_protocol_limit() {
        let mut regs: Vec<Register> = (0..130)
            .map(|i| reg(&format!("h{i}"), Table::Holding, i, ValueType::U16))
            .collect();
        regs.push(reg("i0", Table::Input, 0, ValueType::U16));
        regs.push(reg("c0", Table::Coil, 0, ValueType::U16));
        regs.push(reg("c1", Table::Coil, 1999, ValueType::U16));
        regs.push(reg("c2", Table::Coil, 2000, ValueType::U16));
        let plan = Plan::new(&regs, 10_000);
        let reads = shape(&plan);
        assert_eq!(reads[0].0, Table::Coil);
        assert_eq!((reads[0].1, reads[0].2), (0, 2000));
        assert_eq!((reads[1].1, reads[1].2), (2000, 1));
        assert_eq!(
            (reads[2].0, reads[2].1, reads[2].2),
            (Table::Holding, 0, 125)
        );
        assert_eq!((reads[3].1, reads[3].2), (125, 5));
        assert_eq!((reads[4].0, reads[4].2), (Table::Input, 1));
        assert_eq!(reads.len(), 5);
    }

    #[test]
    fn a_value_at_the_top_of_the_address_space_and_overlapping_registers() {
        let regs = vec![
            reg("a", Table::Holding, 65534, ValueType::U32),
            reg("whole", Table::Holding, 10, ValueType::U32),
            reg("high", Table::Holding, 10, ValueType::U16),
        ];
        let plan = Plan::new(&regs, 0);
        assert_eq!(
            shape(&plan),
            vec![
                (Table::Holding, 10, 2, vec![1, 2]),
                (Table::Holding, 65534, 2, vec![0]),
            ]
        );
    }

    #[test]
    fn a_refused_merged_read_splits_and_a_refused_register_is_disabled() {
        let regs = vec![
            reg("a", Table::Holding, 0, ValueType::U16),
            reg("b", Table::Holding, 2, ValueType::U16),
            reg("c", Table::Holding, 4, ValueType::U16),
            reg("d", Table::Holding, 40, ValueType::U16),
        ];
        let mut plan = Plan::new(&regs, 4);
        assert_eq!(plan.reads()[0].members, vec![0, 1, 2]);
        assert!(plan.reads()[0].is_merged());
        let now = plan.isolate(&regs, &[0, 1, 2]);
        assert_eq!(
            now.iter().map(|r| r.members.clone()).collect::<Vec<_>>(),
            vec![vec![0], vec![1], vec![2]]
        );
        assert_eq!(plan.reads().len(), 4);
        plan.disable(&regs, 1);
        assert_eq!(
            shape(&plan),
            vec![
                (Table::Holding, 0, 1, vec![0]),
                (Table::Holding, 4, 1, vec![2]),
                (Table::Holding, 40, 1, vec![3]),
            ]
        );
        assert!(plan.disabled().contains(&1));
    }
}
