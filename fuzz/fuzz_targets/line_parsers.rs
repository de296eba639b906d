//! The line adapters' parsing: any bytes, cut into reads where the input
//! says, through the framer (LF/CRLF, the line limit) and each line through
//! the CSV, JSON, InfluxDB line protocol or key=value decoder with the
//! device rule. Nothing may panic, no line may pass the limit, and every
//! reading must be finite.
#![no_main]

use adapters::line::decode::{DeviceCache, LineDecoder};
use adapters::line::framer::{Frame, Framer};
use adapters::payload::PayloadFormat;
use gateway_core::{DeviceId, MetricName, Timestamp};
use libfuzzer_sys::fuzz_target;

/// A small limit, so long lines are found quickly.
const MAX_LINE: usize = 256;

fn format(which: u8) -> PayloadFormat {
    let columns = |names: &[&str]| {
        names
            .iter()
            .filter_map(|c| MetricName::new(*c).ok())
            .collect::<Vec<_>>()
    };
    match which % 6 {
        0 => PayloadFormat::Csv {
            columns: columns(&["temperature", "pressure", "humidity", "gas"]),
        },
        // The shape read in one walk (`payload::csv`'s plain lines).
        5 => PayloadFormat::Csv {
            columns: columns(&["device", "temperature", "humidity"]),
        },
        1 => PayloadFormat::Csv {
            columns: columns(&["mac", "ts", "temperature"]),
        },
        2 => PayloadFormat::Json,
        3 => PayloadFormat::Influx,
        _ => PayloadFormat::Kv,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let decoder = LineDecoder::new(format(which));
    let fallback = DeviceId::new("192.0.2.7").ok();
    let fallback = if which & 0x80 == 0 { fallback.as_ref() } else { None };
    let now = Timestamp::from_millis(1_795_255_200_000).unwrap_or_else(|_| unreachable!());
    let mut framer = Framer::new(MAX_LINE);
    // One cache across the input, as one connection keeps it: a device
    // named earlier must not change what a later line decodes to.
    let mut devices = DeviceCache::default();
    // One batch across a read, as a connection fills it.
    let mut batch = Vec::new();
    // Reads end where the input has a 0x00 byte (kept in the stream).
    for read in rest.split_inclusive(|&b| b == 0) {
        let mut data = read;
        batch.clear();
        while let Some(frame) = framer.next(&mut data) {
            if let Frame::Line(line) = frame {
                assert!(line.len() <= MAX_LINE);
                let before = batch.len();
                match decoder.decode(line, fallback, now, &mut devices, &mut batch) {
                    Ok(_) => assert!(batch[before..].iter().all(|r| r.value().is_finite())),
                    // A refused line adds nothing to the batch.
                    Err(_) => assert_eq!(batch.len(), before),
                }
            }
        }
    }
});
