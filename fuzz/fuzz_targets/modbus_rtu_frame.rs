//! Bytes on a Modbus RTU line as the master reads them, and the same bytes
//! as a Modbus TCP connection's (MBAP frames): every frame found in the
//! stream, checked against requests of every shape (the check is what
//! keeps a stale answer from passing for a fresh one), and the words of
//! each answer decoded as every type and byte order. None may panic, and
//! an answer is only ever taken for a request of its own shape.
#![no_main]

use adapters::modbus::frame::{self, Checked, Parsed, Reply, Request, TcpParsed};
use adapters::modbus::registers::{decode_raw, decode_text, Order, Table, ValueType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, mut rest)) = data.split_first() else {
        return;
    };
    let start = u16::from(seed) << 4;
    let count = u16::from(seed % 125) + 1;
    let requests = [
        Request::Read {
            table: Table::Holding,
            start,
            count,
        },
        Request::Read {
            table: Table::Input,
            start,
            count,
        },
        Request::Read {
            table: Table::Coil,
            start,
            count,
        },
        Request::Read {
            table: Table::Discrete,
            start,
            count,
        },
        Request::WriteCoil {
            address: start,
            on: seed & 1 == 1,
        },
        Request::WriteRegister {
            address: start,
            value: u16::from(seed),
        },
        Request::WriteRegisters {
            address: start,
            words: vec![u16::from(seed); usize::from(seed % 4) + 1],
        },
    ];
    while !rest.is_empty() {
        let skip = match frame::parse(rest) {
            Parsed::Incomplete => break,
            Parsed::Garbage => 1,
            Parsed::BadCrc { len } => len,
            Parsed::Frame { len, reply } => {
                check_all(&reply, seed, &requests);
                len
            }
        };
        assert!(skip > 0 && skip <= rest.len());
        rest = &rest[skip..];
    }
    let mut tcp = &data[1..];
    while let TcpParsed::Frame { len, reply, .. } = frame::parse_tcp(tcp) {
        if let Some(reply) = reply {
            check_all(&reply, seed, &requests);
        }
        assert!(len > 0 && len <= tcp.len());
        tcp = &tcp[len..];
    }
});

fn check_all(reply: &Reply, unit: u8, requests: &[Request]) {
    for request in requests {
        match frame::check(reply, unit, request) {
            Checked::Words(words) => {
                let Request::Read { count, .. } = request else {
                    panic!("words answered a write");
                };
                assert_eq!(words.len(), usize::from(*count));
                for ty in ValueType::ALL {
                    for order in Order::ALL {
                        let _ = decode_raw(&words, ty, order);
                    }
                }
                let _ = decode_text(&words, Order::Abcd);
            }
            Checked::Bits(bits) => {
                let Request::Read { count, .. } = request else {
                    panic!("bits answered a write");
                };
                assert_eq!(bits.len(), usize::from(*count));
            }
            Checked::Written | Checked::Exception(_) | Checked::NotOurs => {}
        }
    }
}
