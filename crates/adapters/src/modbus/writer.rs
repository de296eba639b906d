//! The modbus adapter's write side: commands from the cloud for registers
//! declared `writable = true`, checked here (type, bounds, what the
//! register's type can hold) and queued to the bus task, which owns the
//! link: a write never overlaps a poll on the bus.
//!
//! `done` means the device answered the write and a read-back of the same
//! register gives the words (or bit) written.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_core::command::{Command, CommandTarget, Refusal, WriteFuture, WriteOutcome};
use gateway_core::DeviceId;
use tokio::sync::{mpsc, oneshot};

use super::devices::ModbusDevice;
use super::link::Link;
use super::plan::Read;
use super::poller::Answer;
use super::registers::{encode, EncodeError, Encoded, Register};

/// Writes waiting for the bus: a handful, since each gets its answer
/// before the next command is taken.
const QUEUE: usize = 8;

/// One write for the bus task.
#[derive(Debug)]
pub struct WriteJob {
    pub unit: u8,
    pub register: Register,
    pub encoded: Encoded,
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

impl CommandTarget for ModbusTarget {
    fn serves(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device)
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
        Answer::Connection(e) => ("connection", format!("{step}: {e}"), true),
    };
    Some(Written {
        outcome: WriteOutcome::Failed(Refusal::new(reason, detail)),
        drop_link,
    })
}
