//! `edge-gateway decode`: run a payload codec, or verify and decrypt a whole
//! PHYPayload, on bytes pasted from a network server's console (with
//! `lorawan`); decode one BLE advertisement (with `ble`, in `decode_ble`).
//! The same functions as the running gateway, so what decodes here decodes
//! there.

use std::process::ExitCode;

#[cfg(feature = "lorawan")]
use adapters::lorawan::codecs::{Codec, DecodedValue};
#[cfg(feature = "lorawan")]
use adapters::lorawan::frame::{self, Key};
#[cfg(feature = "lorawan")]
use gateway_core::Timestamp;

/// EX_USAGE from sysexits.h: the command line is wrong.
const EX_USAGE: u8 = 64;
/// EX_DATAERR from sysexits.h: the input bytes do not decode.
const EX_DATAERR: u8 = 65;

#[derive(clap::Args)]
pub struct DecodeArgs {
    #[cfg(feature = "ble")]
    #[command(flatten)]
    ble: crate::decode_ble::BleArgs,
    #[cfg(feature = "lorawan")]
    #[command(flatten)]
    lorawan: LorawanArgs,
}

#[cfg(feature = "lorawan")]
#[derive(clap::Args)]
struct LorawanArgs {
    /// Payload codec: compact_i16, bitpacked, batch, cayenne_lpp, milesight,
    /// elsys, dragino_lht65, browan_tbhh100; or js:FILE, a vendor's
    /// JavaScript codec (its whole result as JSON, then the readings).
    #[arg(long)]
    codec: Option<String>,
    /// The uplink's FPort, for a js: codec (default 1).
    #[arg(long)]
    fport: Option<u8>,
    /// A js: codec's variable, KEY=VALUE (the device's codec_variables);
    /// repeat for more.
    #[arg(long = "var")]
    vars: Vec<String>,
    /// When the uplink was received (RFC 3339), for a js: codec: its
    /// `recvTime`, and the instant its `new Date()` reads (default: now),
    /// for a payload captured earlier by a codec that dates it so.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// A whole PHYPayload in hex: verify its MIC and decrypt it.
    #[arg(long)]
    phy: Option<String>,
    /// NwkSKey (32 hex digits, or `env:VAR`), with --phy.
    #[arg(long)]
    nwk_s_key: Option<String>,
    /// AppSKey (32 hex digits, or `env:VAR`), with --phy.
    #[arg(long)]
    app_s_key: Option<String>,
    /// AppKey (32 hex digits, or `env:VAR`), with --phy of a join-request
    /// (its MIC checked) or a join-accept (decrypted and checked).
    #[arg(long)]
    app_key: Option<String>,
    /// With a join-accept: the DevNonce of its join-request (hex), to
    /// print the session keys derived from it.
    #[arg(long, value_parser = |s: &str| u16::from_str_radix(s, 16))]
    dev_nonce: Option<u16>,
    /// The device's next expected frame counter, to rebuild the 32-bit FCnt
    /// from the 16 bits on air. 0 takes the on-air value as is.
    #[arg(long, default_value_t = 0)]
    next_fcnt: u32,
    /// A FRMPayload in hex, for --codec alone.
    hex: Option<String>,
}

pub(super) enum Failure {
    Usage(String),
    Data(String),
    /// Input that parsed but that no decoder took: the lines say why
    /// (stdout), then the reason (stderr) and EX_DATAERR.
    Refused {
        lines: Vec<String>,
        reason: String,
    },
}

/// Runs the subcommand: values on stdout, the error on stderr.
pub fn run(args: &DecodeArgs) -> ExitCode {
    match decode(args) {
        Ok(lines) => {
            for line in lines {
                gateway_core::outln!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(e)) => {
            eprintln!("edge-gateway decode: {e}");
            ExitCode::from(EX_USAGE)
        }
        Err(Failure::Data(e)) => {
            eprintln!("edge-gateway decode: {e}");
            ExitCode::from(EX_DATAERR)
        }
        Err(Failure::Refused { lines, reason }) => {
            for line in lines {
                gateway_core::outln!("{line}");
            }
            eprintln!("edge-gateway decode: {reason}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

fn decode(args: &DecodeArgs) -> Result<Vec<String>, Failure> {
    #[cfg(feature = "ble")]
    if args.ble.given() {
        #[cfg(feature = "lorawan")]
        if args.lorawan.given() {
            return Err(Failure::Usage(
                "--ble/--ble-line and the LoRaWAN options do not go together".into(),
            ));
        }
        return crate::decode_ble::decode(&args.ble);
    }
    not_ble(args)
}

#[cfg(feature = "lorawan")]
fn not_ble(args: &DecodeArgs) -> Result<Vec<String>, Failure> {
    decode_lorawan(&args.lorawan)
}

#[cfg(not(feature = "lorawan"))]
fn not_ble(_: &DecodeArgs) -> Result<Vec<String>, Failure> {
    Err(Failure::Usage(format!(
        "expected {}",
        crate::decode_ble::USAGE
    )))
}

#[cfg(feature = "lorawan")]
fn usage() -> String {
    let lorawan = "--codec NAME HEX, or --phy HEX --nwk-s-key K --app-s-key K [--codec NAME]";
    #[cfg(feature = "ble")]
    return format!("expected {lorawan}, or {}", crate::decode_ble::USAGE);
    #[cfg(not(feature = "ble"))]
    return format!("expected {lorawan}");
}

#[cfg(all(feature = "lorawan", feature = "ble"))]
impl LorawanArgs {
    fn given(&self) -> bool {
        self.codec.is_some()
            || self.fport.is_some()
            || !self.vars.is_empty()
            || self.now.is_some()
            || self.phy.is_some()
            || self.nwk_s_key.is_some()
            || self.app_s_key.is_some()
            || self.app_key.is_some()
            || self.next_fcnt != 0
            || self.hex.is_some()
    }
}

#[cfg(feature = "lorawan")]
fn decode_lorawan(args: &LorawanArgs) -> Result<Vec<String>, Failure> {
    if let Some(codec) = args
        .codec
        .as_deref()
        .filter(|c| adapters::lorawan::codecs::js::script_path(c).is_some())
    {
        return decode_script(args, codec);
    }
    if args.fport.is_some() || !args.vars.is_empty() || args.now.is_some() {
        return Err(Failure::Usage(
            "--fport, --var and --now go with --codec js:FILE".into(),
        ));
    }
    let codec = args
        .codec
        .as_deref()
        .map(|name| {
            let codec = name.parse::<Codec>()?;
            // No log subscriber in this command: say it on stderr.
            if codec.name() != name {
                eprintln!(
                    "note: codec name {name:?} is deprecated; use {:?} (same format)",
                    codec.name()
                );
            }
            Ok::<_, adapters::lorawan::codecs::UnknownCodec>(codec)
        })
        .transpose()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let phy_only = args.nwk_s_key.is_some() || args.app_s_key.is_some() || args.next_fcnt != 0;
    if args.phy.is_none() && phy_only {
        return Err(Failure::Usage(
            "--nwk-s-key, --app-s-key and --next-fcnt go with --phy".into(),
        ));
    }
    match (&args.phy, &args.hex, codec) {
        (Some(phy), None, codec) => decode_phy(args, phy, codec),
        (None, Some(hex), Some(codec)) => {
            let bytes = from_hex(hex)?;
            let values = codec
                .decode(&bytes)
                .map_err(|e| Failure::Data(e.to_string()))?;
            Ok(values.iter().map(line).collect())
        }
        (Some(_), Some(_), _) => Err(Failure::Usage(
            "give either --phy HEX or a payload HEX, not both".into(),
        )),
        _ => Err(Failure::Usage(usage())),
    }
}

/// `--codec js:FILE HEX`: the payload through a vendor's codec.
#[cfg(feature = "lorawan")]
fn decode_script(args: &LorawanArgs, codec: &str) -> Result<Vec<String>, Failure> {
    let script = crate::script::load(codec, &args.vars).map_err(Failure::Usage)?;
    let received = args
        .now
        .as_deref()
        .map(crate::script::instant)
        .transpose()
        .map_err(Failure::Usage)?;
    match (&args.hex, &args.phy) {
        (Some(hex), None) => {
            let bytes = from_hex(hex)?;
            crate::script::decode(&script, bytes, args.fport.unwrap_or(1), received)
                .map_err(|(lines, reason)| Failure::Refused { lines, reason })
        }
        (None, Some(phy)) => {
            if args.fport.is_some() {
                return Err(Failure::Usage(
                    "--fport goes with a payload HEX; a PHYPayload carries its own".into(),
                ));
            }
            let (mut lines, payload) = open_phy(args, phy)?;
            let Some((fport, payload)) = payload else {
                return Err(Failure::Data(
                    "no application payload (FPort 0 or none) for the codec".into(),
                ));
            };
            match crate::script::decode(&script, payload, fport, received) {
                Ok(more) => {
                    lines.extend(more);
                    Ok(lines)
                }
                Err((more, reason)) => {
                    lines.extend(more);
                    Err(Failure::Refused { lines, reason })
                }
            }
        }
        _ => Err(Failure::Usage(usage())),
    }
}

#[cfg(feature = "lorawan")]
fn decode_phy(args: &LorawanArgs, phy: &str, codec: Option<Codec>) -> Result<Vec<String>, Failure> {
    if let Some(lines) = crate::decode_join::decode(phy, args.app_key.as_deref(), args.dev_nonce)? {
        return Ok(lines);
    }
    let (mut out, payload) = open_phy(args, phy)?;
    if let Some(codec) = codec {
        let (_, payload) = payload.ok_or_else(|| {
            Failure::Data("no application payload (FPort 0 or none) for the codec".into())
        })?;
        let values = codec
            .decode(&payload)
            .map_err(|e| Failure::Data(e.to_string()))?;
        out.extend(values.iter().map(line));
    }
    Ok(out)
}

/// The lines describing a frame, and its FPort and application payload
/// when it has one.
#[cfg(feature = "lorawan")]
type Opened = (Vec<String>, Option<(u8, Vec<u8>)>);

/// A data frame's MIC checked and its payload decrypted.
#[cfg(feature = "lorawan")]
fn open_phy(args: &LorawanArgs, phy: &str) -> Result<Opened, Failure> {
    let nwk = key("--nwk-s-key", args.nwk_s_key.as_deref())?;
    let app = key("--app-s-key", args.app_s_key.as_deref())?;
    let bytes = from_hex(phy)?;
    let head = frame::peek(&bytes).map_err(|e| Failure::Data(e.to_string()))?;
    let fcnt = if args.next_fcnt == 0 {
        u32::from(head.fcnt16)
    } else {
        frame::full_fcnt(args.next_fcnt, head.fcnt16)
    };
    let f = frame::open(&bytes, &nwk, &app, fcnt).map_err(|e| {
        Failure::Data(format!(
            "{e} (DevAddr {:08X}, FCnt {fcnt}): wrong NwkSKey, or try --next-fcnt",
            head.dev_addr
        ))
    })?;
    let mut out = vec![
        format!("dev_addr = {:08X}", f.dev_addr),
        format!("mtype = {:?}", f.mtype),
        format!("fcnt = {}", f.fcnt),
        format!(
            "fport = {}",
            f.fport.map_or("none".to_string(), |p| p.to_string())
        ),
        "mic = valid".to_string(),
    ];
    let names: Vec<&str> = f.mac_commands.iter().map(|c| c.name).collect();
    out.push(format!(
        "mac_commands = {} [{}]",
        names.len(),
        names.join(", ")
    ));
    out.push(format!("payload = {}", to_hex(&f.payload)));
    let payload = f
        .application_payload()
        .zip(f.fport)
        .map(|(p, port)| (port, p.to_vec()));
    Ok((out, payload))
}

#[cfg(feature = "lorawan")]
/// `temperature = 21.5`, or `value = 21.5 @ 2026-11-21T10:00:00Z`.
fn line(v: &DecodedValue) -> String {
    match v.time_ms {
        Some(ms) => match Timestamp::from_millis(ms) {
            Ok(t) => format!("{} = {} @ {t}", v.metric, v.value),
            Err(_) => format!("{} = {} @ {ms} ms", v.metric, v.value),
        },
        None => format!("{} = {}", v.metric, v.value),
    }
}

#[cfg(feature = "lorawan")]
/// A key from hex, or from the environment with `env:VAR`.
fn key(flag: &str, arg: Option<&str>) -> Result<Key, Failure> {
    let arg = arg.ok_or_else(|| Failure::Usage(format!("--phy needs {flag}")))?;
    secret(flag, arg)?
        .parse()
        .map_err(|e| Failure::Usage(format!("{flag}: {e}")))
}

/// A secret's text from the argument, or from the environment with
/// `env:VAR` so it stays out of shell history and `ps`. The error never
/// repeats the secret.
pub(super) fn secret(flag: &str, arg: &str) -> Result<String, Failure> {
    let text = match arg.strip_prefix("env:") {
        Some(var) => std::env::var(var).map_err(|_| {
            Failure::Usage(format!("{flag}: environment variable {var} is not set"))
        })?,
        None => arg.to_string(),
    };
    Ok(text.trim().to_string())
}

pub(super) fn from_hex(text: &str) -> Result<Vec<u8>, Failure> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bad = || Failure::Data(not_hex(text));
    if !digits.len().is_multiple_of(2) {
        return Err(bad());
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// Why `text` is not hex. Network servers show payloads in base64
/// (ChirpStack's `data`, The Things Stack's `frm_payload`), so one pasted
/// from there is named as such, with the hex to pass instead.
fn not_hex(text: &str) -> String {
    use base64::Engine as _;
    let trimmed = text.trim();
    let as_base64 = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ]
    .iter()
    .find_map(|engine| engine.decode(trimmed).ok())
    .filter(|bytes| !bytes.is_empty());
    match as_base64 {
        Some(bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("not hex: {text:?} reads as base64, whose bytes in hex are {hex}")
        }
        None => format!("not an even number of hex digits: {text:?}"),
    }
}

#[cfg(feature = "lorawan")]
fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
