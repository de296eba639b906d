//! Signing-key files for the fleet tools: `config keygen` writes the
//! base64 of the 32-byte Ed25519 seed (after a comment line); `config
//! sign --key` reads that, or a PKCS#8 PEM private key as `openssl genpkey
//! -algorithm ed25519` and Python's `cryptography` write it.

use base64::Engine as _;
use ed25519_dalek::SigningKey;

/// The DER of a PKCS#8 v1 Ed25519 private key before its 32-byte seed
/// (RFC 8410 §7): SEQUENCE, version 0, AlgorithmIdentifier 1.3.101.112,
/// OCTET STRING (OCTET STRING (seed)).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a key file was not read as a signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a key file: expected base64 of a 32-byte Ed25519 seed (as `edge-gateway config keygen` writes it) or a PKCS#8 PEM Ed25519 private key")]
    Unrecognised,
    #[error("the system's random source failed: {0}")]
    Random(String),
}

/// Reads a signing key from a key file's text.
///
/// # Errors
/// [`KeyError::Unrecognised`].
pub fn parse_signing_key(text: &str) -> Result<SigningKey, KeyError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if text.contains("-----BEGIN PRIVATE KEY-----") {
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = b64.decode(body).map_err(|_| KeyError::Unrecognised)?;
        return match der.strip_prefix(&PKCS8_PREFIX[..]) {
            Some(seed) => seed_key(seed),
            None => Err(KeyError::Unrecognised),
        };
    }
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or(KeyError::Unrecognised)?;
    let seed = b64.decode(line).map_err(|_| KeyError::Unrecognised)?;
    seed_key(&seed)
}

fn seed_key(seed: &[u8]) -> Result<SigningKey, KeyError> {
    let seed: [u8; 32] = seed.try_into().map_err(|_| KeyError::Unrecognised)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A new signing key from the operating system's random source.
///
/// # Errors
/// The random source failed.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The key file `config keygen` writes.
pub fn key_file_text(key: &SigningKey) -> String {
    format!(
        "# edge-gateway remote configuration signing key (Ed25519 seed, base64). Keep it secret.\n{}\n",
        base64::engine::general_purpose::STANDARD.encode(key.to_bytes())
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_pem_reads_too() {
        let k = generate().unwrap();
        let again = parse_signing_key(&key_file_text(&k)).unwrap();
        assert_eq!(again.to_bytes(), k.to_bytes());
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&k.to_bytes());
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        assert_eq!(parse_signing_key(&pem).unwrap().to_bytes(), k.to_bytes());
        assert!(parse_signing_key("# only a comment\n").is_err());
        assert!(parse_signing_key("AAAA\n").is_err());
    }
}
