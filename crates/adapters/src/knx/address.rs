//! KNX addresses: group addresses (what a telegram is about: "living room
//! temperature") and individual addresses (who sent it: a device's place
//! on the bus, `area.line.device`).
//!
//! A group address is 16 bits. ETS shows it in one of three notations,
//! and configs copied from ETS use whichever the project used, so all
//! three are read: 3-level `main/middle/sub` (5/3/8 bits, the default),
//! 2-level `main/sub` (5/11 bits) and free (`1234`, the 16 bits as one
//! number). It is always shown 3-level.

use std::fmt;
use std::str::FromStr;

/// A group address, as its 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupAddress(pub u16);

/// A device's individual address, as its 16 bits (`area.line.device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndividualAddress(pub u16);

impl GroupAddress {
    /// From 3-level parts; `None` when a part is out of its range.
    pub fn three_level(main: u16, middle: u16, sub: u16) -> Option<Self> {
        (main <= 31 && middle <= 7 && sub <= 255).then_some(Self(main << 11 | middle << 8 | sub))
    }
}

impl fmt::Display for GroupAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(f, "{}/{}/{}", a >> 11, (a >> 8) & 0x7, a & 0xFF)
    }
}

impl fmt::Display for IndividualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(f, "{}.{}.{}", a >> 12, (a >> 8) & 0xF, a & 0xFF)
    }
}

fn part(s: &str) -> Option<u16> {
    // No sign, no spaces inside, no empty part: "1//3" and "+1/2/3" are typos.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for GroupAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let parts: Vec<&str> = t.split('/').collect();
        let address = match parts.as_slice() {
            [main, middle, sub] => match (part(main), part(middle), part(sub)) {
                (Some(a), Some(b), Some(c)) => Self::three_level(a, b, c),
                _ => None,
            },
            [main, sub] => match (part(main), part(sub)) {
                (Some(a), Some(b)) if a <= 31 && b <= 2047 => Some(Self(a << 11 | b)),
                _ => None,
            },
            [free] => part(free).map(Self),
            _ => None,
        };
        address.ok_or_else(|| {
            format!(
                "expected a group address such as \"1/2/3\" (main 0-31 / middle 0-7 / sub 0-255), \
                 \"1/515\" (main / sub 0-2047) or \"2563\" (0-65535), got \"{s}\""
            )
        })
    }
}

impl FromStr for IndividualAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        if let [a, l, d] = parts.as_slice() {
            if let (Some(a), Some(l), Some(d)) = (part(a), part(l), part(d)) {
                if a <= 15 && l <= 15 && d <= 255 {
                    return Ok(Self(a << 12 | l << 8 | d));
                }
            }
        }
        Err(format!(
            "expected an individual address such as \"1.1.250\" (area 0-15 . line 0-15 . device 0-255), got \"{s}\""
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_three_notations_name_the_same_address() {
        let three: GroupAddress = "1/2/3".parse().unwrap();
        assert_eq!(three.0, 0x0A03);
        assert_eq!("1/515".parse::<GroupAddress>().unwrap(), three);
        assert_eq!("2563".parse::<GroupAddress>().unwrap(), three);
        assert_eq!(three.to_string(), "1/2/3");
        assert_eq!("31/7/255".parse::<GroupAddress>().unwrap().0, 0xFFFF);
        assert_eq!("0/0/0".parse::<GroupAddress>().unwrap().0, 0);
        for bad in [
            "32/0/0", "1/8/0", "1/2/256", "1/2048", "65536", "", "1//3", "a/b/c", "1/2/3/4", "-1",
            "+1/2/3",
        ] {
            assert!(bad.parse::<GroupAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn individual_addresses_read_and_show_as_area_line_device() {
        let a: IndividualAddress = "1.1.250".parse().unwrap();
        assert_eq!(a.0, 0x11FA);
        assert_eq!(a.to_string(), "1.1.250");
        assert_eq!(IndividualAddress(0xFFFF).to_string(), "15.15.255");
        for bad in ["16.0.0", "1.16.0", "1.1.256", "1.1", "1/1/1"] {
            assert!(bad.parse::<IndividualAddress>().is_err(), "{bad}");
        }
    }
}
