//! `edge-gateway decode --ble`: one BLE advertisement through the adapter's
//! own decoders, so a user can check a sensor's bytes (or a line of a
//! capture attached to a bug report) without a radio or a running gateway.
//!
//! Each payload of the advertisement (every service-data and
//! manufacturer-data entry) is decoded on its own and printed as one JSON
//! object, so a device that sends, say, BTHome and a Ruuvi frame shows
//! both; the running gateway takes only the first in dispatch order
//! (0xFCD2, 0x181A, then company 0x0499). Values are named as the
//! gateway's readings are, `rssi` included when the advertisement has one.

use std::time::Instant;

use adapters::ble::{Advertisement, BindKey, BleDecoder, Mac, Outcome, ServiceUuid};
use gateway_core::Timestamp;
use serde_json::{json, Map, Value};

use crate::decode::{from_hex, secret, Failure};

/// The BLE forms, for `decode`'s usage error.
pub(super) const USAGE: &str =
    "--ble HEX --mac MAC [--uuid fcd2 | --company 0499] [--bindkey KEY], or --ble-line JSON";

#[derive(clap::Args)]
pub(super) struct BleArgs {
    /// A BLE payload in hex: the service data after its UUID, or the
    /// manufacturer data after its company id.
    #[arg(long)]
    ble: Option<String>,
    /// The sender's MAC (`54:48:E6:8F:80:A5`), with --ble: it names the
    /// device and is part of the BTHome encryption nonce.
    #[arg(long)]
    mac: Option<String>,
    /// The payload's service UUID (4 hex digits or 128-bit), with --ble.
    /// The default is BTHome's fcd2.
    #[arg(long, conflicts_with = "company")]
    uuid: Option<String>,
    /// The payload's company id (4 hex digits, Ruuvi is 0499), with --ble.
    #[arg(long)]
    company: Option<String>,
    /// The RSSI (dBm) to report with the values, with --ble.
    #[arg(long, allow_negative_numbers = true)]
    rssi: Option<i8>,
    /// A whole recorded advertisement, one line of a `ble record` capture or
    /// a `replay_file` (`{"ts":…,"mac":…,"service_data":{…}}`).
    #[arg(long, conflicts_with = "ble")]
    ble_line: Option<String>,
    /// The device's BTHome bindkey (32 hex digits, or `env:VAR`).
    #[arg(long)]
    bindkey: Option<String>,
}

impl BleArgs {
    pub(super) fn given(&self) -> bool {
        self.ble.is_some() || self.ble_line.is_some()
    }
}

/// Decodes the advertisement the arguments describe: one JSON line per
/// payload. Succeeds if at least one payload gave values.
pub(super) fn decode(args: &BleArgs) -> Result<Vec<String>, Failure> {
    let adv = match (&args.ble, &args.ble_line) {
        (Some(hex), None) => from_args(args, hex)?,
        (None, Some(line)) => {
            if args.mac.is_some() || args.uuid.is_some() || args.company.is_some() {
                return Err(Failure::Usage(
                    "--mac, --uuid and --company go with --ble, not --ble-line".into(),
                ));
            }
            if args.rssi.is_some() {
                return Err(Failure::Usage("--rssi goes with --ble".into()));
            }
            Advertisement::parse_line(line.trim())
                .map_err(|e| Failure::Data(format!("--ble-line: {e}")))?
        }
        _ => return Err(Failure::Usage(USAGE.into())),
    };
    let bindkey = args
        .bindkey
        .as_deref()
        .map(|arg| {
            secret("--bindkey", arg)?
                .parse::<BindKey>()
                .map_err(|e| Failure::Usage(format!("--bindkey: {e}")))
        })
        .transpose()?;
    let lines: Vec<(Value, bool)> = payloads(&adv)
        .iter()
        .map(|(label, one)| describe(label, one, bindkey.as_ref()))
        .collect();
    if lines.is_empty() {
        return Err(Failure::Data(
            "the advertisement has no service data and no manufacturer data".into(),
        ));
    }
    let any_decoded = lines.iter().any(|(_, decoded)| *decoded);
    let out: Vec<String> = lines.into_iter().map(|(v, _)| v.to_string()).collect();
    if any_decoded {
        Ok(out)
    } else {
        Err(Failure::Refused {
            lines: out,
            reason: "no decoder gave values".into(),
        })
    }
}

fn from_args(args: &BleArgs, hex: &str) -> Result<Advertisement, Failure> {
    let mac: Mac = args
        .mac
        .as_deref()
        .ok_or_else(|| Failure::Usage("--ble needs --mac".into()))?
        .parse()
        .map_err(|e| Failure::Usage(format!("--mac: {e}")))?;
    let bytes = from_hex(hex)?;
    // Play it as arriving now; the decoders never read the time.
    let mut adv = Advertisement::new(mac, args.rssi, Timestamp::now());
    match (&args.uuid, &args.company) {
        (_, Some(company)) => {
            let id = from_hex(company)
                .ok()
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .ok_or_else(|| {
                    Failure::Usage(format!("--company: expected 4 hex digits, got {company:?}"))
                })?;
            adv.manufacturer_data.push((u16::from_be_bytes(id), bytes));
        }
        (uuid, None) => {
            let uuid = match uuid {
                Some(u) => u
                    .parse()
                    .map_err(|e| Failure::Usage(format!("--uuid: {e}")))?,
                None => ServiceUuid::BTHOME,
            };
            adv.service_data.push((uuid, bytes));
        }
    }
    Ok(adv)
}

/// Each payload as an advertisement of its own, with a label naming it.
fn payloads(adv: &Advertisement) -> Vec<(Value, Advertisement)> {
    let alone = || Advertisement::new(adv.mac, adv.rssi, adv.time);
    let services = adv.service_data.iter().map(|(uuid, data)| {
        let mut one = alone();
        one.service_data.push((*uuid, data.clone()));
        let name = match uuid.as_u16() {
            Some(short) => format!("{short:04x}"),
            None => uuid.to_string(),
        };
        (json!({ "uuid": name }), one)
    });
    let makers = adv.manufacturer_data.iter().map(|(company, data)| {
        let mut one = alone();
        one.manufacturer_data.push((*company, data.clone()));
        (json!({ "company": format!("{company:04x}") }), one)
    });
    services.chain(makers).collect()
}

/// One payload's JSON object, and whether it gave values.
fn describe(label: &Value, adv: &Advertisement, bindkey: Option<&BindKey>) -> (Value, bool) {
    let mut obj = Map::new();
    obj.insert("mac".into(), adv.mac.to_string().into());
    if let Value::Object(label) = label {
        obj.extend(label.clone());
    }
    // A fresh decoder per payload: no counters, packet ids or sequences
    // from before, so nothing is judged a repeat.
    let decoded = match BleDecoder::default().decode(adv, bindkey, Instant::now()) {
        Outcome::Decoded(d) => {
            obj.insert("format".into(), d.format.name().into());
            let values: Map<String, Value> = d
                .readings(adv.time)
                .iter()
                .map(|r| (r.metric().to_string(), json!(r.value())))
                .collect();
            obj.insert("values".into(), values.into());
            if let Some(stop) = d.stop {
                obj.insert("stopped".into(), stop.to_string().into());
            }
            if d.out_of_order {
                obj.insert("out_of_order".into(), true.into());
            }
            if !d.events.is_empty() {
                let events: Vec<Value> = d.events.iter().map(|e| e.to_string().into()).collect();
                obj.insert("events".into(), events.into());
            }
            true
        }
        Outcome::Refused { format, error, .. } => {
            obj.insert("format".into(), format.name().into());
            obj.insert("refused".into(), error.kind().into());
            obj.insert("error".into(), error.to_string().into());
            false
        }
        Outcome::Duplicate { format, .. } => {
            obj.insert("format".into(), format.name().into());
            obj.insert("duplicate".into(), true.into());
            false
        }
        Outcome::NotUnderstood(_) => {
            obj.insert("format".into(), Value::Null);
            obj.insert("refused".into(), "not_understood".into());
            false
        }
    };
    (Value::Object(obj), decoded)
}
