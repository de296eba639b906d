//! `[[adapter]] type = "modbus"` (one per bus: a TCP server or a serial
//! line) and the `[[modbus.device]]` section (the units on it and their
//! register maps).
//!
//! ```toml
//! [[adapter]]
//! type = "modbus"
//! name = "meters"
//! path = "/dev/ttyUSB0"          # RTU; or url = "tcp://192.168.1.20:502"
//! baud = 9600
//!
//! [[modbus.device]]
//! id = "meter-kitchen"
//! unit = 1
//! profile = "eastron_sdm120"
//! ```
//!
//! The devices are in `devices` (`[[modbus.device]]`), read from the
//! file's root so a device naming an adapter that does not exist (or none,
//! when there are several) is a problem at `validate`, not a silent device
//! that never reads.

use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, Problems};
use gateway_core::Adapter;
use serde::Deserialize;

use crate::device_section::check_poll;
use crate::registry::{AdapterKind, BuildContext, Declaration};

/// The `type` of the adapter.
pub const KIND: &str = super::kind::MODBUS.info.kind;
/// Modbus TCP's registered port.
pub const DEFAULT_PORT: u16 = 502;
const DEFAULT_POLL: Duration = Duration::from_secs(10);
/// libmodbus waits 500 ms; inverters behind a Wi-Fi dongle need more
/// (libmodbus #776), and a second is still short beside a 10 s poll.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Registers of hole bridged by one read: SDM meters leave 4 between
/// their values; more risks exception 2 on devices with sparse maps (then
/// split and remembered, see `plan`).
const DEFAULT_MAX_GAP: u16 = 8;
const DEFAULT_BAUD: u32 = 9600;

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

/// A serial line, as `serial_line` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialSettings {
    pub path: PathBuf,
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
    /// The adapter hears its own transmission: every request's bytes come
    /// back before the answer (`echo = true`: many USB and TTL RS-485
    /// adapters, and half-duplex transceivers whose receiver stays enabled
    /// while sending).
    pub echo: bool,
}

impl SerialSettings {
    /// The silence the RTU standard requires between frames: 3.5
    /// characters, fixed at 1.75 ms above 19 200 baud (Modbus over Serial
    /// Line V1.02 §2.5.1.1).
    pub fn inter_frame_gap(&self) -> Duration {
        if self.baud > 19_200 {
            return Duration::from_micros(1750);
        }
        let bits_per_char = 1
            + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits);
        Duration::from_micros(u64::from(bits_per_char) * 3_500_000 / u64::from(self.baud.max(1)))
    }
}

/// Where a bus is.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Tcp { host: String, port: u16 },
    Rtu(SerialSettings),
}

impl Transport {
    /// For logs: `tcp://host:port` or the port's path.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp { host, port } => format!("tcp://{host}:{port}"),
            Self::Rtu(s) => s.path.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModbus {
    name: String,
    url: Option<String>,
    path: Option<PathBuf>,
    baud: Option<u32>,
    data_bits: Option<u8>,
    parity: Option<Parity>,
    stop_bits: Option<u8>,
    echo: Option<bool>,
    #[serde(default = "default_poll", with = "duration")]
    poll: Duration,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default = "default_max_backoff", with = "duration")]
    max_backoff: Duration,
    #[serde(default = "default_max_gap")]
    max_gap: u16,
}

fn default_poll() -> Duration {
    DEFAULT_POLL
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_max_backoff() -> Duration {
    DEFAULT_MAX_BACKOFF
}
fn default_max_gap() -> u16 {
    DEFAULT_MAX_GAP
}

/// A checked `type = "modbus"` adapter: one bus.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusConfig {
    pub name: String,
    pub transport: Transport,
    /// How often each device is read, unless it says otherwise.
    pub poll: Duration,
    /// How long one answer may take.
    pub timeout: Duration,
    /// Longest wait before retrying a silent device or reconnecting.
    pub max_backoff: Duration,
    /// Default hole bridged by one read, in registers (or bits).
    pub max_gap: u16,
}

/// `tcp://host[:port]` → (host, port).
pub fn parse_tcp_url(url: &str) -> Result<(String, u16), String> {
    let expected = "expected tcp://host or tcp://host:port";
    let rest = url
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("{expected}, got \"{url}\""))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{expected}, got \"{url}\""))?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("{expected}, got \"{url}\""));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("expected a port from 1 to 65535, got \"{p}\""))?,
    };
    Ok((host, port))
}

impl AdapterKind for ModbusConfig {
    const DECLARATION: Declaration = super::kind::MODBUS;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawModbus = load::section(table, path, problems)?;
        let before = problems.len();
        let serial_keys = [
            ("baud", raw.baud.is_some()),
            ("data_bits", raw.data_bits.is_some()),
            ("parity", raw.parity.is_some()),
            ("stop_bits", raw.stop_bits.is_some()),
            ("echo", raw.echo.is_some()),
        ];
        let transport = match (&raw.url, &raw.path) {
            (Some(_), Some(_)) | (None, None) => {
                problems.push(
                    path,
                    "expected either url = \"tcp://host:502\" (Modbus TCP) or path = \"/dev/ttyUSB0\" (Modbus RTU)",
                );
                None
            }
            (Some(url), None) => {
                for (key, set) in serial_keys {
                    if set {
                        problems.push(
                            format!("{path}.{key}"),
                            "only a serial line (path) takes it",
                        );
                    }
                }
                match parse_tcp_url(url) {
                    Ok((host, port)) => Some(Transport::Tcp { host, port }),
                    Err(e) => {
                        problems.push(format!("{path}.url"), e);
                        None
                    }
                }
            }
            (None, Some(port)) => {
                let s = SerialSettings {
                    path: port.clone(),
                    baud: raw.baud.unwrap_or(DEFAULT_BAUD),
                    data_bits: raw.data_bits.unwrap_or(8),
                    parity: raw.parity.unwrap_or_default(),
                    stop_bits: raw.stop_bits.unwrap_or(1),
                    echo: raw.echo.unwrap_or(false),
                };
                if s.path.as_os_str().is_empty() {
                    problems.push(format!("{path}.path"), "expected a serial port path");
                }
                if s.baud == 0 {
                    problems.push(format!("{path}.baud"), "expected a positive baud rate");
                }
                if !(5..=8).contains(&s.data_bits) {
                    problems.push(
                        format!("{path}.data_bits"),
                        format!("expected 5 to 8, got {}", s.data_bits),
                    );
                }
                if !(1..=2).contains(&s.stop_bits) {
                    problems.push(
                        format!("{path}.stop_bits"),
                        format!("expected 1 or 2, got {}", s.stop_bits),
                    );
                }
                Some(Transport::Rtu(s))
            }
        };
        check_poll(raw.poll, &format!("{path}.poll"), problems);
        if raw.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "expected more than 0s");
        }
        if raw.max_backoff.is_zero() {
            problems.push(format!("{path}.max_backoff"), "expected more than 0s");
        }
        if problems.len() > before {
            return None;
        }
        Some(Self {
            name: raw.name,
            transport: transport?,
            poll: raw.poll,
            timeout: raw.timeout,
            max_backoff: raw.max_backoff,
            max_gap: raw.max_gap,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        let devices = ctx.sections.modbus.devices_of(&self.name);
        Box::new(super::source::ModbusSource::new(self.clone(), devices))
    }

    fn template() -> String {
        template()
    }
}

/// The modbus part of the `configfile` template.
pub fn template() -> String {
    crate::registry::render_template(
        include_str!("template.toml"),
        &[
            ("port", DEFAULT_PORT.to_string()),
            ("baud", DEFAULT_BAUD.to_string()),
            ("poll", duration::render(DEFAULT_POLL).to_string()),
            ("timeout", duration::render(DEFAULT_TIMEOUT).to_string()),
            ("backoff", duration::render(DEFAULT_MAX_BACKOFF).to_string()),
            ("max_gap", DEFAULT_MAX_GAP.to_string()),
        ],
    )
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
