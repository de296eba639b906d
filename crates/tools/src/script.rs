//! The JavaScript codec tools: `decode --codec js:FILE` (in `decode`),
//! `encode --codec js:FILE --json '{…}'` and `codec test PATH`, on the
//! same engine and workers as the running gateway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use adapters::lorawan::codecs::js::readings::{normalized_units, Fate, Leaf};
use adapters::lorawan::codecs::js::{self, vectors, Limits, ScriptCodec};

/// EX_USAGE from sysexits.h: the command line is wrong.
const EX_USAGE: u8 = 64;
/// EX_DATAERR from sysexits.h: the codec refused the input.
const EX_DATAERR: u8 = 65;

/// Loads `js:FILE` (or a bare path) with `--var KEY=VALUE` variables.
pub(crate) fn load(codec: &str, vars: &[String]) -> Result<ScriptCodec, String> {
    let file = js::script_path(codec).unwrap_or(codec);
    let variables = variables(vars)?;
    ScriptCodec::load(file, Path::new(file), variables, Limits::default())
        .map_err(|e| e.to_string())
}

fn variables(vars: &[String]) -> Result<BTreeMap<String, String>, String> {
    vars.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--var expects KEY=VALUE, got {kv:?}"))
        })
        .collect()
}

/// `decode --codec js:FILE --fport N HEX`: the whole result as JSON, then
/// the readings the gateway derives from it. `Err((lines, reason))` when
/// the codec threw (no lines) or reported errors (the result's lines).
/// `received` (ms since the epoch): the uplink's `recvTime` and the
/// codec's clock; `None`: now, on the machine's clock.
pub(crate) fn decode(
    codec: &ScriptCodec,
    bytes: Vec<u8>,
    fport: u8,
    received: Option<i64>,
) -> Result<Vec<String>, (Vec<String>, String)> {
    let decoded = match received {
        Some(ms) => codec.decode_blocking_at(bytes, fport, ms, Some(ms)),
        None => codec.decode_blocking(bytes, fport, now_ms()),
    }
    .map_err(|e| (Vec::new(), e.to_string()))?;
    let mut lines = vec![pretty(&decoded.result)];
    let errors = decoded.errors();
    if !errors.is_empty() {
        return Err((
            lines,
            format!(
                "the codec reported errors: {} (the gateway counts the uplink as a decode failure)",
                errors.join("; ")
            ),
        ));
    }
    let units = decoded
        .result
        .get("normalized")
        .map(|n| normalized_units(decoded.data(), n))
        .unwrap_or_default();
    // As the gateway takes them: the same names, and what it leaves out.
    let taken = decoded.fields();
    for (key, leaf, fate) in &taken.fields {
        lines.push(match (leaf, fate) {
            (Leaf::Number(v), Fate::Reading(name)) => {
                let renamed = if name.as_str() == key {
                    String::new()
                } else {
                    format!(" (the codec's `{key}`: the uplink's own is the radio's)")
                };
                match units.get(key) {
                    Some(unit) => format!("{name} = {v} {unit}{renamed}"),
                    None => format!("{name} = {v}{renamed}"),
                }
            }
            (Leaf::Number(v), Fate::Dropped(why)) => {
                format!("{key} = {v} (left out: {why})")
            }
            (Leaf::Text(t), _) => format!("{key} = {t:?} (text field, not a reading)"),
            (Leaf::Number(v), Fate::Text) => format!("{key} = {v}"),
        });
    }
    if taken.cut > 0 {
        lines.push(format!(
            "({} more value(s) not read: beyond the first 512, or nested deeper than 8)",
            taken.cut
        ));
    }
    Ok(lines)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `--now`'s RFC 3339 instant, in milliseconds since the epoch.
pub(crate) fn instant(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("--now {text:?}: {e} (expected RFC 3339, e.g. 2026-01-02T12:00:00Z)"))
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

#[derive(clap::Args)]
pub struct EncodeArgs {
    /// The codec: js:FILE (a vendor's JavaScript codec with encodeDownlink).
    #[arg(long)]
    codec: String,
    /// The command's data, a JSON object: `{"interval": 600}`.
    #[arg(long)]
    json: String,
    /// The FPort to give the codec (and to use when it names none).
    #[arg(long)]
    fport: Option<u8>,
    /// A codec variable, KEY=VALUE (the device's codec_variables); repeat.
    #[arg(long = "var")]
    vars: Vec<String>,
}

/// `edge-gateway encode`: prints `{"fPort":…,"bytes":[…]}`.
pub fn encode(args: &EncodeArgs) -> ExitCode {
    let data: serde_json::Value = match serde_json::from_str(&args.json) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return usage("--json must be a JSON object"),
        Err(e) => return usage(&format!("--json is not JSON: {e}")),
    };
    let codec = match load(&args.codec, &args.vars) {
        Ok(c) => c,
        Err(e) => return usage(&e),
    };
    if !codec.entries().encode {
        return usage(&format!(
            "{} defines no encodeDownlink (nor Encode, Encoder) function",
            args.codec
        ));
    }
    match codec.encode_blocking(data, args.fport) {
        Ok(out) => {
            let fport = out.fport.or(args.fport);
            // fPort first, as the tool's help shows it.
            let fport = fport.map_or("null".to_string(), |p| p.to_string());
            let bytes: Vec<String> = out.bytes.iter().map(u8::to_string).collect();
            gateway_core::outln!("{{\"fPort\":{fport},\"bytes\":[{}]}}", bytes.join(","));
            for w in out.warnings {
                eprintln!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway encode: {e}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

#[derive(clap::Args)]
pub struct CodecArgs {
    #[command(subcommand)]
    command: CodecCommand,
}

#[derive(clap::Subcommand)]
enum CodecCommand {
    /// Run ChirpStack's device-profile test vectors (test_decode_X.json,
    /// test_encode_X.json beside each X.js): a line per failing vector,
    /// then `decode: P of N passed; encode: P of M passed`; exit 1 if any
    /// fails. A vector that matches but for fields (or downlink bytes)
    /// the codec dates from the machine's clock (`new Date()`) is counted
    /// apart, with a note, not failed.
    Test {
        /// A codec file, or a directory searched recursively.
        path: PathBuf,
        /// The instant every codec's `new Date()` and `Date.now()` read
        /// (RFC 3339, e.g. 2026-01-02T12:00:00Z): every field is then
        /// judged, those following the clock too.
        #[arg(long, value_name = "RFC3339")]
        now: Option<String>,
    },
}

/// `edge-gateway codec …`.
pub fn codec(args: &CodecArgs) -> ExitCode {
    match &args.command {
        CodecCommand::Test { path, now } => test(path, now.as_deref()),
    }
}

fn test(path: &Path, now: Option<&str>) -> ExitCode {
    if !path.exists() {
        return usage(&format!("{} does not exist", path.display()));
    }
    let clock_ms = match now.map(instant).transpose() {
        Ok(clock_ms) => clock_ms,
        Err(e) => return usage(&e),
    };
    let summary = vectors::run(path, Limits::default(), clock_ms);
    for file in &summary.without_vectors {
        eprintln!("note: {file} has no vectors beside it (ChirpStack's test_decode_/test_encode_ JSON, or a *-codec.yaml of The Things Network's device repository naming it)");
    }
    for line in &summary.clock_notes {
        eprintln!("{}", printable(line));
    }
    for line in &summary.failures {
        gateway_core::outln!("{}", printable(line));
    }
    if summary.codecs == 0 {
        gateway_core::outln!("no codec with test vectors under {}", path.display());
    }
    gateway_core::outln!("{}", summary.last_line());
    if summary.all_passed() && summary.codecs > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A line with a codec's own words in it (its exception's message), its
/// control characters spelt out: a hostile codec's `ESC[…` or NUL reached
/// the terminal as they were.
fn printable(line: &str) -> String {
    line.chars()
        .flat_map(|c| {
            let escaped = (c.is_control() && c != '\t').then(|| c.escape_default());
            escaped
                .into_iter()
                .flatten()
                .chain((!c.is_control() || c == '\t').then_some(c))
        })
        .collect()
}

fn usage(e: &str) -> ExitCode {
    eprintln!("edge-gateway: {e}");
    ExitCode::from(EX_USAGE)
}

#[cfg(test)]
mod tests {
    /// A codec's exception text cannot drive the terminal.
    #[test]
    fn control_characters_of_a_codecs_words_are_spelt_out() {
        assert_eq!(
            super::printable("bad\u{1b}[31m red\0 and\ttab"),
            "bad\\u{1b}[31m red\\u{0} and\ttab"
        );
    }
}
