//! The desired-state message on `{prefix}/gateway/{gateway_id}/config`:
//! `{"version", "serial", "sha256", "config", "signature"}`, and what
//! makes it trusted: the SHA-256 of the config's UTF-8 bytes equals
//! `sha256`, and `signature` is an Ed25519 signature (checked with
//! `verify_strict`, which refuses malleable encodings) by one of the
//! configured keys over `"{serial}\n{version}\n{sha256}"`, so neither the
//! label, the serial nor the content can change without the key. A push
//! for one gateway also names it (`gateway`), signed as a fourth line
//! (`"…\n{sha256}\n{gateway}"`): another gateway refuses it, so whoever
//! may publish on the broker cannot copy one gateway's signed push onto
//! another's topic. A push without `gateway` is for any gateway that
//! trusts the key (one signature for a fleet).

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Larger messages are refused before they are parsed: a whole
/// `gateway.toml` with hundreds of devices is tens of kilobytes.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The message as the fleet tool publishes it.
/// Other fields a fleet tool adds (`ts`, `author`) are ignored: they are
/// not signed, so they can change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredMessage {
    /// A label for people (`"v2"`, `"2026-11-27 floor 3 sensors"`).
    pub version: String,
    /// Increased by the fleet tool with every push; the gateway refuses
    /// one not above the highest it has processed (`stale`).
    pub serial: u64,
    /// Hex SHA-256 of `config`'s UTF-8 bytes.
    pub sha256: String,
    /// The pushed layer: TOML read like a `conf.d/` drop-in.
    pub config: String,
    /// The one gateway (`[gateway] id`) this push is for, signed with the
    /// rest; absent: any gateway trusting the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Base64 of the 64-byte Ed25519 signature over [`signed_text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Why a message is not trusted; each names the check (the reported
/// `reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// Not the message's JSON shape, or too large.
    #[error("{0}")]
    Format(String),
    /// Unsigned, or signed by no configured key.
    #[error("{0}")]
    Signature(String),
    /// Signed, but the config is not the content that was signed.
    #[error("{0}")]
    Hash(String),
    /// Signed for another gateway.
    #[error("{0}")]
    Gateway(String),
}

impl Untrusted {
    /// The reported state's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Format(_) => "format",
            Self::Signature(_) => "signature",
            Self::Hash(_) => "sha256",
            Self::Gateway(_) => "gateway",
        }
    }
}

/// The bytes a signature covers: serial, newline, version, newline, sha256
/// (as the message writes it), and newline, gateway when it names one.
pub fn signed_text(serial: u64, version: &str, sha256: &str, gateway: Option<&str>) -> String {
    match gateway {
        Some(gateway) => format!("{serial}\n{version}\n{sha256}\n{gateway}"),
        None => format!("{serial}\n{version}\n{sha256}"),
    }
}

/// Lower-case hex SHA-256 of `text`'s UTF-8 bytes.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A public key of `[remote_config] public_keys`: base64 of its 32 raw
/// bytes, and a point Ed25519 accepts.
///
/// # Errors
/// What is wrong with it, for the key path's problem.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = decode_base64(text).map_err(|e| format!("not base64 ({e})"))?;
    let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "{} bytes where an Ed25519 public key has 32 (base64 of the raw key, as `edge-gateway config keygen` prints it)",
            bytes.len()
        )
    })?;
    VerifyingKey::from_bytes(&raw).map_err(|_| "not a valid Ed25519 public key".to_string())
}

/// Base64 as other tools write it: standard (RFC 4648 §4) with or without
/// padding, or the URL-safe alphabet (§5).
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
}

/// Base64 of a public key's 32 raw bytes.
pub fn public_key_text(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

impl DesiredMessage {
    /// Parses a message, refusing one too large or of another shape.
    ///
    /// # Errors
    /// [`Untrusted::Format`].
    pub fn parse(payload: &[u8]) -> Result<Self, Untrusted> {
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(Untrusted::Format(format!(
                "the message has {} bytes, more than the {MAX_MESSAGE_BYTES} accepted",
                payload.len()
            )));
        }
        serde_json::from_slice(payload).map_err(|e| {
            Untrusted::Format(format!(
                "not a configuration message ({{\"version\", \"serial\", \"sha256\", \"config\", \"signature\"}}): {e}"
            ))
        })
    }

    /// A signed message for `config` (what `config sign` and `config
    /// push` publish), for `gateway` alone when given.
    pub fn signed(
        key: &SigningKey,
        serial: u64,
        version: &str,
        config: &str,
        gateway: Option<&str>,
    ) -> Self {
        let sha256 = sha256_hex(config);
        let signature = key.sign(signed_text(serial, version, &sha256, gateway).as_bytes());
        Self {
            version: version.to_string(),
            serial,
            sha256,
            config: config.to_string(),
            gateway: gateway.map(str::to_string),
            signature: Some(base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())),
        }
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the signature (when `keys` is not empty: then one of them
    /// must have signed it), that the push is for `gateway_id` when it
    /// names a gateway, and that `config` is the content signed.
    ///
    /// # Errors
    /// Which check failed, and why.
    pub fn verify(&self, keys: &[VerifyingKey], gateway_id: &str) -> Result<(), Untrusted> {
        if !keys.is_empty() {
            let Some(signature) = &self.signature else {
                return Err(Untrusted::Signature(
                    "unsigned, and [remote_config] public_keys are set: only a signed push is taken".into(),
                ));
            };
            let bytes = decode_base64(signature)
                .map_err(|e| Untrusted::Signature(format!("signature is not base64 ({e})")))?;
            let raw: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
                Untrusted::Signature(format!(
                    "signature has {} bytes where Ed25519's has 64",
                    bytes.len()
                ))
            })?;
            let signature = Signature::from_bytes(&raw);
            let text = signed_text(
                self.serial,
                &self.version,
                &self.sha256,
                self.gateway.as_deref(),
            );
            if !keys
                .iter()
                .any(|k| k.verify_strict(text.as_bytes(), &signature).is_ok())
            {
                return Err(Untrusted::Signature(
                    "not signed by any key of [remote_config] public_keys (or the version, serial, sha256 or gateway was changed after signing)".into(),
                ));
            }
        }
        if let Some(gateway) = self.gateway.as_deref().filter(|g| *g != gateway_id) {
            return Err(Untrusted::Gateway(format!(
                "the push is for gateway \"{gateway}\", not this one (\"{gateway_id}\"): a push signed for one gateway is not taken from another's topic"
            )));
        }
        let actual = sha256_hex(&self.config);
        if !actual.eq_ignore_ascii_case(self.sha256.trim()) {
            return Err(Untrusted::Hash(format!(
                "the config's SHA-256 is {actual}, not the {} the message names",
                self.sha256
            )));
        }
        Ok(())
    }

    /// The lower-case digest, as the gateway names the layer's file.
    pub fn digest(&self) -> String {
        self.sha256.trim().to_ascii_lowercase()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_message_verifies_and_any_change_breaks_it() {
        let k = key(7);
        let m = DesiredMessage::signed(&k, 3, "v3", "[aggregation]\nwindow = \"1m\"\n", None);
        let keys = [key(1).verifying_key(), k.verifying_key()];
        m.verify(&keys, "gw-1").unwrap();
        let parsed = DesiredMessage::parse(m.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, m);

        let mut serial = m.clone();
        serial.serial = 1 << 63;
        assert_eq!(
            serial.verify(&keys, "gw-1").unwrap_err().reason(),
            "signature"
        );
        let mut version = m.clone();
        version.version = "v4".into();
        assert_eq!(
            version.verify(&keys, "gw-1").unwrap_err().reason(),
            "signature"
        );
        let mut content = m.clone();
        content.config.push('\n');
        assert_eq!(
            content.verify(&keys, "gw-1").unwrap_err().reason(),
            "sha256"
        );
        let mut unsigned = m.clone();
        unsigned.signature = None;
        assert_eq!(
            unsigned.verify(&keys, "gw-1").unwrap_err().reason(),
            "signature"
        );
        assert_eq!(
            m.verify(&[key(2).verifying_key()], "gw-1")
                .unwrap_err()
                .reason(),
            "signature"
        );
        // Without keys the broker's credentials are the only gate, but
        // the content must still be what the digest says.
        unsigned.verify(&[], "gw-1").unwrap();
        assert_eq!(content.verify(&[], "gw-1").unwrap_err().reason(), "sha256");
    }

    #[test]
    fn a_push_signed_for_one_gateway_is_refused_by_another_and_cannot_be_unbound() {
        let k = key(7);
        let keys = [k.verifying_key()];
        let m = DesiredMessage::signed(&k, 3, "v3", "# lab\n", Some("gw-017"));
        m.verify(&keys, "gw-017").unwrap();
        let parsed = DesiredMessage::parse(m.to_json().as_bytes()).unwrap();
        assert_eq!(parsed.gateway.as_deref(), Some("gw-017"));
        // Copied onto another gateway's topic.
        let copied = m.verify(&keys, "gw-018").unwrap_err();
        assert_eq!(copied.reason(), "gateway");
        assert!(copied.to_string().contains("gw-017"), "{copied}");
        // Its gateway dropped or renamed, to pass elsewhere: the signature
        // no longer covers it.
        for gateway in [None, Some("gw-018".to_string())] {
            let forged = DesiredMessage {
                gateway,
                ..m.clone()
            };
            assert_eq!(
                forged.verify(&keys, "gw-018").unwrap_err().reason(),
                "signature"
            );
        }
        // Unsigned (a gateway without keys): the name still decides.
        let unsigned = DesiredMessage {
            signature: None,
            ..m.clone()
        };
        assert_eq!(
            unsigned.verify(&[], "gw-018").unwrap_err().reason(),
            "gateway"
        );
        // A push for the whole fleet names none and is taken by any.
        let fleet = DesiredMessage::signed(&k, 4, "v4", "# all\n", None);
        fleet.verify(&keys, "gw-017").unwrap();
        fleet.verify(&keys, "gw-018").unwrap();
        assert!(!fleet.to_json().contains("gateway"), "{}", fleet.to_json());
    }

    #[test]
    fn the_signed_text_is_serial_version_sha256_on_lines() {
        assert_eq!(signed_text(2, "v2", "ab", None), "2\nv2\nab");
        assert_eq!(signed_text(2, "v2", "ab", Some("gw-1")), "2\nv2\nab\ngw-1");
        // RFC 8032's empty-message vector: the key bytes and signature
        // are the raw encodings other implementations use.
        let sk: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let pk = SigningKey::from_bytes(&sk).verifying_key();
        assert_eq!(
            public_key_text(&pk),
            "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        );
    }

    #[test]
    fn malformed_messages_and_keys_are_refused_with_a_reason() {
        assert_eq!(DesiredMessage::parse(b"{}").unwrap_err().reason(), "format");
        assert_eq!(
            DesiredMessage::parse(br#"{"version":"a","serial":-1,"sha256":"","config":""}"#)
                .unwrap_err()
                .reason(),
            "format"
        );
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(DesiredMessage::parse(&big).unwrap_err().reason(), "format");
        assert!(parse_public_key("not base64!").is_err());
        assert!(parse_public_key("AAAA").unwrap_err().contains("32"));
        let m = DesiredMessage {
            signature: Some("AAAA".into()),
            ..DesiredMessage::signed(&key(3), 1, "v", "", None)
        };
        assert!(m
            .verify(&[key(3).verifying_key()], "gw-1")
            .unwrap_err()
            .to_string()
            .contains("64"));
    }

    #[test]
    fn other_tools_spellings_are_read() {
        let k = key(5);
        let m = DesiredMessage::signed(&k, 8, "v8", "# x\n", None);
        let mut json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        json["ts"] = serde_json::json!("2026-11-27T10:00:00Z");
        json["sha256"] = serde_json::json!(m.sha256.to_ascii_uppercase());
        // Re-signed over the upper-case digest, as that tool writes it.
        let upper = DesiredMessage {
            sha256: m.sha256.to_ascii_uppercase(),
            ..m.clone()
        };
        let sig = k.sign(signed_text(8, "v8", &upper.sha256, None).as_bytes());
        json["signature"] = serde_json::json!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.to_bytes())
        );
        let parsed = DesiredMessage::parse(json.to_string().as_bytes()).unwrap();
        parsed.verify(&[k.verifying_key()], "gw-1").unwrap();
        assert_eq!(parsed.digest(), m.sha256);
        let unpadded =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(k.verifying_key().as_bytes());
        assert_eq!(parse_public_key(&unpadded).unwrap(), k.verifying_key());
    }

    #[test]
    fn sha256_is_lower_hex_of_the_utf8_bytes() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
