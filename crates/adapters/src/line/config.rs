//! What `[[adapter]] type = "tcp_line"` and `type = "serial_line"` share:
//! the line format, its columns and the line length limit, checked once.

use gateway_core::config::Problems;
use gateway_core::MetricName;
use serde::Deserialize;

use super::decode::LineDecoder;
use crate::payload::PayloadFormat;

/// How lines are written, as the config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FormatName {
    #[default]
    Csv,
    Json,
    Influx,
    Kv,
}

/// An ESP32 + BME680 node's CSV line: `temperature,pressure,humidity,gas`.
#[cfg(feature = "tcp_line")]
pub(crate) const SEED_COLUMNS: [&str; 4] = ["temperature", "pressure", "humidity", "gas"];
pub(crate) const DEFAULT_MAX_LINE: usize = 4096;
/// A line's limit may not exceed this: one line is one sensor sample.
const MAX_MAX_LINE: usize = 1024 * 1024;
pub(crate) fn default_max_line() -> usize {
    DEFAULT_MAX_LINE
}

/// The format fields both kinds share, checked once.
pub(crate) fn line_decoder(
    format: FormatName,
    columns: &[MetricName],
    max_line_bytes: usize,
    path: &str,
    problems: &mut Problems,
) -> Option<LineDecoder> {
    if !(16..=MAX_MAX_LINE).contains(&max_line_bytes) {
        problems.push(
            format!("{path}.max_line_bytes"),
            format!("expected 16 to {MAX_MAX_LINE}, got {max_line_bytes}"),
        );
    }
    let format = match format {
        FormatName::Csv if columns.is_empty() => {
            problems.push(
                format!("{path}.columns"),
                "format \"csv\" needs a columns list",
            );
            return None;
        }
        FormatName::Csv => PayloadFormat::Csv {
            columns: columns.to_vec(),
        },
        _ if !columns.is_empty() => {
            problems.push(
                format!("{path}.columns"),
                "only format \"csv\" takes columns",
            );
            return None;
        }
        FormatName::Json => PayloadFormat::Json,
        FormatName::Influx => PayloadFormat::Influx,
        FormatName::Kv => PayloadFormat::Kv,
    };
    Some(LineDecoder::new(format))
}

/// The BME680 node's columns as a TOML list, for the template.
#[cfg(feature = "tcp_line")]
pub(crate) fn seed_columns() -> String {
    let quoted: Vec<String> = SEED_COLUMNS.iter().map(|c| format!("\"{c}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use gateway_core::config::Problems;

    use crate::registry::AdapterKind;

    /// `K`'s template, its `[[adapter]]` uncommented, parses as `K`.
    pub(crate) fn assert_template_parses<K: AdapterKind>() {
        let table = uncommented(&K::template(), K::KIND);
        let mut p = Problems::default();
        assert!(K::from_table(table, "a", &mut p).is_some(), "{p}");
    }

    /// The commented-out `[[adapter]]` of a template, uncommented, with
    /// `type` checked and removed.
    pub(crate) fn uncommented(template: &str, kind: &str) -> toml::Value {
        let text: String = template
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.starts_with(' ') && !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let mut table = doc["adapter"].as_array().unwrap()[0].clone();
        let t = table.as_table_mut().unwrap().remove("type").unwrap();
        assert_eq!(t.as_str(), Some(kind));
        table
    }
}
