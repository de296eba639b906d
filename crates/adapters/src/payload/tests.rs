//! Tests across formats: detection, error labels, and robustness against
//! arbitrary bytes.

use super::test_support::*;
use super::*;
use gateway_core::TimeSource::Arrival;

#[test]
fn auto_detects_the_format() {
    let d = dev("d1");
    let c = ctx(Some(&d), None);
    let cols = PayloadFormat::Auto {
        columns: Some(vec![metric("a"), metric("b")]),
    };
    let bare = PayloadFormat::Auto { columns: None };
    let one = |m: &str, v: f64| ok(vec![r("d1", m, v, NOW, Arrival)], vec![]);
    let deep = "[".repeat(10_000);
    let cases: Vec<(&str, &PayloadFormat, &[u8], Want)> = vec![
        (
            "'[' is SenML",
            &bare,
            br#" [{"n":"t","v":1}]"#,
            one("t", 1.0),
        ),
        ("'{' is JSON", &bare, b"\n{\"t\":2}", one("t", 2.0)),
        ("CSV when columns are set", &cols, b"1,", one("a", 1.0)),
        ("otherwise a number", &bare, b"3", one("value", 3.0)),
        (
            "a quoted number",
            &cols,
            b"\"4\"",
            Err(DecodeError::CsvColumnCount {
                expected: 2,
                found: 1,
            }),
        ),
        (
            "a quoted number, no columns",
            &bare,
            b"\"4\"",
            one("value", 4.0),
        ),
        (
            "CSV-looking text without columns",
            &bare,
            b"1,2",
            Err(DecodeError::NotANumber { text: "1,2".into() }),
        ),
        ("empty", &bare, b" ", Err(DecodeError::Empty)),
        (
            "byte order mark before '{'",
            &bare,
            b"\xef\xbb\xbf{\"t\":5}",
            one("t", 5.0),
        ),
        (
            "invalid UTF-8",
            &bare,
            b"\xff",
            Err(DecodeError::NotUtf8 { valid_up_to: 0 }),
        ),
        (
            "invalid UTF-8 after '{'",
            &bare,
            b"{\xff",
            Err(DecodeError::NotUtf8 { valid_up_to: 1 }),
        ),
        ("deep nesting", &bare, deep.as_bytes(), Err(invalid_json())),
    ];
    for (label, format, payload, want) in cases {
        assert_decoded(label, decode(format, payload, &c), want);
    }
}

#[test]
fn kinds_are_stable_snake_case_labels() {
    let errors = [
        DecodeError::NotUtf8 { valid_up_to: 0 },
        DecodeError::Empty,
        DecodeError::NotANumber {
            text: String::new(),
        },
        DecodeError::NotFinite {
            text: String::new(),
        },
        invalid_json(),
        DecodeError::WrongShape {
            expected: "",
            found: "",
        },
        DecodeError::CsvColumnCount {
            expected: 0,
            found: 0,
        },
        DecodeError::CsvMultipleLines { lines: 0 },
        DecodeError::NoDevice,
        DecodeError::InvalidDevice {
            id: String::new(),
            source: ModelError::NotFinite,
        },
        DecodeError::NoValues,
        DecodeError::SenmlMandatoryField {
            field: String::new(),
        },
        DecodeError::DuplicateKey { key: String::new() },
        DecodeError::TooManyMetrics {
            device: String::new(),
            found: 0,
            max: 0,
        },
        DecodeError::InvalidLineProtocol {
            reason: String::new(),
        },
        DecodeError::NotKeyValue {
            token: String::new(),
        },
    ];
    let reasons = [
        FieldReason::NotFinite,
        FieldReason::NotNumeric,
        FieldReason::Null,
        FieldReason::InvalidName(ModelError::NotFinite),
        FieldReason::BadTimestamp,
        FieldReason::NoValue,
        FieldReason::NoDevice,
        FieldReason::WrongType {
            field: "",
            expected: "",
        },
    ];
    let mut kinds: Vec<&str> = errors.iter().map(DecodeError::kind).collect();
    assert_eq!(
        kinds,
        [
            "not_utf8",
            "empty",
            "not_a_number",
            "not_finite",
            "invalid_json",
            "wrong_shape",
            "csv_column_count",
            "csv_multiple_lines",
            "no_device",
            "invalid_device",
            "no_values",
            "senml_mandatory_field",
            "duplicate_key",
            "too_many_metrics",
            "invalid_line_protocol",
            "not_key_value",
        ]
    );
    let mut reason_kinds: Vec<&str> = reasons.iter().map(FieldReason::kind).collect();
    assert_eq!(
        reason_kinds,
        [
            "not_finite",
            "not_numeric",
            "null",
            "invalid_name",
            "bad_timestamp",
            "no_value",
            "no_device",
            "wrong_type",
        ]
    );
    for list in [&mut kinds, &mut reason_kinds] {
        let n = list.len();
        list.sort_unstable();
        list.dedup();
        assert_eq!(list.len(), n, "duplicate kind");
    }
}

/// Seeded xorshift64: deterministic, no `rand` dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Mostly bytes that matter to the parsers, sometimes any byte.
    fn byte(&mut self) -> u8 {
        const ALPHABET: &[u8] =
            b"{}[]\",:0123456789.-+eE NaInfity truefalsnul\\\n\r\t_bnvstdu/#\xff\xc3\x00";
        if self.below(8) == 0 {
            self.next() as u8
        } else {
            ALPHABET[self.below(ALPHABET.len())]
        }
    }

    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(v.len() + 1);
            match self.below(5) {
                0 if at < v.len() => v[at] = self.byte(),
                1 if at < v.len() => {
                    v.remove(at);
                }
                2 => v.insert(at, self.byte()),
                3 => v.truncate(at),
                _ => {
                    let end = (at + self.below(8)).min(v.len());
                    let chunk = v[at..end].to_vec();
                    v.splice(at..at, chunk);
                }
            }
        }
        v
    }
}

fn formats() -> Vec<PayloadFormat> {
    let columns = vec![metric("ts"), metric("t"), metric("h")];
    vec![
        PayloadFormat::Auto { columns: None },
        PayloadFormat::Auto {
            columns: Some(columns.clone()),
        },
        PayloadFormat::Number,
        PayloadFormat::Json,
        PayloadFormat::Csv { columns },
        PayloadFormat::Senml,
        PayloadFormat::Zigbee2mqtt,
        PayloadFormat::Tasmota,
        PayloadFormat::JsonNested,
        PayloadFormat::Influx,
        PayloadFormat::Kv,
    ]
}

/// Decodes with and without a context device and checks what must hold
/// for any input: no panic, finite values, labelled errors.
fn check_everywhere(payload: &[u8]) {
    let d = dev("d1");
    let m = metric("m");
    for format in &formats() {
        for c in [ctx(Some(&d), Some(&m)), ctx(None, None)] {
            match decode(format, payload, &c) {
                Ok(got) => {
                    assert!(
                        got.readings.iter().all(|r| r.value().is_finite()),
                        "{payload:?}"
                    );
                    assert!(got.problems.iter().all(|p| !p.reason.kind().is_empty()));
                }
                Err(e) => assert!(!e.kind().is_empty() && !e.to_string().is_empty()),
            }
        }
    }
}

#[test]
fn never_panics_on_random_bytes_or_mutated_payloads() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let len = rng.below(64);
        let payload: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        check_everywhere(&payload);
    }
    let seeds: [&[u8]; 12] = [
        b"bme680,device=lab\\ 1 temperature=21.5,gas=12000i,s=\"a \\\" b\" 1795255200000000000",
        b"mac=24:6f:28:aa:bb:01 ts=1795255200 temperature=21.5,humidity=40",
        b"23.4",
        b"\"23.4\"",
        b"1795255200,21.3,45.1\r\n",
        br#"{"temperature":21.5,"humidity":40,"ts":"2026-11-21T10:00:00Z","device":"x"}"#,
        br#"{"t": NaN, "h": 40, "g": 1e400, "i": -Infinity}"#,
        br#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},{"n":"current","u":"A","v":1.2}]"#,
        br#"[{"bn":"d:","bt":1.276020076001e+09,"bv":1,"bs":2,"n":"a","t":-5,"v":1.2},{"n":"b","vb":true,"s":3}]"#,
        br#"[{"n":"t","t":-5,"v":21},{"bt":-10,"n":"t","t":5,"v":24},{"vs":"x"},{"vd":"aGk"}]"#,
        br#"{"battery":100,"contact":true,"state":"ON","update":{"state":"idle"},"last_seen":"2026-11-21T10:00:00.000Z"}"#,
        br#"{"state_l1":"off","last_seen":1795255200250,"x":null,"y":[1,{"z":2}]}"#,
    ];
    for seed in seeds {
        check_everywhere(seed);
        for _ in 0..300 {
            check_everywhere(&rng.mutate(seed));
        }
    }
}

#[test]
fn a_megabyte_of_junk_is_an_error_in_every_format() {
    let mut rng = XorShift(42);
    let binary: Vec<u8> = (0..1 << 20).map(|_| rng.next() as u8).collect();
    let printable: Vec<u8> = (0..1 << 20)
        .map(|_| {
            const JUNK: &[u8] = b"{[,:\"1e9N";
            JUNK[rng.below(JUNK.len())]
        })
        .collect();
    let d = dev("d1");
    for junk in [binary, printable] {
        for format in &formats() {
            let got = decode(format, &junk, &ctx(Some(&d), None));
            assert!(got.is_err(), "{format:?} accepted junk");
        }
    }
}

#[test]
fn an_object_naming_a_key_twice_is_refused_whole() {
    let d = dev("d1");
    let c = ctx(Some(&d), None);
    // Few keys (pairwise check) and many (set): both must find it.
    let many_dups = format!("{{{}}}", vec![r#""temperature":21.5"#; 10_000].join(","));
    let mut wide: Vec<String> = (0..40).map(|i| format!("\"m{i}\":1")).collect();
    wide.push(r#""m7":2"#.into());
    let wide = format!("{{{}}}", wide.join(","));
    let cases: [(&str, &PayloadFormat, &str, &str); 5] = [
        ("json", &PayloadFormat::Json, r#"{"t":1,"h":2,"t":3}"#, "t"),
        (
            "json, time key",
            &PayloadFormat::Json,
            r#"{"t":1,"ts":1,"ts":2}"#,
            "ts",
        ),
        (
            "json, 10 000 copies",
            &PayloadFormat::Json,
            &many_dups,
            "temperature",
        ),
        ("json, 41 keys", &PayloadFormat::Json, &wide, "m7"),
        (
            "zigbee2mqtt",
            &PayloadFormat::Zigbee2mqtt,
            r#"{"temperature":1,"temperature":2}"#,
            "temperature",
        ),
    ];
    for (name, format, payload, key) in cases {
        let got = decode(format, payload.as_bytes(), &c);
        assert_eq!(
            got,
            Err(DecodeError::DuplicateKey { key: key.into() }),
            "{name}"
        );
        assert_eq!(got.unwrap_err().kind(), "duplicate_key");
    }
    // Distinct keys still decode.
    let ok = decode(&PayloadFormat::Json, br#"{"t":1,"h":2}"#, &c).unwrap();
    assert_eq!(ok.readings.len(), 2);
}

#[test]
fn more_metrics_per_device_than_the_cap_refuse_the_message() {
    let d = dev("d1");
    let c = ctx(Some(&d), None);
    let object = |n: usize| {
        let fields: Vec<String> = (0..n).map(|i| format!("\"m{i}\":{i}")).collect();
        format!("{{{}}}", fields.join(","))
    };
    let at_cap = decode(
        &PayloadFormat::Json,
        object(MAX_METRICS_PER_DEVICE).as_bytes(),
        &c,
    )
    .unwrap();
    assert_eq!(at_cap.readings.len(), MAX_METRICS_PER_DEVICE);
    let over = decode(&PayloadFormat::Json, object(10_000).as_bytes(), &c);
    assert_eq!(
        over,
        Err(DecodeError::TooManyMetrics {
            device: "d1".into(),
            found: 10_000,
            max: MAX_METRICS_PER_DEVICE
        })
    );
    assert_eq!(over.unwrap_err().kind(), "too_many_metrics");
    // A SenML batch of one metric at many times is one series, not many.
    let records: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"n":"t","v":{i},"t":{i}}}"#))
        .collect();
    let batch = format!(r#"[{{"bn":"d1:","bt":1.7e9}},{}]"#, records.join(","));
    let got = decode(&PayloadFormat::Senml, batch.as_bytes(), &ctx(None, None)).unwrap();
    assert_eq!(got.readings.len(), 1000);
    // Several devices in one pack: the cap is per device.
    let records: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"bn":"dev{i}:","n":"t","v":1}}"#))
        .collect();
    let got = decode(
        &PayloadFormat::Senml,
        format!("[{}]", records.join(",")).as_bytes(),
        &ctx(None, None),
    )
    .unwrap();
    assert_eq!(got.readings.len(), 300);
}

#[test]
fn remembered_metric_names_are_the_checked_ones() {
    // The same key twice (the second from the cache), and a bad key twice:
    // refused both times, never remembered.
    for _ in 0..2 {
        assert_eq!(
            super::metric_name("temperature").map(|m| m.as_str().to_string()),
            Ok("temperature".to_string())
        );
        assert!(super::metric_name("bad/name").is_err());
        assert!(super::metric_name("").is_err());
    }
    for i in 0..=super::METRIC_CACHE {
        assert!(super::metric_name(&format!("m{i}")).is_ok());
    }
    assert!(super::METRICS.with(|c| c.borrow().len()) <= super::METRIC_CACHE);
}

/// The CoAP fast path (`decode_plain_json_into`) against the general
/// decode it stands in for: on every body, crafted and random, either it
/// declines and adds nothing, or the general decode gives exactly its
/// readings with nothing to report. And it does read the bodies sensors
/// send, or it would be no path at all.
#[cfg(feature = "coap")]
#[test]
fn the_plain_json_fast_path_reads_as_the_general_decode() {
    let d = dev("d1");
    let now = Timestamp::from_millis(NOW).unwrap();
    let formats = [
        PayloadFormat::Json,
        PayloadFormat::Auto { columns: None },
        PayloadFormat::Number,
        PayloadFormat::Senml,
    ];
    let crafted: Vec<Vec<u8>> = [
        &br#"{"value":21.53}"#[..],
        br#"{"temperature":21.5,"humidity":40}"#,
        b" {\n\t\"a\" : -0 , \"b\":0.000001 ,\"c\":18446744073709551617}\r\n",
        br#"{"big": 9007199254740993, "neg": -9223372036854775809, "z": -0.0}"#,
        br#"{"a": 123456789012345678901234567890.5, "b": 0.30000000000000004}"#,
        br#"{"a": 1e3}"#,
        br#"{"a": 1E-3}"#,
        br#"{"a": +1}"#,
        br#"{"a": 01}"#,
        br#"{"a": 1.}"#,
        br#"{"a": .5}"#,
        br#"{"a": -}"#,
        br#"{"a": NaN}"#,
        br#"{"a": "21.5"}"#,
        br#"{"a": true}"#,
        br#"{"a": null}"#,
        br#"{"a": [1]}"#,
        br#"{"a\u0062": 1}"#,
        br#"{"a\"b": 1}"#,
        br#"{"a": 1, "a": 2}"#,
        br#"{"ts": 1795255200, "a": 1}"#,
        br#"{"time": "2026-11-21T10:00:00Z", "a": 1}"#,
        br#"{"timestamp": 1, "a": 1}"#,
        br#"{"device": "x", "a": 1}"#,
        br#"{"id": 7, "a": 1}"#,
        br#"{"a/b": 1}"#,
        br#"{"a+b": 1}"#,
        br##"{"#": 1}"##,
        br#"{"": 1}"#,
        "{\"a\x01\": 1}".as_bytes(),
        "{\"é\": 1}".as_bytes(),
        b"{\"\xff\": 1}",
        b"{\"\xc0\xaf\": 1}",
        b"{\"\xed\xa0\x80\": 1}",
        b"{\"a\": 1}\xff",
        b"\xef\xbb\xbf{\"a\": 1}",
        b"{\"a\": 1}\x0b",
        b"{\"a\": 1}\x0c",
        b"\x0c{\"a\": 1}",
        b"{\"a\": 1} x",
        b"{\"a\": 1,}",
        b"{\"a\": 1",
        b"{}",
        b"",
        b"   ",
        b"21.5",
        br#"[{"n":"t","v":1}]"#,
        br#"{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": 1}"#,
    ]
    .iter()
    .map(|b| b.to_vec())
    .chain((15..=17).map(|n| {
        let fields: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}.5")).collect();
        format!("{{{}}}", fields.join(",")).into_bytes()
    }))
    .collect();
    // Random bodies: the crafted ones with bytes replaced, dropped or
    // doubled, from an alphabet of JSON's own bytes and of bytes that are
    // not ASCII (a lead byte, a continuation, an overlong, 0xff).
    let alphabet = b"{}[]\":,. \t\r\n-+0123456789eEabtv\\/\x00\x0b\x80\xbf\xc0\xc3\xe2\xef\xff";
    let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
    let mut bodies = crafted.clone();
    for _ in 0..4000 {
        let mut b = crafted[(next() % crafted.len() as u64) as usize].clone();
        for _ in 0..1 + next() % 3 {
            if b.is_empty() {
                break;
            }
            let at = (next() % b.len() as u64) as usize;
            let byte = alphabet[(next() % alphabet.len() as u64) as usize];
            match next() % 3 {
                0 => b[at] = byte,
                1 => {
                    b.remove(at);
                }
                _ => b.insert(at, byte),
            }
        }
        bodies.push(b);
    }
    let name = |key: &[u8]| MetricName::new(std::str::from_utf8(key).ok()?).ok();
    let (mut read, mut declined) = (0, 0);
    for body in &bodies {
        for format in &formats {
            for max in [DEFAULT_MAX_READINGS_PER_MESSAGE, 64, 3, 1, 0] {
                let mut fast = vec![r("d0", "m", 1.0, NOW, Arrival)];
                let took =
                    decode_plain_json_into(format, body, &d, now, max, &mut |k| name(k), &mut fast);
                let mut general = vec![r("d0", "m", 1.0, NOW, Arrival)];
                let c = ctx(Some(&d), None);
                let decoded = decode_bounded_into(format, body, &c, None, max, &mut general);
                let label = format!("{format:?} max {max}: {:?}", String::from_utf8_lossy(body));
                if !took {
                    declined += 1;
                    assert_eq!(fast.len(), 1, "declined yet added: {label}");
                    continue;
                }
                read += 1;
                let decoded = decoded.unwrap_or_else(|e| panic!("{label}: general {e}"));
                assert!(
                    decoded.problems.is_empty(),
                    "{label}: {:?}",
                    decoded.problems
                );
                assert!(decoded.ignored.is_empty(), "{label}: {:?}", decoded.ignored);
                assert_eq!(fast, general, "{label}");
                for (f, g) in fast.iter().zip(&general) {
                    assert_eq!(f.value().to_bits(), g.value().to_bits(), "{label}");
                    assert_eq!(f.time_source(), g.time_source(), "{label}");
                }
            }
        }
    }
    // The sensors' bodies are read; many random ones are declined.
    let mut common = vec![];
    for body in [&br#"{"value":21.53}"#[..], br#"{"t":-4,"h":40.25}"#] {
        assert!(decode_plain_json_into(
            &PayloadFormat::Json,
            body,
            &d,
            now,
            DEFAULT_MAX_READINGS_PER_MESSAGE,
            &mut |k| name(k),
            &mut common
        ));
    }
    assert_eq!(common.len(), 3);
    assert!(
        read > 400 && declined > 20_000,
        "{read} read, {declined} declined"
    );
}
