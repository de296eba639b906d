#![allow(clippy::unwrap_used)]

use super::*;

fn reg(table: Table, ty: ValueType, order: Order) -> Register {
    Register {
        metric: "m".into(),
        table,
        address: 0,
        ty,
        order,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        writable: false,
        min: None,
        max: None,
        bit: None,
        length: 0,
    }
}

/// The value `ABCD…` laid out in registers for each order, as a device
/// sends it: big-endian words `[AB, CD]`, word-swapped `[CD, AB]`, …
fn layout(be: &[u8], order: Order) -> Vec<u16> {
    let words: Vec<u16> = be
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let n = words.len();
    (0..n)
        .map(|i| {
            let w = match order {
                Order::Abcd | Order::Badc => words[i],
                Order::Dcba | Order::Cdab => words[n - 1 - i],
            };
            match order {
                Order::Badc | Order::Dcba => w.swap_bytes(),
                _ => w,
            }
        })
        .collect()
}

#[test]
fn twenty_five_as_an_f32_in_every_order() {
    // 0x41C80000 = 25.0 (IEEE 754 single).
    for (order, words) in [
        (Order::Abcd, [0x41C8, 0x0000]),
        (Order::Cdab, [0x0000, 0x41C8]),
        (Order::Badc, [0xC841, 0x0000]),
        (Order::Dcba, [0x0000, 0xC841]),
    ] {
        assert_eq!(
            decode_raw(&words, ValueType::F32, order),
            Some(25.0),
            "{order:?}"
        );
    }
}

#[test]
fn every_type_in_every_order_against_known_vectors() {
    let cases: [(ValueType, Vec<u8>, f64); 12] = [
        (ValueType::U16, vec![0xFF, 0xFE], 65534.0),
        (ValueType::I16, vec![0xFF, 0xFE], -2.0),
        (ValueType::U32, vec![0x00, 0x01, 0x86, 0xA0], 100_000.0),
        (ValueType::I32, vec![0xFF, 0xFE, 0x79, 0x60], -100_000.0),
        (
            ValueType::U32,
            vec![0xDE, 0xAD, 0xBE, 0xEF],
            3_735_928_559.0,
        ),
        (
            ValueType::F32,
            vec![0xC2, 0xF6, 0xE9, 0x79],
            -123.456_001_281_738_28,
        ),
        (
            ValueType::U64,
            vec![0x00, 0x00, 0x00, 0x02, 0x54, 0x0B, 0xE4, 0x00],
            10_000_000_000.0,
        ),
        (
            ValueType::I64,
            vec![0xFF, 0xFF, 0xFF, 0xFD, 0xAB, 0xF4, 0x1C, 0x00],
            -10_000_000_000.0,
        ),
        (
            ValueType::F64,
            vec![0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18],
            std::f64::consts::PI,
        ),
        (
            ValueType::F64,
            vec![0xC0, 0x5E, 0xDD, 0x2F, 0x1A, 0x9F, 0xBE, 0x77],
            -123.456,
        ),
        (ValueType::I16, vec![0x80, 0x00], -32768.0),
        (ValueType::U16, vec![0x01, 0x02], 258.0),
    ];
    for (ty, be, want) in cases {
        for order in Order::ALL {
            let words = layout(&be, order);
            assert_eq!(words.len(), usize::from(ty.words()));
            assert_eq!(
                decode_raw(&words, ty, order),
                Some(want),
                "{ty:?} {order:?} {words:04X?}"
            );
        }
    }
}

#[test]
fn too_few_words_is_no_value_and_extra_words_are_ignored() {
    assert_eq!(decode_raw(&[0x41C8], ValueType::F32, Order::Abcd), None);
    assert_eq!(decode_raw(&[], ValueType::U16, Order::Abcd), None);
    assert_eq!(
        decode_raw(&[7, 0xFFFF, 0xFFFF], ValueType::U16, Order::Abcd),
        Some(7.0)
    );
}

#[test]
fn scale_and_offset_make_the_reading_and_nan_is_no_reading() {
    let mut r = reg(Table::Holding, ValueType::I16, Order::Abcd);
    r.scale = 0.1;
    r.offset = -40.0;
    // 0x00FB = 251 → 25.1 - 40.
    let v = r.value_of_words(&[0x00FB]).unwrap();
    assert!((v - (-14.9)).abs() < 1e-9, "{v}");
    let f = reg(Table::Input, ValueType::F32, Order::Abcd);
    assert_eq!(f.value_of_words(&[0x7FC0, 0x0000]), None, "NaN");
    assert_eq!(f.value_of_words(&[0x7F80, 0x0000]), None, "+inf");
    let c = reg(Table::Coil, ValueType::U16, Order::Abcd);
    assert_eq!((c.value_of_bit(true), c.value_of_bit(false)), (1.0, 0.0));
    assert_eq!(c.span(), 1);
    assert_eq!(reg(Table::Holding, ValueType::F64, Order::Abcd).span(), 4);
}

#[test]
fn a_zero_offset_keeps_the_sign_of_zero_and_a_nonzero_one_still_applies() {
    let negative_zero = (-0.0f32).to_be_bytes();
    for order in [Order::Abcd, Order::Cdab, Order::Badc, Order::Dcba] {
        let f = reg(Table::Input, ValueType::F32, order);
        let v = f.value_of_words(&layout(&negative_zero, order)).unwrap();
        assert!(v == 0.0 && v.is_sign_negative(), "{order:?}: {v}");
        let v = f.value_of_words(&layout(&0.0f32.to_be_bytes(), order)).unwrap();
        assert!(v == 0.0 && v.is_sign_positive(), "{order:?}: {v}");
    }
    let mut scaled = reg(Table::Input, ValueType::F32, Order::Abcd);
    scaled.scale = 10.0;
    let v = scaled.value_of_words(&layout(&negative_zero, Order::Abcd)).unwrap();
    assert!(v == 0.0 && v.is_sign_negative(), "{v}");
    // An integer's 0 has no sign to keep, whatever the scale.
    let mut flipped = reg(Table::Holding, ValueType::I32, Order::Abcd);
    flipped.scale = -1.0;
    let v = flipped.value_of_words(&[0, 0]).unwrap();
    assert!(v == 0.0 && v.is_sign_positive(), "{v}");
    assert_eq!(flipped.value_of_words(&[0, 5]).unwrap(), -5.0);
    // A nonzero offset is still added, to a zero too.
    let mut offset = reg(Table::Input, ValueType::F32, Order::Abcd);
    offset.offset = -40.0;
    assert_eq!(offset.value_of_words(&layout(&negative_zero, Order::Abcd)), Some(-40.0));
    assert_eq!(offset.value_of_words(&layout(&25.0f32.to_be_bytes(), Order::Abcd)), Some(-15.0));
    offset.scale = 0.5;
    assert_eq!(offset.value_of_words(&layout(&25.0f32.to_be_bytes(), Order::Abcd)), Some(-27.5));
    let mut coil = reg(Table::Coil, ValueType::U16, Order::Abcd);
    coil.offset = 2.0;
    assert_eq!((coil.value_of_bit(true), coil.value_of_bit(false)), (3.0, 2.0));
}

#[test]
fn a_write_encodes_what_a_read_decodes_in_every_type_and_order() {
    for ty in ValueType::ALL {
        for order in Order::ALL {
            let mut r = reg(Table::Holding, ty, order);
            r.scale = 0.5;
            r.offset = 10.0;
            let value = 20.0; // raw 20
            let Encoded::Registers(words) = encode(&r, value, None).unwrap() else {
                panic!("registers expected");
            };
            assert_eq!(words.len(), usize::from(ty.words()));
            assert_eq!(r.value_of_words(&words), Some(value), "{ty:?} {order:?}");
        }
    }
    // The vector above, written: 25.0 as f32 word-swapped.
    let r = reg(Table::Holding, ValueType::F32, Order::Cdab);
    assert_eq!(
        encode(&r, 25.0, None),
        Ok(Encoded::Registers(vec![0x0000, 0x41C8]))
    );
    let r = reg(Table::Holding, ValueType::I16, Order::Abcd);
    assert_eq!(encode(&r, -2.0, None), Ok(Encoded::Registers(vec![0xFFFE])));
}

#[test]
fn a_write_refuses_what_the_register_cannot_hold() {
    let mut r = reg(Table::Holding, ValueType::U16, Order::Abcd);
    assert!(matches!(
        encode(&r, -1.0, None),
        Err(EncodeError::OutOfRange { .. })
    ));
    assert!(matches!(
        encode(&r, 65536.0, None),
        Err(EncodeError::OutOfRange { .. })
    ));
    assert!(matches!(
        encode(&r, f64::NAN, None),
        Err(EncodeError::NotFinite { .. })
    ));
    // The detail goes to operators: the range in words, not Rust's `5..=25`.
    for (bounds, says) in [
        ((5.0, 25.0), "30 is outside the allowed range: 5 to 25"),
        (
            (f64::NEG_INFINITY, 25.0),
            "30 is outside the allowed range: at most 25",
        ),
        (
            (31.0, f64::INFINITY),
            "30 is outside the allowed range: at least 31",
        ),
    ] {
        let e = encode(&r, 30.0, Some(bounds)).unwrap_err();
        assert!(matches!(e, EncodeError::OutOfBounds { .. }));
        assert_eq!(e.to_string(), says);
    }
    assert_eq!(
        encode(&r, 21.4, Some((5.0, 25.0))),
        Ok(Encoded::Registers(vec![21]))
    );
    r.scale = 0.0;
    assert_eq!(encode(&r, 1.0, None), Err(EncodeError::ZeroScale));
    let c = reg(Table::Coil, ValueType::U16, Order::Abcd);
    assert_eq!(encode(&c, 1.0, None), Ok(Encoded::Coil(true)));
    assert_eq!(encode(&c, 0.0, None), Ok(Encoded::Coil(false)));
    assert!(matches!(
        encode(&c, 0.5, None),
        Err(EncodeError::NotABit { .. })
    ));
    for table in [Table::Input, Table::Discrete] {
        let r = reg(table, ValueType::U16, Order::Abcd);
        assert_eq!(encode(&r, 1.0, None), Err(EncodeError::ReadOnly));
    }
    let r = reg(Table::Holding, ValueType::F32, Order::Abcd);
    assert!(matches!(
        encode(&r, 1e300, None),
        Err(EncodeError::OutOfRange { .. })
    ));
    // A valid JSON number that overflows once unscaled: never an infinity
    // on the wire, and said in a form a person can read.
    let mut r = reg(Table::Holding, ValueType::F64, Order::Abcd);
    r.scale = 0.1;
    let e = encode(&r, 1.7e308, None).unwrap_err();
    assert!(matches!(e, EncodeError::OutOfRange { .. }), "{e:?}");
    assert_eq!(e.to_string(), "inf does not fit a f64");
    r.scale = 1.0;
    r.offset = -1.7e308;
    assert!(encode(&r, 1.7e308, None).is_err());
    let e = encode(&reg(Table::Holding, ValueType::U16, Order::Abcd), 1e308, None).unwrap_err();
    assert_eq!(e.to_string(), "1e308 does not fit a u16");
}

/// A status word's bits come from its integer, never through an `f64`:
/// a 64-bit word with its top bit set lost its low bits (and rounded up
/// into a bit that was clear), a signed one with its top bit set read as
/// no bit at all.
#[test]
fn bits_of_wide_and_signed_words_are_the_words_own() {
    let bit = |ty: ValueType, order: Order, be: &[u8], n: u8| {
        let mut r = reg(Table::Holding, ty, order);
        r.bit = Some(n);
        r.value_of_words(&layout(be, order)).unwrap()
    };
    let top_and_bottom = 0x8000_0000_0000_0001u64.to_be_bytes();
    let low_54 = ((1u64 << 54) - 1).to_be_bytes();
    for order in [Order::Abcd, Order::Cdab, Order::Badc, Order::Dcba] {
        for (ty, be, n, want) in [
            (ValueType::U64, &top_and_bottom[..], 0, 1.0),
            (ValueType::U64, &top_and_bottom[..], 63, 1.0),
            (ValueType::U64, &top_and_bottom[..], 1, 0.0),
            (ValueType::U64, &low_54[..], 0, 1.0),
            (ValueType::U64, &low_54[..], 53, 1.0),
            (ValueType::U64, &low_54[..], 54, 0.0),
            (ValueType::I64, &top_and_bottom[..], 0, 1.0),
            (ValueType::I64, &top_and_bottom[..], 63, 1.0),
            (ValueType::I16, &[0xFF, 0xFE], 0, 0.0),
            (ValueType::I16, &[0xFF, 0xFE], 1, 1.0),
            (ValueType::I16, &[0xFF, 0xFE], 15, 1.0),
            (ValueType::I32, &[0x80, 0, 0, 4], 2, 1.0),
            (ValueType::I32, &[0x80, 0, 0, 4], 31, 1.0),
        ] {
            assert_eq!(bit(ty, order, be, n), want, "{ty:?} {order:?} bit {n}");
        }
    }
}
