//! Why a BLE payload gave no values. One enum for every decoder, so the
//! adapter counts them all with one `errors_total{error_type}` label set
//! ([`DecodeError::kind`]) and the CLI prints the same words.

/// A payload a decoder recognised by its UUID or company id but refused.
///
/// The security refusals ([`DecodeError::Decryption`], [`DecodeError::Replay`],
/// [`DecodeError::Downgrade`], [`DecodeError::NoBindkey`]) are kept apart
/// from malformed bytes so an operator can tell an attack, a wrong key and a
/// buggy firmware apart in the counters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all after the UUID / company id.
    #[error("{format} payload is empty")]
    Empty { format: &'static str },
    /// A fixed-layout frame of a length its format does not have.
    #[error("{format} payload is {found} bytes, expected {expected}")]
    Length {
        format: &'static str,
        expected: &'static str,
        found: usize,
    },
    /// BTHome device-info version bits other than 2 (bthome.io format page,
    /// "bit 5-7: BTHome Version").
    #[error("BTHome version {version} is not supported (only version 2)")]
    UnsupportedVersion { version: u8 },
    /// A Ruuvi data format other than 5 (RAWv2).
    #[error("Ruuvi data format {format} is not supported (only 5, RAWv2)")]
    UnsupportedFormat { format: u8 },
    /// The legacy MAC-in-payload flag is set but fewer than 6 bytes follow.
    #[error("BTHome MAC-in-payload flag set but only {found} bytes follow")]
    MacTruncated { found: usize },
    /// An encrypted BTHome frame too short for counter (4) and MIC (4).
    #[error("encrypted BTHome payload has {found} bytes after the header, at least 8 needed")]
    EncryptedTooShort { found: usize },
    /// An encrypted frame from a device with no bindkey configured.
    #[error("encrypted BTHome frame but no bindkey is configured for this device")]
    NoBindkey,
    /// The AES-CCM tag did not verify: a wrong bindkey or altered bytes.
    #[error("BTHome MIC check failed (wrong bindkey or altered frame)")]
    Decryption,
    /// The encryption counter is below the last accepted one (and is not
    /// the wrap after 0xFFFFFFFF).
    #[error("BTHome encryption counter {counter} is not above the last accepted {last}")]
    Replay { counter: u32, last: u32 },
    /// A plaintext frame from a device that has a bindkey (bthome.io
    /// encryption page: receivers accepting both "can trivially" be spoofed).
    #[error("plaintext frame from a device with a bindkey: downgrade refused")]
    Downgrade,
}

impl DecodeError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty",
            Self::Length { .. } => "wrong_length",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::UnsupportedFormat { .. } => "unsupported_format",
            Self::MacTruncated { .. } => "truncated",
            Self::EncryptedTooShort { .. } => "encrypted_too_short",
            Self::NoBindkey => "no_bindkey",
            Self::Decryption => "decryption_failed",
            Self::Replay { .. } => "replay",
            Self::Downgrade => "downgrade_detected",
        }
    }
}
