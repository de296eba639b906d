//! Reads the same lines as the LMIC harness (`c t h b`, `p t h b`,
//! `b base n d1 v1 … dn vn`) on stdin and prints each frame in hex, or
//! `err <kind>`: lets the MicroPython tests compare this crate's bytes with
//! wire.py's (`firmware/micropython/tests/test_codec_agreement.py`).

use std::io::{self, BufRead, Write};

use firmware_codec::{batch, bitpacked, compact_i16, EncodeError};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind(e: EncodeError) -> &'static str {
    match e {
        EncodeError::NotFinite { .. } => "not_finite",
        EncodeError::OutOfRange { .. } => "range",
        EncodeError::BufferTooSmall { .. } => "buffer",
        EncodeError::TooManyReadings { .. } => "range",
        EncodeError::WrongValueCount { .. } => "count",
    }
}

fn line(text: &str) -> Result<String, String> {
    let mut words = text.split_whitespace();
    let tag = words.next();
    let mut num = || -> Result<f64, String> {
        words
            .next()
            .ok_or("missing field")?
            .parse::<f64>()
            .map_err(|e| e.to_string())
    };
    let out = match tag {
        Some("c") => compact_i16(num()?, num()?, num()?).map(|f| hex(&f)),
        Some("p") => bitpacked(num()?, num()?, num()?).map(|f| hex(&f)),
        Some("b") => {
            let base = num()? as u32;
            let n = num()? as usize;
            let readings = (0..n)
                .map(|_| Ok((num()? as u16, num()?)))
                .collect::<Result<Vec<_>, String>>()?;
            let mut buf = vec![0u8; 5 + 6 * n];
            batch(base, &readings, &mut buf).map(|len| hex(&buf[..len]))
        }
        _ => return Err(format!("unknown line {text:?}")),
    };
    Ok(out.unwrap_or_else(|e| format!("err {}", kind(e))))
}

fn main() -> Result<(), String> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for text in io::stdin().lock().lines() {
        let text = text.map_err(|e| e.to_string())?;
        if text.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", line(&text)?).map_err(|e| e.to_string())?;
    }
    Ok(())
}
