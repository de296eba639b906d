//! `edge-gateway modbus scan`: reads a range of one device's registers
//! and prints each in every type and byte/word order, the way an
//! installer finds a register map on site. It goes through the adapter's
//! own link (timeouts, RTU silence and flush), so what it reads is what
//! the adapter will read.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::modbus::config::{parse_tcp_url, Parity, SerialSettings, Transport};
use crate::modbus::link::Link;
use crate::modbus::plan::Read;
use crate::modbus::poller::Answer;
use crate::modbus::registers::Table;
use crate::modbus::scan::{render_bits, render_registers};

/// EX_USAGE from sysexits.h.
const EX_USAGE: u8 = 64;
/// EX_UNAVAILABLE: the bus could not be opened.
const EX_UNAVAILABLE: u8 = 69;

#[derive(clap::Args)]
pub struct ModbusArgs {
    #[command(subcommand)]
    command: ModbusCommand,
}

#[derive(clap::Subcommand)]
enum ModbusCommand {
    /// Read a range of registers (or coils) and print each in every type
    /// and byte/word order.
    Scan(ScanArgs),
}

#[derive(clap::Args)]
struct ScanArgs {
    /// Modbus TCP: `tcp://host:502`.
    #[arg(long, conflicts_with = "path", required_unless_present = "path")]
    url: Option<String>,
    /// Modbus RTU: the serial port (`/dev/ttyUSB0`).
    #[arg(long)]
    path: Option<PathBuf>,
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    #[arg(long, default_value_t = 8)]
    data_bits: u8,
    /// none, even or odd.
    #[arg(long, default_value = "none")]
    parity: String,
    #[arg(long, default_value_t = 1)]
    stop_bits: u8,
    /// The RS-485 adapter sends every request's bytes back (as `echo =
    /// true` in gateway.toml): they are read and dropped before the answer.
    #[arg(long)]
    echo: bool,
    /// The device's unit id (slave address).
    #[arg(long, default_value_t = 1)]
    unit: u8,
    /// holding, input, coil or discrete.
    #[arg(long, default_value = "holding")]
    table: String,
    /// First 0-based protocol address (input register "30001" is 0).
    #[arg(long, default_value_t = 0)]
    from: u16,
    /// How many registers (or bits).
    #[arg(long, default_value_t = 50)]
    count: u16,
    /// How long one answer may take.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Runs the subcommand: the table on stdout, problems on stderr.
pub fn main(args: &ModbusArgs) -> ExitCode {
    let ModbusCommand::Scan(scan_args) = &args.command;
    let (transport, table) = match parse(scan_args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("edge-gateway modbus scan: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match crate::registry::tool_runtime() {
        Ok(rt) => rt.block_on(scan(scan_args, &transport, table)),
        Err(e) => {
            eprintln!("edge-gateway modbus scan: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(a: &ScanArgs) -> Result<(Transport, Table), String> {
    let table = match a.table.as_str() {
        "holding" => Table::Holding,
        "input" => Table::Input,
        "coil" => Table::Coil,
        "discrete" => Table::Discrete,
        other => {
            return Err(format!(
                "--table: expected holding, input, coil or discrete, got \"{other}\""
            ))
        }
    };
    if a.count == 0 || u32::from(a.from) + u32::from(a.count) > 65_536 {
        return Err("--count: expected 1 or more registers ending at 65535 at most".into());
    }
    let transport = match (&a.url, &a.path) {
        (Some(url), _) => {
            let (host, port) = parse_tcp_url(url).map_err(|e| format!("--url: {e}"))?;
            Transport::Tcp { host, port }
        }
        (None, Some(path)) => {
            let parity = match a.parity.as_str() {
                "none" => Parity::None,
                "even" => Parity::Even,
                "odd" => Parity::Odd,
                other => {
                    return Err(format!(
                        "--parity: expected none, even or odd, got \"{other}\""
                    ))
                }
            };
            Transport::Rtu(SerialSettings {
                path: path.clone(),
                baud: a.baud,
                data_bits: a.data_bits,
                parity,
                stop_bits: a.stop_bits,
                echo: a.echo,
            })
        }
        (None, None) => return Err("give --url tcp://host:502 or --path /dev/ttyUSB0".into()),
    };
    Ok((transport, table))
}

async fn scan(a: &ScanArgs, transport: &Transport, table: Table) -> ExitCode {
    let mut link = match Link::open(transport, a.timeout).await {
        Ok(link) => link,
        Err(e) => {
            eprintln!(
                "edge-gateway modbus scan: cannot open {}: {e}",
                transport.describe()
            );
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    gateway_core::outln!(
        "{} unit {} {} registers {}..{} (0-based protocol addresses)",
        transport.describe(),
        a.unit,
        table.as_str(),
        a.from,
        u32::from(a.from) + u32::from(a.count) - 1
    );
    let mut answered = false;
    let end = u32::from(a.from) + u32::from(a.count);
    let mut start = u32::from(a.from);
    while start < end {
        let count = (end - start).min(u32::from(table.max_per_read()));
        // Both fit u16: the range was checked against 65 536.
        let read = Read {
            table,
            start: start as u16,
            count: count as u16,
            members: Vec::new(),
        };
        match link.read(a.unit, &read).await {
            Answer::Words(words) => {
                answered = true;
                gateway_core::out!("{}", render_registers(read.start, &words));
            }
            Answer::Bits(bits) => {
                answered = true;
                gateway_core::out!("{}", render_bits(read.start, &bits));
            }
            Answer::Exception(code) => {
                answered = true;
                gateway_core::outln!(
                    "{start}..{}: exception {code} ({})",
                    start + count - 1,
                    exception_text(code)
                );
            }
            other => {
                eprintln!(
                    "edge-gateway modbus scan: {start}..{}: {}",
                    start + count - 1,
                    failure_text(&other)
                );
                if matches!(other, Answer::Connection(_)) {
                    return ExitCode::from(EX_UNAVAILABLE);
                }
                if !link.is_serial() {
                    // A late answer would be read as the next one's.
                    match Link::open(transport, a.timeout).await {
                        Ok(l) => link = l,
                        Err(_) => return ExitCode::from(EX_UNAVAILABLE),
                    }
                }
            }
        }
        start += count;
    }
    if answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn exception_text(code: u8) -> &'static str {
    match code {
        1 => "illegal function: the device has no such table",
        2 => "illegal data address: not in the device's map",
        3 => "illegal data value: try a shorter --count",
        4 => "server device failure",
        6 => "server busy",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "see the device's manual",
    }
}

fn failure_text(answer: &Answer) -> String {
    match answer {
        Answer::Timeout => "no answer within --timeout (wrong unit, baud rate or wiring?)".into(),
        Answer::Crc => "a garbled answer (CRC): check baud rate, parity, termination".into(),
        Answer::Mismatch => "an answer to another request".into(),
        Answer::OutOfStep => {
            "answers out of step (late or doubled answers: a buffering converter?); dropped".into()
        }
        Answer::BadEcho => {
            "the request's own bytes did not come back as sent (--echo): does the adapter echo?"
                .into()
        }
        Answer::Echo => "the request's own bytes came back: the adapter echoes (add --echo)".into(),
        Answer::Connection(e) => format!("the connection failed: {e}"),
        _ => "unexpected answer".into(),
    }
}
