//! `[[coap.psk]]`: the DTLS pre-shared keys of `coap` servers with
//! `dtls = "psk"`, one per identity, each bound to the device it may write.
//!
//! ```toml
//! [[coap.psk]]
//! identity = "node-7"
//! key = "env:COAP_NODE7_KEY"    # the key's bytes as text, or env:VAR
//! # key_hex = "00112233445566778899aabbccddeeff"
//! device = "node-7"             # default: the identity
//! ```

use std::collections::BTreeSet;
use std::fmt;

use gateway_core::config::{secret, Problems};
use gateway_core::DeviceId;
use serde::Deserialize;

use crate::registry::OwnedSection;

/// Shortest key accepted: below this a PSK is guessable offline from one
/// recorded handshake.
pub const MIN_KEY_BYTES: usize = 8;
/// Longest identity and key OpenSSL takes (PSK_MAX_IDENTITY_LEN, PSK_MAX_PSK_LEN).
pub const MAX_IDENTITY_BYTES: usize = 128;
pub const MAX_KEY_BYTES: usize = 256;

/// Key bytes; `Debug` never shows them (the sections end up in logs).
#[derive(Clone, PartialEq, Eq)]
pub struct PskKey(pub Vec<u8>);

impl fmt::Debug for PskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One identity: its key and the device it writes as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PskEntry {
    pub identity: String,
    pub key: PskKey,
    pub device: DeviceId,
}

/// The `[coap]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoapSection {
    pub psk: Vec<PskEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    #[serde(default)]
    psk: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    identity: String,
    key: Option<secret::Secret>,
    key_hex: Option<secret::Secret>,
    device: Option<String>,
}

impl OwnedSection for CoapSection {
    const NAME: &'static str = "coap";

    fn parse(root: &toml::Table, problems: &mut Problems) -> Self {
        section(root, &|var| std::env::var(var).ok(), problems)
    }
}

/// Reads `[coap]` from the root table; `env` resolves `env:VAR` keys, so
/// `validate` reports a variable that is not set with its key path.
pub fn section(
    root: &toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> CoapSection {
    let Some(value) = root.get("coap") else {
        return CoapSection::default();
    };
    let Some(raw) =
        gateway_core::config::load::section::<RawSection>(value.clone(), "coap", problems)
    else {
        return CoapSection::default();
    };
    let mut out = CoapSection::default();
    let mut seen = BTreeSet::new();
    for (i, e) in raw.psk.into_iter().enumerate() {
        let path = |k: &str| format!("coap.psk[{i}].{k}");
        let before = problems.len();
        if e.identity.is_empty() || e.identity.len() > MAX_IDENTITY_BYTES {
            problems.push(
                path("identity"),
                format!("expected 1 to {MAX_IDENTITY_BYTES} bytes"),
            );
        } else if !seen.insert(e.identity.clone()) {
            problems.push(
                path("identity"),
                format!("identity {:?} is already used", e.identity),
            );
        }
        let key = match (e.key, e.key_hex) {
            (Some(text), None) => secret::resolve(text.expose(), &path("key"), env, problems)
                .map(|(v, _)| v.into_bytes()),
            (None, Some(hex)) => match decode_hex(hex.expose()) {
                Some(bytes) => Some(bytes),
                None => {
                    problems.push(path("key_hex"), "expected an even number of hex digits");
                    None
                }
            },
            (Some(_), Some(_)) => {
                problems.push(path("key"), "give key or key_hex, not both");
                None
            }
            (None, None) => {
                problems.push(
                    path("key"),
                    "missing: give key (text or env:VAR) or key_hex",
                );
                None
            }
        };
        if let Some(k) = &key {
            if k.len() < MIN_KEY_BYTES || k.len() > MAX_KEY_BYTES {
                // The length only, never the key.
                problems.push(
                    path("key"),
                    format!(
                        "expected {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {}",
                        k.len()
                    ),
                );
            }
        }
        let device = match DeviceId::new(e.device.as_deref().unwrap_or(&e.identity)) {
            Ok(d) => Some(d),
            Err(err) => {
                problems.push(path("device"), err.to_string());
                None
            }
        };
        if let (Some(key), Some(device), true) = (key, device, problems.len() == before) {
            out.psk.push(PskEntry {
                identity: e.identity,
                key: PskKey(key),
                device,
            });
        }
    }
    out
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> (CoapSection, Problems) {
        let mut p = Problems::default();
        let s = section(&toml::from_str(text).unwrap(), env, &mut p);
        (s, p)
    }

    #[test]
    fn identities_keys_and_devices() {
        let env = |v: &str| (v == "K7").then(|| "from-the-environment".to_string());
        let (s, p) = parse(
            r#"
            [[coap.psk]]
            identity = "node-7"
            key = "env:K7"
            [[coap.psk]]
            identity = "id-8"
            key_hex = "00112233445566778899aabbccddeeff"
            device = "node-8"
            [[coap.psk]]
            identity = "node-9"
            key = "secretPSK"
            "#,
            &env,
        );
        assert!(p.is_empty(), "{p}");
        let got: Vec<(&str, usize, &str)> = s
            .psk
            .iter()
            .map(|e| (e.identity.as_str(), e.key.0.len(), e.device.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("node-7", 20, "node-7"),
                ("id-8", 16, "node-8"),
                ("node-9", 9, "node-9")
            ]
        );
        assert!(!format!("{s:?}").contains("secretPSK"), "key in Debug");
    }

    #[test]
    fn every_mistake_names_its_key_and_never_the_secret() {
        let (s, p) = parse(
            r#"
            [[coap.psk]]
            identity = "a"
            key = "env:UNSET"
            [[coap.psk]]
            identity = "a"
            key = "short"
            [[coap.psk]]
            identity = "c"
            key_hex = "abc"
            [[coap.psk]]
            identity = "d"
            [[coap.psk]]
            identity = "e"
            key = "long-enough"
            device = "bad/device"
            "#,
            &|_| None,
        );
        assert!(s.psk.is_empty());
        let text = p.to_string();
        for want in [
            "coap.psk[0].key: environment variable UNSET is not set",
            "coap.psk[1].identity: identity \"a\" is already used",
            "coap.psk[1].key: expected 8 to 256 bytes, got 5",
            "coap.psk[2].key_hex: expected an even number of hex digits",
            "coap.psk[3].key: missing",
            "coap.psk[4].device:",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
        assert!(!text.contains("short"), "{text}");
    }
}
