#![allow(clippy::unwrap_used)]

use super::*;

fn read(table: Table, start: u16, count: u16) -> Request {
    Request::Read {
        table,
        start,
        count,
    }
}

#[test]
fn requests_are_framed_as_the_specification_shows() {
    // Modbus over Serial Line V1.02 and the usual vendor examples: read
    // 10 holding registers of unit 1 from 0 is 01 03 00 00 00 0A C5 CD.
    assert_eq!(
        rtu_frame(1, &read(Table::Holding, 0, 10)),
        [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]
    );
    assert_eq!(
        rtu_frame(1, &read(Table::Holding, 0, 1)),
        [0x01, 0x03, 0x00, 0x00, 0x00, 0x01, 0x84, 0x0A]
    );
    let coil = Request::WriteCoil {
        address: 0xAC,
        on: true,
    };
    assert_eq!(coil.pdu(), [0x05, 0x00, 0xAC, 0xFF, 0x00]);
    let many = Request::WriteRegisters {
        address: 1,
        words: vec![0x000A, 0x0102],
    };
    assert_eq!(
        many.pdu(),
        [0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02]
    );
    assert_eq!(
        many.shape(),
        Shape::Echo {
            function: 16,
            address: 1,
            value: 2
        }
    );
}

fn answer(body: &[u8]) -> Vec<u8> {
    let mut f = body.to_vec();
    f.extend(crc16(body).to_le_bytes());
    f
}

#[test]
fn answers_are_found_by_their_length_and_checked_against_their_request() {
    let a = answer(&[0x01, 0x03, 0x04, 0x41, 0xC8, 0x00, 0x00]);
    for cut in 0..a.len() {
        assert_eq!(parse(&a[..cut]), Parsed::Incomplete, "{cut} bytes");
    }
    let mut two = a.clone();
    two.extend(&a);
    let Parsed::Frame { len: 9, reply } = parse(&two) else {
        panic!("one frame of 9 bytes first")
    };
    let two_registers = read(Table::Holding, 0, 2);
    assert_eq!(
        check(&reply, 1, &two_registers),
        Checked::Words(vec![0x41C8, 0])
    );
    // The same answer for another unit, another function or another
    // count is not ours.
    assert_eq!(check(&reply, 2, &two_registers), Checked::NotOurs);
    assert_eq!(
        check(&reply, 1, &read(Table::Input, 0, 2)),
        Checked::NotOurs
    );
    assert_eq!(
        check(&reply, 1, &read(Table::Holding, 0, 1)),
        Checked::NotOurs
    );
    // A flipped bit: the CRC says so.
    let mut bad = a.clone();
    bad[4] ^= 0x40;
    assert_eq!(parse(&bad), Parsed::BadCrc { len: 9 });
    assert_eq!(parse(&[0x01, 0x2B, 0x00]), Parsed::Garbage);

    let exception = answer(&[0x01, 0x83, 0x02]);
    let Parsed::Frame { len: 5, reply } = parse(&exception) else {
        panic!("an exception is 5 bytes")
    };
    assert_eq!(check(&reply, 1, &two_registers), Checked::Exception(2));
    assert_eq!(
        check(&reply, 1, &read(Table::Input, 0, 2)),
        Checked::NotOurs
    );

    // Coils: packed low bit first, the padding dropped.
    let coils = answer(&[0x01, 0x01, 0x02, 0b0000_0101, 0b0000_0001]);
    let Parsed::Frame { reply, .. } = parse(&coils) else {
        panic!()
    };
    assert_eq!(
        check(&reply, 1, &read(Table::Coil, 0, 9)),
        Checked::Bits(vec![
            true, false, true, false, false, false, false, false, true
        ])
    );
    assert_eq!(
        check(&reply, 1, &read(Table::Coil, 0, 17)),
        Checked::NotOurs
    );
}

#[test]
fn a_write_is_acknowledged_only_by_its_own_echo() {
    let write = Request::WriteRegister {
        address: 10,
        value: 215,
    };
    let echo = answer(&[0x01, 0x06, 0x00, 0x0A, 0x00, 0xD7]);
    let Parsed::Frame { len: 8, reply } = parse(&echo) else {
        panic!()
    };
    assert_eq!(check(&reply, 1, &write), Checked::Written);
    let other_value = Request::WriteRegister {
        address: 10,
        value: 216,
    };
    assert_eq!(check(&reply, 1, &other_value), Checked::NotOurs);
    let other_address = Request::WriteRegister {
        address: 11,
        value: 215,
    };
    assert_eq!(check(&reply, 1, &other_address), Checked::NotOurs);
}

#[test]
fn any_bytes_parse_and_check_without_panicking() {
    // A cheap stand-in for a fuzz target: every 3-byte pattern of the
    // header's interesting values, then pseudo-random frames (a fixed
    // LCG), each parsed, checked against reads and writes of every kind,
    // and read as text.
    for a in 0..=255u8 {
        for b in [0u8, 1, 3, 5, 16, 0x83, 0xFF] {
            for c in [0u8, 1, 250, 255] {
                let _ = parse(&[a, b, c]);
                let _ = parse(&[a, b, c, 0, 0, 0, 0, 0]);
            }
        }
    }
    let requests = [
        read(Table::Coil, 0, 2000),
        read(Table::Discrete, 7, 9),
        read(Table::Holding, 0, 125),
        read(Table::Input, 65535, 1),
        Request::WriteCoil {
            address: 1,
            on: false,
        },
        Request::WriteRegisters {
            address: 0,
            words: vec![1, 2, 3],
        },
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as u8
    };
    for _ in 0..20_000 {
        let len = usize::from(next() % 40);
        let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
        if len > 2 && next() % 2 == 0 {
            // Half of them with a valid CRC, so the checks run too.
            bytes.truncate(len - 2);
            let crc = crc16(&bytes);
            bytes.extend(crc.to_le_bytes());
        }
        if let Parsed::Frame { len, reply } = parse(&bytes) {
            assert!(len <= bytes.len());
            for r in &requests {
                let _ = check(&reply, bytes[0], r);
            }
        }
        let words: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
            .collect();
        let text =
            super::super::registers::decode_text(&words, super::super::registers::Order::Badc);
        assert!(!text.chars().any(char::is_control));
    }
}

#[test]
fn tcp_requests_carry_the_mbap_header_and_answers_are_framed_by_its_length() {
    // Modbus Messaging on TCP/IP V1.0b: transaction 1, protocol 0, 6 bytes
    // follow, unit 1, then the same PDU as RTU's.
    let mut out = Vec::new();
    tcp_frame(1, 1, &read(Table::Holding, 0, 10), &mut out);
    assert_eq!(out, [0, 1, 0, 0, 0, 6, 1, 0x03, 0, 0, 0, 0x0A]);
    // Two registers answered (7, 0x1234), then the next answer's first byte.
    let answer = [0, 1, 0, 0, 0, 7, 1, 0x03, 4, 0, 7, 0x12, 0x34, 0];
    for cut in 0..answer.len() - 1 {
        assert_eq!(parse_tcp(&answer[..cut]), TcpParsed::Incomplete, "{cut}");
    }
    let TcpParsed::Frame {
        len,
        transaction,
        reply: Some(reply),
    } = parse_tcp(&answer)
    else {
        panic!("{:?}", parse_tcp(&answer));
    };
    assert_eq!((len, transaction), (13, 1));
    assert_eq!(
        check(&reply, 1, &read(Table::Holding, 0, 2)),
        Checked::Words(vec![7, 0x1234])
    );
    // Another unit's, or a byte count that is not the request's: not ours.
    assert_eq!(check(&reply, 2, &read(Table::Holding, 0, 2)), Checked::NotOurs);
    assert_eq!(check(&reply, 1, &read(Table::Holding, 0, 3)), Checked::NotOurs);
    // An exception, and a write's echo.
    let TcpParsed::Frame { reply: Some(e), .. } = parse_tcp(&[0, 9, 0, 0, 0, 3, 1, 0x83, 2])
    else {
        panic!()
    };
    assert_eq!(check(&e, 1, &read(Table::Holding, 0, 2)), Checked::Exception(2));
    let write = Request::WriteRegister {
        address: 4,
        value: 99,
    };
    let echo = [0, 2, 0, 0, 0, 6, 1, 0x06, 0, 4, 0, 99];
    let TcpParsed::Frame { reply: Some(w), .. } = parse_tcp(&echo) else {
        panic!()
    };
    assert_eq!(check(&w, 1, &write), Checked::Written);
}

#[test]
fn tcp_frames_no_server_sends_are_refused_not_misread() {
    // Another protocol id, a length of 0, 1 or over 254: garbage.
    for header in [
        [0, 1, 0, 1, 0, 6, 1],
        [0, 1, 0, 0, 0, 0, 1],
        [0, 1, 0, 0, 0, 1, 1],
        [0, 1, 0, 0, 1, 0, 1],
    ] {
        assert_eq!(parse_tcp(&header), TcpParsed::Garbage, "{header:?}");
    }
    // A byte count that disagrees with the header's length, and a function
    // no request of ours uses: framed (the next frame stays in step), no
    // answer in it.
    for frame in [
        &[0, 1, 0, 0, 0, 5, 1, 0x03, 4, 0, 7][..],
        &[0, 1, 0, 0, 0, 3, 1, 0x2B, 0][..],
        &[0, 1, 0, 0, 0, 4, 1, 0x83, 2, 2][..],
    ] {
        assert_eq!(
            parse_tcp(frame),
            TcpParsed::Frame {
                len: frame.len(),
                transaction: 1,
                reply: None
            },
            "{frame:?}"
        );
    }
}
