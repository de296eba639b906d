//! `[[adapter]] type = "serial_line"`: lines from a serial port.

use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, Problems};
use gateway_core::{DeviceId, MetricName};
use serde::Deserialize;

use super::config::{default_max_line, line_decoder, FormatName, DEFAULT_MAX_LINE};
use super::decode::LineDecoder;

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    #[default]
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSerial {
    name: String,
    path: PathBuf,
    #[serde(default = "default_baud")]
    baud: u32,
    #[serde(default = "default_data_bits")]
    data_bits: u8,
    #[serde(default)]
    parity: Parity,
    #[serde(default = "default_stop_bits")]
    stop_bits: u8,
    #[serde(default)]
    format: FormatName,
    #[serde(default)]
    columns: Vec<MetricName>,
    #[serde(default)]
    device: Option<DeviceId>,
    #[serde(default = "default_max_line")]
    max_line_bytes: usize,
    #[serde(default = "default_max_backoff", with = "duration")]
    max_backoff: Duration,
}

pub(crate) const DEFAULT_BAUD: u32 = 115_200;
fn default_baud() -> u32 {
    DEFAULT_BAUD
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
pub(crate) fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// A checked `serial_line` config.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialLineConfig {
    pub name: String,
    /// The port, best a stable `/dev/serial/by-id/…` name.
    pub path: PathBuf,
    pub baud: u32,
    /// 5 to 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
    pub decoder: LineDecoder,
    /// The device of lines that name none (without it they are counted
    /// `no_device`).
    pub device: Option<DeviceId>,
    pub max_line_bytes: usize,
    /// Longest wait between attempts to reopen a vanished port.
    pub max_backoff: Duration,
}

impl crate::registry::AdapterKind for SerialLineConfig {
    const DECLARATION: crate::registry::Declaration = super::kind::SERIAL_LINE;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawSerial = load::section(table, path, problems)?;
        let before = problems.len();
        let decoder = line_decoder(raw.format, &raw.columns, raw.max_line_bytes, path, problems);
        if raw.path.as_os_str().is_empty() {
            problems.push(format!("{path}.path"), "expected a serial port path");
        }
        if raw.baud == 0 {
            problems.push(format!("{path}.baud"), "expected a positive baud rate");
        }
        if !(5..=8).contains(&raw.data_bits) {
            problems.push(
                format!("{path}.data_bits"),
                format!("expected 5 to 8, got {}", raw.data_bits),
            );
        }
        if !(1..=2).contains(&raw.stop_bits) {
            problems.push(
                format!("{path}.stop_bits"),
                format!("expected 1 or 2, got {}", raw.stop_bits),
            );
        }
        if raw.max_backoff.is_zero() {
            problems.push(format!("{path}.max_backoff"), "expected more than 0s");
        }
        let decoder = decoder?;
        if problems.len() > before {
            return None;
        }
        Some(Self {
            name: raw.name,
            path: raw.path,
            baud: raw.baud,
            data_bits: raw.data_bits,
            parity: raw.parity,
            stop_bits: raw.stop_bits,
            decoder,
            device: raw.device,
            max_line_bytes: raw.max_line_bytes,
            max_backoff: raw.max_backoff,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, _ctx: &crate::registry::BuildContext) -> Box<dyn gateway_core::Adapter> {
        Box::new(super::serial::SerialLineSource::new(self.clone()))
    }

    fn template() -> String {
        serial_template()
    }
}

/// The `type = "serial_line"` part of the `configfile` template.
pub fn serial_template() -> String {
    crate::registry::render_template(
        include_str!("template_serial.toml"),
        &[
            ("baud", DEFAULT_BAUD.to_string()),
            ("max_line", DEFAULT_MAX_LINE.to_string()),
            (
                "backoff",
                duration::render(default_max_backoff()).to_string(),
            ),
        ],
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::registry::AdapterKind;

    #[test]
    fn serial_defaults_and_limits() {
        let mut p = Problems::default();
        let t = "name = \"relay\"\npath = \"/dev/ttyUSB0\"\ncolumns = [\"mac\", \"t\"]";
        let c = SerialLineConfig::from_table(toml::from_str(t).unwrap(), "a", &mut p).unwrap();
        assert_eq!((c.baud, c.data_bits, c.stop_bits), (115_200, 8, 1));
        assert_eq!(c.parity, Parity::None);
        let t = "name = \"relay\"\npath = \"/dev/ttyUSB0\"\nformat = \"kv\"\ndata_bits = 9\nstop_bits = 3\nparity = \"mark\"";
        assert!(SerialLineConfig::from_table(toml::from_str(t).unwrap(), "a", &mut p).is_none());
        let t = "name = \"relay\"\npath = \"/dev/ttyUSB0\"\nformat = \"kv\"\ndata_bits = 9\nstop_bits = 3";
        let mut p = Problems::default();
        assert!(SerialLineConfig::from_table(toml::from_str(t).unwrap(), "a", &mut p).is_none());
        let text = p.to_string();
        assert!(
            text.contains("a.data_bits") && text.contains("a.stop_bits"),
            "{text}"
        );
    }

    #[test]
    fn the_template_parses_once_uncommented() {
        super::super::config::tests::assert_template_parses::<SerialLineConfig>();
    }
}
