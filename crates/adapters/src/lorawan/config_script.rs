//! `codec = "js:FILE"` in `[[lorawan.device]]`, and `[lorawan]`'s limits
//! of such codecs' calls (`js_time_limit`, `js_memory_limit`,
//! `js_stack_limit`).

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::Problems;

use super::super::codecs::js::{Limits, ScriptCodec};
use super::DeviceCodec;

/// `js_time_limit`, `js_memory_limit`, `js_stack_limit`: what one call of
/// a `js:` codec may use.
pub(super) fn script_limits(table: &toml::Table, problems: &mut Problems) -> Limits {
    use gateway_core::config::values::byte_size;
    let mut limits = Limits::default();
    if let Some(v) = table.get("js_time_limit") {
        match duration::deserialize(v.clone()) {
            Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(10) => {
                limits.time = d;
            }
            _ => problems.push(
                "lorawan.js_time_limit",
                format!("expected a duration from 1ms to 10s (\"100ms\"), got {v}"),
            ),
        }
    }
    let size = |key: &str, min: usize, max: usize, problems: &mut Problems| {
        let v = table.get(key)?;
        let parsed = match v {
            toml::Value::Integer(i) => u64::try_from(*i).ok(),
            toml::Value::String(s) => byte_size::parse(s),
            _ => None,
        }
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (min..=max).contains(n));
        if parsed.is_none() {
            problems.push(
                format!("lorawan.{key}"),
                format!(
                    "expected a size from {} to {} (\"{}\"), got {v}",
                    byte_size::render(min as u64),
                    byte_size::render(max as u64),
                    byte_size::render(if key == "js_memory_limit" {
                        Limits::DEFAULT_MEMORY as u64
                    } else {
                        Limits::DEFAULT_STACK as u64
                    })
                ),
            );
        }
        parsed
    };
    if let Some(m) = size("js_memory_limit", 256 << 10, 1 << 30, problems) {
        limits.memory = m;
    }
    if let Some(s) = size("js_stack_limit", 64 << 10, Limits::MAX_STACK, problems) {
        limits.stack = s;
    }
    limits
}

/// Loads (compiles) a `js:` codec: a syntax error is a config problem,
/// with the file and line.
pub(super) fn script_codec(
    file: &str,
    variables: Option<BTreeMap<String, String>>,
    limits: Limits,
    path: &str,
    problems: &mut Problems,
) -> Option<DeviceCodec> {
    if file.is_empty() {
        problems.push(
            format!("{path}.codec"),
            "expected a file or a [js_codecs] name after js: (\"js:codecs/em300-th.js\", \"js:em300-th\")",
        );
        return None;
    }
    ScriptCodec::configured(file, variables.unwrap_or_default(), limits)
        .map(DeviceCodec::Script)
        .map_err(|detail| problems.push(format!("{path}.codec"), detail))
        .ok()
        .filter(|codec| {
            let decodes = codec.script().is_some_and(|s| s.entries().decode);
            if !decodes {
                problems.push(
                    format!("{path}.codec"),
                    format!("{file} defines no decodeUplink (nor Decode, Decoder) function"),
                );
            }
            decodes
        })
}
