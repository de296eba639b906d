//! The modbus adapter's write side: commands from the cloud for registers
//! declared `writable = true`, checked here (type, bounds, what the
//! register's type can hold) and queued to the bus task, which owns the
//! link: a write never overlaps a poll on the bus.
//!
//! `done` means the device answered the write and a read-back of the same
//! register gives the words (or bit) written.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_core::command::{
    Command, CommandTarget, Refusal, WritableKind, WritablePoint, WriteFuture, WriteOutcome,
};
use gateway_core::DeviceId;
use tokio::sync::{mpsc, oneshot};

use super::devices::ModbusDevice;
use super::link::Link;
use super::plan::Read;
use super::poller::Answer;
use super::registers::{encode, EncodeError, Encoded, Register, Table, ValueType};

/// Writes waiting for the bus: a handful, since each gets its answer
/// before the next command is taken.
const QUEUE: usize = 8;

/// One write for the bus task.
#[derive(Debug)]
pub struct WriteJob {
    pub unit: u8,
    pub register: Register,
    pub encoded: Encoded,
    /// The command's `max_age`: not written after it (the bus may have
    /// kept the job waiting behind polls or a reconnect).
    pub deadline: Option<tokio::time::Instant>,
    pub reply: oneshot::Sender<WriteOutcome>,
}

/// The writable registers of one bus's devices.
pub struct ModbusTarget {
    /// Device → (unit, its writable registers).
    devices: HashMap<DeviceId, (u8, Vec<Register>)>,
    jobs: mpsc::Sender<WriteJob>,
}

impl ModbusTarget {
    /// The target of a bus and the receiver its task takes jobs from;
    /// `None` when no register of these devices is writable.
    pub fn new(devices: &[ModbusDevice]) -> Option<(Arc<Self>, mpsc::Receiver<WriteJob>)> {
        let devices: HashMap<_, _> = devices
            .iter()
            .filter_map(|d| {
                let writable: Vec<Register> =
                    d.registers.iter().filter(|r| r.writable).cloned().collect();
                (!writable.is_empty()).then(|| (d.id.clone(), (d.unit, writable)))
            })
            .collect();
        if devices.is_empty() {
            return None;
        }
        let (jobs, rx) = mpsc::channel(QUEUE);
        Some((Arc::new(Self { devices, jobs }), rx))
    }

    fn encoded(&self, command: &Command) -> Result<(u8, Register, Encoded), Refusal> {
        let (unit, registers) = self
            .devices
            .get(&command.device)
            .ok_or_else(|| Refusal::new("not_writable", "no writable register on this device"))?;
        let register = registers
            .iter()
            .find(|r| r.metric == command.metric)
            .ok_or_else(|| {
                Refusal::new(
                    "not_writable",
                    format!("{} is not declared writable", command.metric),
                )
            })?;
        let value = command
            .value
            .as_number()
            .ok_or_else(|| Refusal::new("type", "expected a number (or true/false for a coil)"))?;
        let encoded = encode(register, value, register.bounds()).map_err(refusal)?;
        Ok((*unit, register.clone(), encoded))
    }
}

fn refusal(e: EncodeError) -> Refusal {
    let reason = match e {
        EncodeError::NotFinite { .. } => "type",
        EncodeError::OutOfBounds { .. }
        | EncodeError::OutOfRange { .. }
        | EncodeError::NotABit { .. } => "out_of_range",
        EncodeError::ReadOnly | EncodeError::ZeroScale => "not_writable",
    };
    Refusal::new(reason, e.to_string())
}

/// The raw values a register type holds.
fn raw_range(ty: ValueType) -> (f64, f64) {
    match ty {
        ValueType::U16 => (0.0, f64::from(u16::MAX)),
        ValueType::I16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
        ValueType::U32 => (0.0, f64::from(u32::MAX)),
        ValueType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        ValueType::U64 => (0.0, u64::MAX as f64),
        ValueType::I64 => (i64::MIN as f64, i64::MAX as f64),
        ValueType::F32 => (f64::from(f32::MIN), f64::from(f32::MAX)),
        ValueType::F64 => (f64::MIN, f64::MAX),
        // Never writable: refused when the map is read.
        ValueType::String => (0.0, 0.0),
    }
}

/// Home Assistant's smallest `step`.
const MIN_STEP: f64 = 0.001;

/// What a writable register offers a user interface, in the reading's
/// unit. A coil, or a register declared with exactly two values (`min` and
/// `max` one raw step apart, e.g. 0 and 1), is a switch; any other register
/// a number within its declared bounds, else within what its type holds.
pub fn point(device: &DeviceId, r: &Register) -> WritablePoint {
    let kind = if r.table == Table::Coil {
        WritableKind::Switch {
            off: r.value_of_bit(false),
            on: r.value_of_bit(true),
        }
    } else {
        let float = matches!(r.ty, ValueType::F32 | ValueType::F64);
        let (lo, hi) = raw_range(r.ty);
        let (a, b) = (lo * r.scale + r.offset, hi * r.scale + r.offset);
        let finite = |v: f64, fallback: f64| if v.is_finite() { v } else { fallback };
        let min = r.min.unwrap_or(finite(a.min(b), f64::MIN));
        let max = r.max.unwrap_or(finite(a.max(b), f64::MAX));
        // One raw unit of an integer register; an f32 takes fractions of
        // its scale, and hundredths are finer than a set point needs.
        let step = if float {
            r.scale.abs() * 0.01
        } else {
            r.scale.abs()
        };
        let two_values = !float
            && r.min.is_some()
            && r.max.is_some()
            && ((max - min) - r.scale.abs()).abs() <= 1e-9 * r.scale.abs();
        if two_values {
            WritableKind::Switch { off: min, on: max }
        } else {
            WritableKind::Number {
                min,
                max,
                step: step.max(MIN_STEP),
            }
        }
    };
    WritablePoint {
        device: device.clone(),
        metric: r.metric.clone(),
        kind,
        unit: r.unit.clone(),
    }
}

impl CommandTarget for ModbusTarget {
    fn serves(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device)
    }

    fn writable(&self) -> Vec<WritablePoint> {
        let mut points: Vec<WritablePoint> = self
            .devices
            .iter()
            .flat_map(|(id, (_, registers))| registers.iter().map(move |r| point(id, r)))
            .collect();
        // A stable order: the announcements are compared run to run.
        points.sort_by(|a, b| (&a.device, &a.metric).cmp(&(&b.device, &b.metric)));
        points
    }

    fn check(&self, command: &Command) -> Result<(), Refusal> {
        self.encoded(command).map(|_| ())
    }

    fn write(&self, command: Command) -> WriteFuture {
        let checked = self.encoded(&command);
        let jobs = self.jobs.clone();
        Box::pin(async move {
            let (unit, register, encoded) = match checked {
                Ok(c) => c,
                Err(r) => return WriteOutcome::Refused(r),
            };
            let (reply, answer) = oneshot::channel();
            let job = WriteJob {
                unit,
                register,
                encoded,
                deadline: command.deadline,
                reply,
            };
            if jobs.send(job).await.is_err() {
                return WriteOutcome::Failed(Refusal::new(
                    "stopped",
                    "the modbus adapter has stopped",
                ));
            }
            answer.await.unwrap_or_else(|_| {
                WriteOutcome::Failed(Refusal::new(
                    "stopped",
                    "the modbus adapter stopped during the write",
                ))
            })
        })
    }
}

/// How a write went on the link, and whether the link is still usable.
pub struct Written {
    pub outcome: WriteOutcome,
    /// Drop the link (a connection fault, or a TCP timeout after which a
    /// late answer could pass for the next request's).
    pub drop_link: bool,
}

/// Writes `job` on `link` and reads the register back.
pub async fn execute(link: &mut Link, job: &WriteJob) -> Written {
    if job
        .deadline
        .is_some_and(|d| tokio::time::Instant::now() > d)
    {
        return Written {
            outcome: WriteOutcome::Refused(Refusal::expired("the Modbus bus")),
            drop_link: false,
        };
    }
    let answer = link
        .write(job.unit, job.register.address, &job.encoded)
        .await;
    if let Some(w) = failed(answer, link, "write") {
        return w;
    }
    let read = Read {
        table: job.register.table,
        start: job.register.address,
        count: job.register.span(),
        members: Vec::new(),
    };
    let back = link.read(job.unit, &read).await;
    let confirmed = match (&back, &job.encoded) {
        (Answer::Words(words), Encoded::Registers(written)) => words == written,
        (Answer::Bits(bits), Encoded::Coil(bit)) => bits.first() == Some(bit),
        _ => {
            if let Some(w) = failed(back, link, "read-back") {
                return w;
            }
            false
        }
    };
    let outcome = if confirmed {
        let value = match &job.encoded {
            Encoded::Registers(words) => job.register.value_of_words(words),
            Encoded::Coil(bit) => Some(job.register.value_of_bit(*bit)),
        };
        WriteOutcome::Done { value }
    } else {
        WriteOutcome::Failed(Refusal::new(
            "readback",
            "the device answered the write but reads back another value",
        ))
    };
    Written {
        outcome,
        drop_link: false,
    }
}

/// The failure an answer stands for; `None` when it is an answer.
fn failed(answer: Answer, link: &Link, step: &str) -> Option<Written> {
    let (reason, detail, drop_link) = match answer {
        Answer::Words(_) | Answer::Bits(_) => return None,
        Answer::Exception(code) => ("exception", format!("{step}: exception {code}"), false),
        Answer::Timeout => ("timeout", format!("{step}: no answer"), !link.is_serial()),
        Answer::Crc => ("crc", format!("{step}: garbled answer"), false),
        Answer::Mismatch => (
            "protocol",
            format!("{step}: an answer to another request"),
            true,
        ),
        // The line was drained and the unit is probed before its next
        // request: nothing to drop.
        Answer::OutOfStep => (
            "out_of_step",
            format!("{step}: the device answers out of step (late or doubled answers): nothing it says is trusted yet"),
            false,
        ),
        Answer::BadEcho => (
            "bad_echo",
            format!("{step}: the request's own bytes did not come back as sent (echo = true): check the adapter echoes, and the wiring"),
            false,
        ),
        Answer::Echo => (
            "echo",
            format!("{step}: the request's own bytes came back (the RS-485 adapter echoes: set echo = true)"),
            false,
        ),
        Answer::Connection(e) => ("connection", format!("{step}: {e}"), true),
    };
    Some(Written {
        outcome: WriteOutcome::Failed(Refusal::new(reason, detail)),
        drop_link,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::registers::Order;
    use super::*;

    fn register(table: Table, ty: ValueType, scale: f64, bounds: Option<(f64, f64)>) -> Register {
        Register {
            metric: "setpoint".into(),
            table,
            address: 0,
            ty,
            order: Order::Abcd,
            scale,
            offset: 0.0,
            unit: Some("°C".into()),
            writable: true,
            min: bounds.map(|b| b.0),
            max: bounds.map(|b| b.1),
            bit: None,
            length: 0,
        }
    }

    #[test]
    fn numbers_switches_and_their_bounds() {
        let id = DeviceId::new("ahu-1").unwrap();
        let p = point(
            &id,
            &register(Table::Holding, ValueType::I16, 0.1, Some((15.0, 28.0))),
        );
        assert_eq!(p.unit.as_deref(), Some("°C"));
        let WritableKind::Number { min, max, step } = p.kind.clone() else {
            panic!("{p:?}")
        };
        assert_eq!((min, max), (15.0, 28.0));
        assert!((step - 0.1).abs() < 1e-12);

        // Undeclared bounds: what the type holds, in the reading's unit.
        let p = point(&id, &register(Table::Holding, ValueType::U16, 0.5, None));
        assert_eq!(
            p.kind,
            WritableKind::Number {
                min: 0.0,
                max: 32767.5,
                step: 0.5
            }
        );
        let p = point(&id, &register(Table::Holding, ValueType::F32, 1.0, None));
        assert!(matches!(p.kind, WritableKind::Number { step, .. } if (step - 0.01).abs() < 1e-12));

        let coil = point(&id, &register(Table::Coil, ValueType::U16, 1.0, None));
        assert_eq!(coil.kind, WritableKind::Switch { off: 0.0, on: 1.0 });
        let declared = point(
            &id,
            &register(Table::Holding, ValueType::U16, 1.0, Some((0.0, 1.0))),
        );
        assert_eq!(declared.kind, WritableKind::Switch { off: 0.0, on: 1.0 });
        // 0..1 in tenths is a number, not a switch.
        let tenths = point(
            &id,
            &register(Table::Holding, ValueType::U16, 0.1, Some((0.0, 1.0))),
        );
        assert!(matches!(tenths.kind, WritableKind::Number { .. }));
    }
}
