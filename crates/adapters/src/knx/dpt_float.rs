//! The two number codings of KNX datapoints: 9.x's 2-byte float (KNX
//! 3.7.2 §3.10: mantissa and exponent, in hundredths) and 14.x's IEEE 754
//! single as the 7 significant digits it carries. Apart from `dpt.rs` for
//! size; the exactness rules are in its header.

/// The largest 9.x value the payload carries (2047 × 2¹⁵ × 0.01): the
/// standard's 670 760.96 and 670 760 cannot be encoded.
pub(super) const FLOAT16_MAX: f64 = 670_433.28;

/// A 9.x subtype's range (KNX 3.7.2 §3.10), capped at [`FLOAT16_MAX`]:
/// the lower bounds of quantities that have one (absolute zero, 0 lux,
/// 0 %). The signed ones keep the whole coding (-671 088.64) as xknx
/// does, though the standard writes -670 760 for some (one step of the
/// coding at that size apart).
pub(super) fn float16_bounds(sub: Option<u16>) -> (f64, f64) {
    let min = match sub {
        Some(1) => -273.0,
        Some(27) => -459.6,
        Some(4..=8 | 28..=30) => 0.0,
        _ => -671_088.64,
    };
    (min, FLOAT16_MAX)
}

/// 9.x: `0.01 × M × 2^E`, divided rather than multiplied so the value is
/// the decimal the sender meant. `None` for 0x7FFF (invalid data).
pub(super) fn float16(h: u8, l: u8) -> Option<f64> {
    let raw = u16::from_be_bytes([h, l]);
    if raw == 0x7FFF {
        return None;
    }
    let exponent = (raw >> 11) & 0x0F;
    let mut mantissa = i32::from(raw & 0x07FF);
    if raw & 0x8000 != 0 {
        mantissa -= 2048;
    }
    Some(f64::from(mantissa << exponent) / 100.0)
}

/// A single to 7 significant digits, the precision it carries: the
/// value ETS's group monitor and xknx show (0.1, not 0.10000000149011612;
/// 1234.568 for the single nearest 1234.5678).
pub(super) fn seven_digits(v: f32) -> f64 {
    let mut text = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    // `{:.6e}` is correctly rounded; 32 bytes hold any such text.
    if std::io::Write::write_fmt(&mut cursor, format_args!("{:.6e}", f64::from(v))).is_ok() {
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        if let Some(parsed) = std::str::from_utf8(&text[..len])
            .ok()
            .and_then(|s| s.parse().ok())
        {
            return parsed;
        }
    }
    f64::from(v)
}

/// 9.x as xknx and ETS encode it: the smallest exponent whose mantissa
/// fits 11 signed bits, rounded ties-to-even.
pub(super) fn encode_float16(v: f64) -> [u8; 2] {
    let mut knx = v * 100.0;
    if knx.round_ties_even() == 0.0 {
        return [0, 0];
    }
    let mut exponent = 0u8;
    while !(-2048.0..=2047.0).contains(&knx) {
        exponent += 1;
        knx /= 2.0;
    }
    let mantissa = (knx.round_ties_even() as i32 & 0x7FF) as u16;
    let mut msb = exponent << 3 | (mantissa >> 8) as u8;
    if knx < 0.0 {
        msb |= 0x80;
    }
    [msb, mantissa as u8]
}
