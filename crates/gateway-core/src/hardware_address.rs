//! MAC-48 and EUI-64 addresses as device ids: one text per address,
//! whatever notation it arrives in.
//!
//! A relay board prints `24:6F:28:AA:BB:02`, a Windows tool `24-6f-28-aa-bb-02`,
//! a label on the box `246F28AABB02`; a `[[device]]` entry may use any of
//! them. Unless every one becomes the same text, one device is two rows on
//! the dashboard, one of them "never seen". The canonical text is the one
//! this gateway's own adapters print: a MAC-48 in lower case with colons
//! (BlueZ, the BLE adapter), an EUI-64 as 16 lower-case hex digits
//! (ChirpStack, the LoRaWAN adapter).

/// Octets of a MAC-48 address.
const MAC48: usize = 6;
/// Octets of an EUI-64 address.
const EUI64: usize = 8;

/// A hardware address read from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardwareAddress {
    octets: [u8; EUI64],
    len: usize,
}

impl HardwareAddress {
    /// `text` as a MAC-48 or EUI-64 in one of the notations people and
    /// firmwares write: hex pairs separated by `:` or `-` (one separator
    /// throughout), or bare hex digits; any case. `None` for anything else
    /// (`24:6f:28:aa:bb`, `24:6f-28:aa:bb:02`, boot noise before a MAC).
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let (len, step) = match b.len() {
            12 => (MAC48, 2),
            16 => (EUI64, 2),
            17 => (MAC48, 3),
            23 => (EUI64, 3),
            _ => return None,
        };
        let sep = if step == 3 { b.get(2).copied() } else { None };
        if step == 3 && !matches!(sep, Some(b':' | b'-')) {
            return None;
        }
        let mut octets = [0u8; EUI64];
        for (i, octet) in octets.iter_mut().take(len).enumerate() {
            let at = i * step;
            let (hi, lo) = (hex(*b.get(at)?)?, hex(*b.get(at + 1)?)?);
            *octet = (hi << 4) | lo;
            if step == 3 && i + 1 < len && b.get(at + 2).copied() != sep {
                return None;
            }
        }
        Some(Self { octets, len })
    }

    /// The text every adapter and the registry use for this address.
    pub fn canonical(&self) -> String {
        let octets = &self.octets[..self.len];
        if self.len == MAC48 {
            let mut out = String::with_capacity(17);
            for (i, o) in octets.iter().enumerate() {
                if i > 0 {
                    out.push(':');
                }
                push_hex(&mut out, *o);
            }
            out
        } else {
            let mut out = String::with_capacity(16);
            for o in octets {
                push_hex(&mut out, *o);
            }
            out
        }
    }

    /// Whether it is a MAC-48 (6 octets) rather than an EUI-64.
    pub fn is_mac48(&self) -> bool {
        self.len == MAC48
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_hex(out: &mut String, o: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(DIGITS[usize::from(o >> 4)]));
    out.push(char::from(DIGITS[usize::from(o & 0x0f)]));
}

/// Rewrites `id` to its canonical text when it is plainly a hardware
/// address. Bare hex digits count only with a letter among them: twelve
/// or sixteen decimal digits are as likely a meter's serial number as a
/// MAC, and renaming a serial number would move its data upstream. (A
/// column or key that declares a MAC, `mac`, takes even those: see
/// [`crate::DeviceId::mac`].)
pub(crate) fn canonicalise(id: &mut String) {
    // Cheap first: most ids are names, and this runs for every new id.
    if !matches!(id.len(), 12 | 16 | 17 | 23) {
        return;
    }
    let b = id.as_bytes();
    let bare = matches!(b.len(), 12 | 16);
    if bare && !b.iter().any(u8::is_ascii_alphabetic) {
        return;
    }
    // Lower case with colons is the canonical MAC already (every BLE
    // reading): nothing to rewrite, nothing to allocate.
    let plain_mac = b.len() == 17 && b[2] == b':' && !b.iter().any(u8::is_ascii_uppercase);
    if let Some(a) = HardwareAddress::parse(id) {
        if !plain_mac {
            *id = a.canonical();
        }
    }
}

/// Why `id`, as a `[[device]] id`, can match no id an adapter produces,
/// if it cannot: white space at its ends (adapters trim what they read),
/// or something that was meant as a MAC or EUI but is none (five or seven
/// octets, mixed separators, dots). `None` when it is fine.
pub fn registry_id_problem(id: &str) -> Option<String> {
    if id.trim() != id {
        return Some(format!(
            "{id:?} has white space at its ends, which no adapter produces: remove it"
        ));
    }
    let hex_digits = id.bytes().filter(u8::is_ascii_hexdigit).count();
    let separators = id
        .bytes()
        .filter(|b| matches!(b, b':' | b'-' | b'.'))
        .count();
    let only_address_chars = hex_digits + separators == id.len();
    // A word such as "dead-beef" is a name; an address has at least ten
    // hex digits and separators between them.
    let meant_as_address = only_address_chars && hex_digits >= 10 && separators > 0;
    if meant_as_address && HardwareAddress::parse(id).is_none() {
        return Some(format!(
            "{id:?} looks like a MAC or EUI but is not one that an adapter produces: write six hex pairs for a MAC (aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabbccddeeff) or eight for an EUI-64"
        ));
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        let mut s = s.to_string();
        canonicalise(&mut s);
        s
    }

    #[test]
    fn every_notation_of_one_mac_is_one_text() {
        for sent in [
            "24:6f:28:aa:bb:02",
            "24:6F:28:aa:BB:02",
            "24-6f-28-aa-bb-02",
            "24-6F-28-AA-BB-02",
            "246f28aabb02",
            "246F28AABB02",
        ] {
            assert_eq!(canon(sent), "24:6f:28:aa:bb:02", "{sent}");
            assert_eq!(
                HardwareAddress::parse(sent).unwrap().canonical(),
                "24:6f:28:aa:bb:02"
            );
        }
        for sent in [
            "70B3D57ED0001234",
            "70:b3:d5:7e:d0:00:12:34",
            "70-B3-D5-7E-D0-00-12-34",
        ] {
            assert_eq!(canon(sent), "70b3d57ed0001234", "{sent}");
        }
    }

    #[test]
    fn what_is_not_plainly_an_address_keeps_its_text() {
        for id in [
            // Decimal digits only: a serial number as likely as a MAC.
            "202401150001",
            "1234567890123456",
            // Not hex, mixed separators, a prefix of noise, a short one.
            "24:6f:28:aa:bb:0g",
            "24:6f-28:aa:bb:02",
            "rl~lxA2:B2:C2:D2:E2:F2",
            "24:6f:28:aa:bb",
            "Kitchen Sensor 1",
            "ROOM-ABCDEF12",
        ] {
            assert_eq!(canon(id), id);
        }
        assert!(HardwareAddress::parse("202401150001").is_some(), "as a MAC");
        assert!(HardwareAddress::parse("rl~lxA2:B2:C2:D2:E2:F2").is_none());
        assert!(HardwareAddress::parse("24:6f:28:aa:bb:02:").is_none());
        assert!(HardwareAddress::parse("24.6f.28.aa.bb.02").is_none());
    }

    #[test]
    fn registry_ids_that_can_never_match_are_named() {
        for fine in [
            "24-6f-28-aa-bb-02",
            "246f28aabb02",
            "70b3d57ed0001234",
            "Living Room",
            "dead-beef",
            "meter-01",
            "2024-01-15",
        ] {
            assert_eq!(registry_id_problem(fine), None, "{fine}");
        }
        for never in [
            "24:6f:28:aa:bb",
            "24:6f-28:aa:bb:02",
            "246f.28aa.bb02",
            "24:6f:28:aa:bb:02:",
            " 24:6f:28:aa:bb:02",
        ] {
            assert!(registry_id_problem(never).is_some(), "{never}");
        }
    }
}
