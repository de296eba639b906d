//! Modbus requests and RTU frames (Modbus over Serial Line V1.02 §2.5.1,
//! PDUs of the Application Protocol V1.1b3 §6): a request built, the
//! answer found in the bytes received and checked against the request it
//! must answer. Pure.
//!
//! What tells one answer from another is its [`Shape`]: a read's answer
//! carries only its function code and byte count (not the address read),
//! so two reads of one register each, at 0 and at 100, have answers of
//! the same shape; a write's answer echoes the address and value. A stale
//! answer can only pass for a fresh one of the same shape and unit; the
//! RTU line ([`super::rtu`]) keeps the shapes it may still receive and
//! never trusts an answer of one of them.

use super::registers::Table;

/// One request, as the adapter makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Function 1, 2, 3 or 4 by table.
    Read {
        table: Table,
        start: u16,
        count: u16,
    },
    /// Function 5.
    WriteCoil { address: u16, on: bool },
    /// Function 6.
    WriteRegister { address: u16, value: u16 },
    /// Function 16.
    WriteRegisters { address: u16, words: Vec<u16> },
}

/// The part of an answer that says which request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A read's answer: its function and byte count.
    Data { function: u8, bytes: u8 },
    /// A write's answer: its function and the echoed address and value
    /// (function 16: the quantity written).
    Echo {
        function: u8,
        address: u16,
        value: u16,
    },
}

impl Shape {
    pub fn function(self) -> u8 {
        match self {
            Self::Data { function, .. } | Self::Echo { function, .. } => function,
        }
    }
}

/// The function code reading `table`.
pub fn read_function(table: Table) -> u8 {
    match table {
        Table::Coil => 1,
        Table::Discrete => 2,
        Table::Holding => 3,
        Table::Input => 4,
    }
}

/// The bytes of data a read of `count` items of `table` is answered with.
fn data_bytes(table: Table, count: u16) -> usize {
    if table.is_bits() {
        usize::from(count).div_ceil(8)
    } else {
        2 * usize::from(count)
    }
}

impl Request {
    pub fn function(&self) -> u8 {
        match self {
            Self::Read { table, .. } => read_function(*table),
            Self::WriteCoil { .. } => 5,
            Self::WriteRegister { .. } => 6,
            Self::WriteRegisters { .. } => 16,
        }
    }

    /// The shape of its answer (other than an exception).
    pub fn shape(&self) -> Shape {
        let function = self.function();
        match self {
            Self::Read { table, count, .. } => Shape::Data {
                function,
                // At most 250: the quantity was checked against the
                // protocol's limits (125 registers, 2000 bits).
                bytes: u8::try_from(data_bytes(*table, *count)).unwrap_or(u8::MAX),
            },
            Self::WriteCoil { address, on } => Shape::Echo {
                function,
                address: *address,
                value: if *on { 0xFF00 } else { 0x0000 },
            },
            Self::WriteRegister { address, value } => Shape::Echo {
                function,
                address: *address,
                value: *value,
            },
            Self::WriteRegisters { address, words } => Shape::Echo {
                function,
                address: *address,
                value: u16::try_from(words.len()).unwrap_or(u16::MAX),
            },
        }
    }

    /// Its PDU: function code and data.
    pub fn pdu(&self) -> Vec<u8> {
        let mut pdu = vec![self.function()];
        match self {
            Self::Read { start, count, .. } => {
                pdu.extend(start.to_be_bytes());
                pdu.extend(count.to_be_bytes());
            }
            Self::WriteCoil { .. } | Self::WriteRegister { .. } => {
                let Shape::Echo { address, value, .. } = self.shape() else {
                    return pdu;
                };
                pdu.extend(address.to_be_bytes());
                pdu.extend(value.to_be_bytes());
            }
            Self::WriteRegisters { address, words } => {
                pdu.extend(address.to_be_bytes());
                let n = u16::try_from(words.len()).unwrap_or(u16::MAX);
                pdu.extend(n.to_be_bytes());
                pdu.push(u8::try_from(2 * words.len()).unwrap_or(u8::MAX));
                for w in words {
                    pdu.extend(w.to_be_bytes());
                }
            }
        }
        pdu
    }
}

/// CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF); sent low
/// byte first.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for b in bytes {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The RTU frame of `request` to `unit`: address, PDU, CRC.
pub fn rtu_frame(unit: u8, request: &Request) -> Vec<u8> {
    let mut frame = vec![unit];
    frame.extend(request.pdu());
    let crc = crc16(&frame);
    frame.extend(crc.to_le_bytes());
    frame
}

/// An answer as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A read's answer: the data after the byte count.
    Data {
        unit: u8,
        function: u8,
        data: Vec<u8>,
    },
    /// A write's answer.
    Echo {
        unit: u8,
        function: u8,
        address: u16,
        value: u16,
    },
    /// An exception response to `function`.
    Exception { unit: u8, function: u8, code: u8 },
}

impl Reply {
    pub fn unit(&self) -> u8 {
        match self {
            Self::Data { unit, .. } | Self::Echo { unit, .. } | Self::Exception { unit, .. } => {
                *unit
            }
        }
    }
}

/// What the bytes received so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole frame yet.
    Incomplete,
    /// A frame of `len` bytes whose CRC checks.
    Frame { len: usize, reply: Reply },
    /// A frame of `len` bytes whose CRC does not check (noise, a
    /// collision, a wrong baud rate).
    BadCrc { len: usize },
    /// Bytes that start no frame a master is answered with (a function
    /// code no request of ours uses).
    Garbage,
}

/// The first frame in `buf`, framed by its function code's length.
pub fn parse(buf: &[u8]) -> Parsed {
    let (Some(&unit), Some(&function)) = (buf.first(), buf.get(1)) else {
        return Parsed::Incomplete;
    };
    let len = match function {
        f if f & 0x80 != 0 => 5,
        1..=4 => match buf.get(2) {
            Some(&n) => 5 + usize::from(n),
            None => return Parsed::Incomplete,
        },
        5 | 6 | 15 | 16 => 8,
        _ => return Parsed::Garbage,
    };
    let Some(frame) = buf.get(..len) else {
        return Parsed::Incomplete;
    };
    let (body, crc) = frame.split_at(len - 2);
    if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
        return Parsed::BadCrc { len };
    }
    // The length came from the function code, so the PDU always reads.
    match reply_of_pdu(unit, &body[1..]) {
        Some(reply) => Parsed::Frame { len, reply },
        None => Parsed::Garbage,
    }
}

/// The answer a PDU (function code and data) of `unit` holds; `None` when
/// its length does not fit its function code.
fn reply_of_pdu(unit: u8, pdu: &[u8]) -> Option<Reply> {
    let (&function, rest) = pdu.split_first()?;
    match (function, rest) {
        (f, &[code]) if f & 0x80 != 0 => Some(Reply::Exception {
            unit,
            function: f & 0x7F,
            code,
        }),
        (1..=4, [n, data @ ..]) if data.len() == usize::from(*n) => Some(Reply::Data {
            unit,
            function,
            data: data.to_vec(),
        }),
        (5 | 6 | 15 | 16, &[a0, a1, v0, v1]) => Some(Reply::Echo {
            unit,
            function,
            address: u16::from_be_bytes([a0, a1]),
            value: u16::from_be_bytes([v0, v1]),
        }),
        _ => None,
    }
}

/// The MBAP header (Modbus Messaging on TCP/IP V1.0b §3.1.3): transaction
/// id, protocol id (0), the length of what follows, the unit id.
const MBAP: usize = 7;

/// A request as Modbus TCP sends it, its MBAP header first, into `out`.
pub fn tcp_frame(transaction: u16, unit: u8, request: &Request, out: &mut Vec<u8>) {
    let pdu = request.pdu();
    out.clear();
    out.extend(transaction.to_be_bytes());
    out.extend([0, 0]);
    out.extend(u16::try_from(pdu.len() + 1).unwrap_or(u16::MAX).to_be_bytes());
    out.push(unit);
    out.extend(pdu);
}

/// What the bytes received over TCP so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpParsed {
    /// Not a whole frame yet.
    Incomplete,
    /// A frame of `len` bytes for `transaction`; `reply` is `None` when
    /// its PDU is not an answer's (a length that does not fit its
    /// function code, a function no request of ours uses).
    Frame {
        len: usize,
        transaction: u16,
        reply: Option<Reply>,
    },
    /// A header no Modbus TCP server sends (another protocol id, a length
    /// out of the 2..=254 a PDU and its unit take): nothing after it can
    /// be framed.
    Garbage,
}

/// The first frame in `buf`, framed by its MBAP header's length.
pub fn parse_tcp(buf: &[u8]) -> TcpParsed {
    let Some(header) = buf.get(..MBAP) else {
        return TcpParsed::Incomplete;
    };
    let be = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let length = usize::from(be(4));
    if be(2) != 0 || !(2..=254).contains(&length) {
        return TcpParsed::Garbage;
    }
    let len = MBAP - 1 + length;
    let Some(pdu) = buf.get(MBAP..len) else {
        return TcpParsed::Incomplete;
    };
    TcpParsed::Frame {
        len,
        transaction: be(0),
        reply: reply_of_pdu(header[6], pdu),
    }
}

/// What an answer is to the request it came for.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Words(Vec<u16>),
    Bits(Vec<bool>),
    /// The write was acknowledged with its own address and value.
    Written,
    Exception(u8),
    /// Not an answer to this request (another unit, function, byte count
    /// or echo): a stale or stray frame.
    NotOurs,
}

/// Checks `reply` against `request` to `unit`: the unit, the function,
/// the byte count of a read, the echo of a write.
pub fn check(reply: &Reply, unit: u8, request: &Request) -> Checked {
    if reply.unit() != unit {
        return Checked::NotOurs;
    }
    match (reply, request, request.shape()) {
        (Reply::Exception { function, code, .. }, _, _) if *function == request.function() => {
            Checked::Exception(*code)
        }
        (
            Reply::Data { function, data, .. },
            Request::Read { table, count, .. },
            Shape::Data { function: f, bytes },
        ) if *function == f && data.len() == usize::from(bytes) => {
            if table.is_bits() {
                Checked::Bits(
                    (0..usize::from(*count))
                        .map(|i| data[i / 8] & (1 << (i % 8)) != 0)
                        .collect(),
                )
            } else {
                Checked::Words(
                    data.chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect(),
                )
            }
        }
        (
            Reply::Echo {
                function,
                address,
                value,
                ..
            },
            _,
            shape,
        ) if shape
            == Shape::Echo {
                function: *function,
                address: *address,
                value: *value,
            } =>
        {
            Checked::Written
        }
        _ => Checked::NotOurs,
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
