//! Datapoint types (KNX 3.7.2): how a group address's bytes become a
//! number with a unit, and a command's number becomes bytes.
//!
//! Decoding is exact: 5.001 is `raw × 100 / 255` (raw 128 is 50.196…%,
//! where xknx and Home Assistant round to 50), 9.x the mantissa and
//! exponent divided by 100 (21.5, never 21.500000000000004), 14.x the
//! IEEE 754 single to the 7 significant digits it carries (as ETS and
//! xknx show it: 0.1, not 0.10000000149011612). Encoding follows xknx for
//! 5.001, 5.003 and 9.x (ties to even, the same search for the 9.x
//! exponent), so a value both write gives the same bytes on the bus; the
//! scaled 7.x and 8.x subtypes (7.003, 7.004, 8.003, 8.004, 8.010) round
//! to the nearest step where xknx truncates (it writes 0.29 % as 0.28 %),
//! and a whole-number type refuses a fraction xknx would truncate.
//!
//! A value the type cannot mean is refused both ways, as xknx refuses it:
//! a 9.x below its subtype's range (a temperature under -273 °C, a
//! negative lux: the group's type is likely wrong), 5.006's reserved 255,
//! 20.102's and 20.105's unassigned modes, a 1.x with bits above bit 0
//! set, a 16.x that is not 14 bytes, a 17.001 with its reserved bits set.

use std::fmt;
use std::str::FromStr;

use gateway_core::command::{CommandValue, Refusal};

use super::cemi::{Data, Payload};
use super::dpt_float::{encode_float16, float16, float16_bounds, seven_digits};

/// A datapoint type: main number and, usually, subtype. A type known
/// only by its main number (ETS's `DPT-9`) decodes by the main type, with
/// no unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dpt {
    pub main: u16,
    pub sub: Option<u16>,
}

/// The main types read and written.
pub const SUPPORTED: &str =
    "1.x, 5.x, 6.x, 7.x, 8.x, 9.x, 12.x, 13.x, 14.x, 16.000, 16.001, 17.001, 18.001, 20.x";

/// A decoded group value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    /// 16.x: a text of up to 14 characters.
    Text(String),
}

/// Why a payload did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DptError {
    #[error("expected {expected} for DPT {dpt}, got {got}")]
    Length {
        dpt: Dpt,
        expected: &'static str,
        got: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl fmt::Display for Dpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sub {
            Some(sub) => write!(f, "{}.{sub:03}", self.main),
            None => write!(f, "{}", self.main),
        }
    }
}

impl FromStr for Dpt {
    type Err = String;

    /// `9.001`, `9.1`, `9`, ETS's `DPST-9-1` and `DPT-9`, and as ETS's
    /// and manufacturers' pages write it: `DPT 9.001`, `DPT9.001`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let upper = t.to_ascii_uppercase();
        let (main, sub) = if let Some(rest) = upper.strip_prefix("DPST-") {
            match rest.split_once('-') {
                Some((m, s)) => (m, Some(s)),
                None => (rest, None),
            }
        } else {
            let rest = upper
                .strip_prefix("DPT")
                .map_or(upper.as_str(), |r| r.trim_start_matches([' ', '-', '_']));
            match rest.split_once('.') {
                Some((m, s)) => (m, Some(s)),
                None => (rest, None),
            }
        };
        let number = |x: &str| -> Option<u16> {
            (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
                .then(|| x.parse().ok())
                .flatten()
        };
        let dpt = match (number(main), sub.map(number)) {
            (Some(main), None) => Some(Self { main, sub: None }),
            (Some(main), Some(Some(sub))) => Some(Self {
                main,
                sub: Some(sub),
            }),
            _ => None,
        };
        match dpt {
            Some(d) if d.is_supported() => Ok(d),
            Some(d) => Err(format!(
                "DPT {d} is not read by the gateway; supported: {SUPPORTED}"
            )),
            None => Err(format!(
                "expected a datapoint type such as \"9.001\" (or ETS's \"DPST-9-1\"), got \"{s}\""
            )),
        }
    }
}

/// DPT 20.105 (HVAC control mode): 0 auto … 17 emergency steam, and 20
/// NoDem; 18, 19 and 21 up are reserved.
fn hvac_control_mode(x: u8) -> bool {
    x <= 17 || x == 20
}

impl Dpt {
    pub const fn new(main: u16, sub: u16) -> Self {
        Self {
            main,
            sub: Some(sub),
        }
    }

    fn is_supported(self) -> bool {
        matches!(
            (self.main, self.sub),
            (1 | 5..=9 | 12..=14 | 20, _) | (16, None | Some(0 | 1)) | (17 | 18, None | Some(1))
        )
    }

    /// A 1.x boolean: 0 or 1.
    pub fn is_switch(self) -> bool {
        self.main == 1
    }

    /// 16.x: a text, which the gateway's readings (numbers) cannot carry.
    pub fn is_text(self) -> bool {
        self.main == 16
    }

    /// The unit of its values, by the KNX standard.
    pub fn unit(self) -> Option<&'static str> {
        let sub = self.sub?;
        let table: &[(u16, &str)] = match self.main {
            5 => &[(1, "%"), (3, "°"), (4, "%")],
            6 => &[(1, "%")],
            7 => &[
                (2, "ms"),
                (3, "ms"),
                (4, "ms"),
                (5, "s"),
                (6, "min"),
                (7, "h"),
                (11, "mm"),
                (12, "mA"),
                (13, "lx"),
                (600, "K"),
            ],
            8 => &[
                (2, "ms"),
                (3, "ms"),
                (4, "ms"),
                (5, "s"),
                (6, "min"),
                (7, "h"),
                (10, "%"),
                (11, "°"),
                (12, "m"),
            ],
            9 => &[
                (1, "°C"),
                (2, "K"),
                (3, "K/h"),
                (4, "lx"),
                (5, "m/s"),
                (6, "Pa"),
                (7, "%"),
                (8, "ppm"),
                (9, "m³/h"),
                (10, "s"),
                (11, "ms"),
                (20, "mV"),
                (21, "mA"),
                (22, "W/m²"),
                (23, "K/%"),
                (24, "kW"),
                (25, "L/h"),
                (26, "L/m²"),
                (27, "°F"),
                (28, "km/h"),
                (29, "g/m³"),
                (30, "µg/m³"),
            ],
            12 => &[
                (100, "s"),
                (101, "min"),
                (102, "h"),
                (1200, "L"),
                (1201, "m³"),
            ],
            13 => &[
                (2, "m³/h"),
                (10, "Wh"),
                (11, "VAh"),
                (12, "varh"),
                (13, "kWh"),
                (14, "kVAh"),
                (15, "kvarh"),
                (16, "MWh"),
                (100, "s"),
                (1200, "L"),
                (1201, "m³"),
            ],
            14 => FLOAT_UNITS,
            _ => &[],
        };
        table.iter().find(|(s, _)| *s == sub).map(|(_, u)| *u)
    }

    /// The numbers a command may write, when the type bounds them: the
    /// range KNX 3.7.2 gives each subtype (a temperature no lower than
    /// -273 °C, a lux or humidity no lower than 0), within what the
    /// payload can carry.
    pub fn bounds(self) -> Option<(f64, f64)> {
        Some(match (self.main, self.sub) {
            (1, _) => (0.0, 1.0),
            (5, Some(1)) => (0.0, 100.0),
            (5, Some(3)) => (0.0, 360.0),
            // 255 is reserved.
            (5, Some(6)) => (0.0, 254.0),
            (5, _) | (20, _) => (0.0, 255.0),
            (6, _) => (-128.0, 127.0),
            (7, Some(3)) => (0.0, 655_350.0),
            (7, Some(4)) => (0.0, 6_553_500.0),
            (7, _) => (0.0, 65_535.0),
            (8, Some(3)) => (-327_680.0, 327_670.0),
            (8, Some(4)) => (-3_276_800.0, 3_276_700.0),
            (8, Some(10)) => (-327.68, 327.67),
            (8, _) => (-32_768.0, 32_767.0),
            (9, sub) => float16_bounds(sub),
            (12, _) => (0.0, f64::from(u32::MAX)),
            (13, _) => (f64::from(i32::MIN), f64::from(i32::MAX)),
            (14, _) => (-f64::from(f32::MAX), f64::from(f32::MAX)),
            (17 | 18, _) => (1.0, 64.0),
            _ => return None,
        })
    }

    /// The length of a payload of this type, for messages.
    fn expected(self) -> &'static str {
        match self.main {
            1 => "a 1-bit value",
            5 | 6 | 17 | 18 | 20 => "1 byte",
            7..=9 => "2 bytes",
            12..=14 => "4 bytes",
            _ => "14 bytes",
        }
    }

    fn length_error(self, data: Data<'_>) -> DptError {
        DptError::Length {
            dpt: self,
            expected: self.expected(),
            got: match data {
                Data::Small(_) => "a 6-bit value".to_string(),
                Data::Bytes(b) => format!("{} bytes", b.len()),
            },
        }
    }

    /// The value of a GroupValueWrite or GroupValueResponse.
    ///
    /// # Errors
    /// [`DptError`] for a payload of another length, or one the type
    /// calls invalid (9.x's 0x7FFF, an unassigned 20.102 mode, …).
    pub fn decode(self, data: Data<'_>) -> Result<Value, DptError> {
        if self.main == 1 {
            return match data {
                // A switch sending 2 is no switch the group's type
                // describes; reading it as bit 0 would store a guess.
                Data::Small(v) if v > 1 => Err(DptError::Invalid(format!(
                    "DPT {self} is 1 bit, got {v}: is the group's type right?"
                ))),
                Data::Small(v) => Ok(Value::Number(f64::from(v))),
                Data::Bytes(_) => Err(self.length_error(data)),
            };
        }
        let Data::Bytes(b) = data else {
            return Err(self.length_error(data));
        };
        if self.main == 16 {
            // Always 14 bytes, a shorter text padded with NULs: a
            // shorter payload is another type or a cut telegram.
            if b.len() != 14 {
                return Err(self.length_error(data));
            }
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            let text = &b[..end];
            if self.sub != Some(1) && !text.is_ascii() {
                return Err(DptError::Invalid(format!(
                    "DPT {self} is ASCII, got a byte above 127"
                )));
            }
            // ISO 8859-1 (16.001): each byte is its code point.
            return Ok(Value::Text(text.iter().map(|&c| char::from(c)).collect()));
        }
        let number = match (self.main, b) {
            (5 | 6 | 17 | 18 | 20, &[x]) => self.one_byte(x)?,
            (7, &[h, l]) => {
                let raw = f64::from(u16::from_be_bytes([h, l]));
                match self.sub {
                    Some(3) => raw * 10.0,
                    Some(4) => raw * 100.0,
                    _ => raw,
                }
            }
            (8, &[h, l]) => {
                let raw = f64::from(i16::from_be_bytes([h, l]));
                match self.sub {
                    Some(3) => raw * 10.0,
                    Some(4) => raw * 100.0,
                    Some(10) => raw / 100.0,
                    _ => raw,
                }
            }
            (9, &[h, l]) => {
                let v = float16(h, l).ok_or_else(|| {
                    DptError::Invalid(format!("DPT {self}: 0x7FFF marks invalid data"))
                })?;
                let (min, _) = float16_bounds(self.sub);
                if v < min {
                    return Err(DptError::Invalid(format!(
                        "DPT {self}: {v} is below the type's range (from {min}): is the group's type right?"
                    )));
                }
                v
            }
            (12, &[a, b2, c, d]) => f64::from(u32::from_be_bytes([a, b2, c, d])),
            (13, &[a, b2, c, d]) => f64::from(i32::from_be_bytes([a, b2, c, d])),
            (14, &[a, b2, c, d]) => {
                let v = f32::from_be_bytes([a, b2, c, d]);
                if !v.is_finite() {
                    return Err(DptError::Invalid(format!(
                        "DPT {self}: not a finite number ({v})"
                    )));
                }
                seven_digits(v)
            }
            _ => return Err(self.length_error(data)),
        };
        Ok(Value::Number(number))
    }

    fn one_byte(self, x: u8) -> Result<f64, DptError> {
        let raw = f64::from(x);
        Ok(match (self.main, self.sub) {
            (5, Some(1)) => raw * 100.0 / 255.0,
            (5, Some(3)) => raw * 360.0 / 255.0,
            (6, _) => f64::from(x as i8),
            // Scene 1..64, sent as 0..63; 18.001's bit 7 (learn, i.e.
            // store the scene) is not part of the number. 17.001's two
            // high bits are reserved: masking them would read 0x41 as
            // scene 2.
            (17, _) if x > 0x3F => {
                return Err(DptError::Invalid(format!(
                    "DPT {self}: {x} sets the reserved bits (scenes are sent as 0 to 63)"
                )))
            }
            (17, _) => raw + 1.0,
            (18, _) => f64::from(x & 0x3F) + 1.0,
            (20, Some(102)) if x > 4 => {
                return Err(DptError::Invalid(format!(
                    "DPT 20.102: mode {x} is not assigned (0 auto, 1 comfort, 2 standby, 3 economy, 4 building protection)"
                )))
            }
            (20, Some(105)) if !hvac_control_mode(x) => {
                return Err(DptError::Invalid(format!(
                    "DPT 20.105: mode {x} is reserved (0 to 17, and 20)"
                )))
            }
            (5, Some(6)) if x == 255 => {
                return Err(DptError::Invalid(
                    "DPT 5.006: 255 is reserved (tariffs are 0 to 254)".to_string(),
                ))
            }
            _ => raw,
        })
    }

    /// The payload that writes `value`.
    ///
    /// # Errors
    /// A [`Refusal`]: `type` for a value of the wrong kind, `out_of_range`
    /// for one the type cannot hold.
    pub fn encode(self, value: &CommandValue) -> Result<Payload, Refusal> {
        if self.main == 16 {
            return self.encode_text(value);
        }
        let v = match value {
            CommandValue::Number(v) => *v,
            CommandValue::Bool(b) if self.main == 1 => f64::from(u8::from(*b)),
            _ => {
                return Err(Refusal::new(
                    "type",
                    format!(
                        "DPT {self} takes a number{}",
                        if self.main == 1 {
                            " (0/1) or true/false"
                        } else {
                            ""
                        }
                    ),
                ))
            }
        };
        let (min, max) = self.bounds().unwrap_or((f64::MIN, f64::MAX));
        if !v.is_finite() || v < min || v > max {
            return Err(Refusal::new(
                "out_of_range",
                format!("DPT {self} takes {min} to {max}, got {v}"),
            ));
        }
        let whole = |x: f64| -> Result<f64, Refusal> {
            if x.fract() == 0.0 {
                Ok(x)
            } else {
                Err(Refusal::new(
                    "out_of_range",
                    format!("DPT {self} takes a whole number, got {v}"),
                ))
            }
        };
        let bytes = match (self.main, self.sub) {
            (1, _) => return Ok(Payload::Small(whole(v)? as u8)),
            (5, Some(1)) => vec![(v * 255.0 / 100.0).round_ties_even() as u8],
            (5, Some(3)) => vec![(v * 255.0 / 360.0).round_ties_even() as u8],
            (5 | 20, _) => vec![whole(v)? as u8],
            (6, _) => vec![whole(v)? as i8 as u8],
            (7, Some(3)) => ((v / 10.0).round_ties_even() as u16).to_be_bytes().to_vec(),
            (7, Some(4)) => ((v / 100.0).round_ties_even() as u16)
                .to_be_bytes()
                .to_vec(),
            (7, _) => (whole(v)? as u16).to_be_bytes().to_vec(),
            (8, Some(3)) => ((v / 10.0).round_ties_even() as i16).to_be_bytes().to_vec(),
            (8, Some(4)) => ((v / 100.0).round_ties_even() as i16)
                .to_be_bytes()
                .to_vec(),
            (8, Some(10)) => ((v * 100.0).round_ties_even() as i16)
                .to_be_bytes()
                .to_vec(),
            (8, _) => (whole(v)? as i16).to_be_bytes().to_vec(),
            (9, _) => encode_float16(v).to_vec(),
            (12, _) => (whole(v)? as u32).to_be_bytes().to_vec(),
            (13, _) => (whole(v)? as i32).to_be_bytes().to_vec(),
            (14, _) => (v as f32).to_be_bytes().to_vec(),
            (17 | 18, _) => vec![whole(v)? as u8 - 1],
            _ => {
                return Err(Refusal::new(
                    "not_writable",
                    format!("DPT {self} is not written"),
                ))
            }
        };
        if (self.main, self.sub) == (20, Some(102)) && v > 4.0 {
            return Err(Refusal::new(
                "out_of_range",
                "DPT 20.102 takes 0 auto, 1 comfort, 2 standby, 3 economy or 4 building protection",
            ));
        }
        if (self.main, self.sub) == (20, Some(105)) && !hvac_control_mode(v as u8) {
            return Err(Refusal::new(
                "out_of_range",
                "DPT 20.105 takes 0 to 17 or 20 (18, 19 and 21 up are reserved)",
            ));
        }
        Ok(Payload::Bytes(bytes))
    }

    fn encode_text(self, value: &CommandValue) -> Result<Payload, Refusal> {
        let CommandValue::Text(text) = value else {
            return Err(Refusal::new("type", format!("DPT {self} takes a text")));
        };
        let latin1 = self.sub == Some(1);
        let mut bytes = Vec::with_capacity(14);
        for c in text.chars() {
            let code = u32::from(c);
            if code == 0 || code > if latin1 { 0xFF } else { 0x7F } {
                return Err(Refusal::new(
                    "out_of_range",
                    format!(
                        "DPT {self} takes {} characters, got {c:?}",
                        if latin1 { "ISO 8859-1" } else { "ASCII" }
                    ),
                ));
            }
            bytes.push(code as u8);
        }
        if bytes.len() > 14 {
            return Err(Refusal::new(
                "out_of_range",
                format!(
                    "DPT {self} takes at most 14 characters, got {}",
                    bytes.len()
                ),
            ));
        }
        bytes.resize(14, 0);
        Ok(Payload::Bytes(bytes))
    }
}

/// 14.x's units, by subtype (KNX 3.7.2 §3.18).
const FLOAT_UNITS: &[(u16, &str)] = &[
    (0, "m/s²"),
    (1, "rad/s²"),
    (2, "J/mol"),
    (3, "s⁻¹"),
    (4, "mol"),
    (6, "rad"),
    (7, "°"),
    (8, "J s"),
    (9, "rad/s"),
    (10, "m²"),
    (11, "F"),
    (12, "C/m²"),
    (13, "C/m³"),
    (14, "m²/N"),
    (15, "S"),
    (16, "S/m"),
    (17, "kg/m³"),
    (18, "C"),
    (19, "A"),
    (20, "A/m²"),
    (21, "C m"),
    (22, "C/m²"),
    (23, "V/m"),
    (24, "C"),
    (25, "C/m²"),
    (26, "C/m²"),
    (27, "V"),
    (28, "V"),
    (29, "A m²"),
    (30, "V"),
    (31, "J"),
    (32, "N"),
    (33, "Hz"),
    (34, "rad/s"),
    (35, "J/K"),
    (36, "W"),
    (37, "J"),
    (38, "Ω"),
    (39, "m"),
    (40, "lm s"),
    (41, "cd/m²"),
    (42, "lm"),
    (43, "cd"),
    (44, "A/m"),
    (45, "Wb"),
    (46, "T"),
    (47, "A m²"),
    (48, "T"),
    (49, "A/m"),
    (50, "A"),
    (51, "kg"),
    (52, "kg/s"),
    (53, "N/s"),
    (54, "rad"),
    (55, "°"),
    (56, "W"),
    (58, "Pa"),
    (59, "Ω"),
    (60, "Ω"),
    (61, "Ωm"),
    (62, "H"),
    (63, "sr"),
    (64, "W/m²"),
    (65, "m/s"),
    (66, "Pa"),
    (67, "N/m"),
    (68, "°C"),
    (69, "K"),
    (70, "K"),
    (71, "J/K"),
    (72, "W/mK"),
    (73, "V/K"),
    (74, "s"),
    (75, "Nm"),
    (76, "m³"),
    (77, "m³/s"),
    (78, "N"),
    (79, "J"),
    (80, "VA"),
    (1200, "m³/h"),
    (1201, "L/s"),
];

#[cfg(test)]
#[path = "dpt_tests.rs"]
mod tests;
