//! cEMI (KNX's common External Message Interface, KNX 3.6.3 §4.1.4), the
//! frame a KNXnet/IP tunnel or router carries: here only its L_Data
//! service (a telegram on the bus) and, inside it, the group services
//! (GroupValueRead, GroupValueResponse, GroupValueWrite). Other message
//! codes, point-to-point telegrams and other application services are
//! told apart and left to the caller to count.

use super::address::{GroupAddress, IndividualAddress};
use super::frame::CodecError;

/// L_Data.req: a telegram the client asks the interface to send.
pub const L_DATA_REQ: u8 = 0x11;
/// L_Data.con: the interface's confirmation of a request (sent, or not).
pub const L_DATA_CON: u8 = 0x2E;
/// L_Data.ind: a telegram seen on the bus.
pub const L_DATA_IND: u8 = 0x29;

/// The application service of a group telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupService {
    Read,
    Response,
    Write,
}

impl GroupService {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Response => "response",
            Self::Write => "write",
        }
    }

    fn apci(self) -> u16 {
        match self {
            Self::Read => 0x000,
            Self::Response => 0x040,
            Self::Write => 0x080,
        }
    }
}

/// A group telegram's value as it travels: up to 6 bits folded into the
/// APCI octet (1.x booleans), or bytes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data<'a> {
    Small(u8),
    Bytes(&'a [u8]),
}

impl Data<'_> {
    /// The raw bytes as `knx monitor` prints them (`0c33`, or `01` for
    /// a small value).
    pub fn hex(&self) -> String {
        match self {
            Self::Small(v) => format!("{v:02x}"),
            Self::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        }
    }
}

/// An owned [`Data`], for telegrams the gateway sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Small(u8),
    Bytes(Vec<u8>),
}

impl Payload {
    pub fn as_data(&self) -> Data<'_> {
        match self {
            Self::Small(v) => Data::Small(*v),
            Self::Bytes(b) => Data::Bytes(b),
        }
    }
}

/// One L_Data frame, as far as the gateway reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LData<'a> {
    pub code: u8,
    /// Control field 1; in an L_Data.con its bit 0 set means the
    /// interface could not send the telegram.
    pub ctrl1: u8,
    pub source: IndividualAddress,
    pub telegram: Telegram<'a>,
}

/// What an L_Data frame is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Telegram<'a> {
    Group {
        destination: GroupAddress,
        service: GroupService,
        data: Data<'a>,
    },
    /// To an individual address, or a group telegram of another
    /// application service (a memory or property access, a broadcast).
    Other,
}

impl LData<'_> {
    /// An L_Data.con reporting the telegram was not sent.
    pub fn is_negative_confirmation(&self) -> bool {
        self.code == L_DATA_CON && self.ctrl1 & 0x01 != 0
    }
}

/// A cEMI message: an L_Data frame, or another message code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cemi<'a> {
    LData(LData<'a>),
    Other(u8),
}

/// Reads one cEMI message.
///
/// # Errors
/// [`CodecError`] when the frame is shorter than its fields say.
pub fn decode(b: &[u8]) -> Result<Cemi<'_>, CodecError> {
    let code = *b
        .first()
        .ok_or(CodecError::Truncated("cEMI message code"))?;
    if !matches!(code, L_DATA_REQ | L_DATA_CON | L_DATA_IND) {
        return Ok(Cemi::Other(code));
    }
    let info_len = usize::from(*b.get(1).ok_or(CodecError::Truncated("cEMI info length"))?);
    let rest = b
        .get(2 + info_len..)
        .ok_or(CodecError::Truncated("cEMI additional info"))?;
    if rest.len() < 7 {
        return Err(CodecError::Truncated("cEMI L_Data header"));
    }
    let ctrl1 = rest[0];
    let ctrl2 = rest[1];
    let source = IndividualAddress(u16::from_be_bytes([rest[2], rest[3]]));
    let destination = u16::from_be_bytes([rest[4], rest[5]]);
    let npdu_len = usize::from(rest[6]);
    let tpdu = rest
        .get(7..8 + npdu_len)
        .ok_or(CodecError::Truncated("cEMI TPDU"))?;
    let group = ctrl2 & 0x80 != 0;
    let telegram = if group && tpdu.len() >= 2 && tpdu[0] & 0xFC == 0 {
        // TPCI 0b000000xx: a data-group telegram (T_Data_Group).
        let apci = u16::from(tpdu[0] & 0x03) << 8 | u16::from(tpdu[1] & 0xC0);
        let service = match apci {
            0x000 => Some(GroupService::Read),
            0x040 => Some(GroupService::Response),
            0x080 => Some(GroupService::Write),
            _ => None,
        };
        match service {
            Some(service) => {
                let data = if tpdu.len() == 2 {
                    Data::Small(tpdu[1] & 0x3F)
                } else {
                    Data::Bytes(&tpdu[2..])
                };
                Telegram::Group {
                    destination: GroupAddress(destination),
                    service,
                    data,
                }
            }
            None => Telegram::Other,
        }
    } else {
        Telegram::Other
    };
    Ok(Cemi::LData(LData {
        code,
        ctrl1,
        source,
        telegram,
    }))
}

/// An L_Data frame for a group telegram the gateway sends: `code` is
/// L_Data.req in a tunnel, L_Data.ind on a routing multicast. Standard
/// frame, no repetition suppressed, low priority, hop count 6, the
/// source 0.0.0 in a tunnel (the interface puts its own in) or the
/// router's own address.
pub fn encode_group(
    code: u8,
    source: IndividualAddress,
    destination: GroupAddress,
    service: GroupService,
    payload: Option<&Payload>,
    out: &mut Vec<u8>,
) {
    // Ctrl1 0xBC: standard frame, do not repeat, not a system broadcast,
    // low priority, no ack requested. Ctrl2 0xE0: group address, hop count 6.
    out.extend_from_slice(&[code, 0x00, 0xBC, 0xE0]);
    out.extend_from_slice(&source.0.to_be_bytes());
    out.extend_from_slice(&destination.0.to_be_bytes());
    let apci = service.apci();
    match payload {
        None => out.extend_from_slice(&[1, (apci >> 8) as u8, apci as u8]),
        Some(Payload::Small(v)) => {
            out.extend_from_slice(&[1, (apci >> 8) as u8, apci as u8 | (v & 0x3F)]);
        }
        Some(Payload::Bytes(b)) => {
            // The NPDU length counts the octets after the TPCI one; a
            // group value is at most 14 bytes (16.000), far below 255.
            let len = u8::try_from(b.len() + 1).unwrap_or(u8::MAX);
            out.extend_from_slice(&[len, (apci >> 8) as u8, apci as u8]);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A GroupValueWrite of 21.5 °C (0x0C33) to 1/2/3 from 0.0.3, as knxd
    /// forwards xknx's telegram (captured in the tunnel).
    const WRITE_TEMP: [u8; 13] = [
        0x29, 0x00, 0xBC, 0xE0, 0x00, 0x03, 0x0A, 0x03, 0x03, 0x00, 0x80, 0x0C, 0x33,
    ];

    #[test]
    fn group_writes_reads_and_responses_read_with_their_data() {
        let Cemi::LData(f) = decode(&WRITE_TEMP).unwrap() else {
            panic!()
        };
        assert_eq!(f.source.to_string(), "0.0.3");
        assert_eq!(
            f.telegram,
            Telegram::Group {
                destination: "1/2/3".parse().unwrap(),
                service: GroupService::Write,
                data: Data::Bytes(&[0x0C, 0x33]),
            }
        );
        // A switch on: the bit folded into the APCI octet.
        let on = [
            0x29, 0x00, 0xBC, 0xE0, 0x11, 0x01, 0x00, 0x01, 0x01, 0x00, 0x81,
        ];
        let Cemi::LData(f) = decode(&on).unwrap() else {
            panic!()
        };
        assert!(matches!(
            f.telegram,
            Telegram::Group {
                service: GroupService::Write,
                data: Data::Small(1),
                ..
            }
        ));
        // With additional info (a router's RF or timestamp fields) skipped.
        let read = [
            0x29, 0x02, 0x03, 0x00, 0xBC, 0xE0, 0x11, 0x01, 0x00, 0x01, 0x01, 0x00, 0x00,
        ];
        let Cemi::LData(f) = decode(&read).unwrap() else {
            panic!()
        };
        assert!(matches!(
            f.telegram,
            Telegram::Group {
                service: GroupService::Read,
                data: Data::Small(0),
                ..
            }
        ));
        let response = [
            0x29, 0x00, 0xBC, 0xE0, 0x11, 0x01, 0x00, 0x01, 0x02, 0x00, 0x40, 0x80,
        ];
        let Cemi::LData(f) = decode(&response).unwrap() else {
            panic!()
        };
        assert!(matches!(
            f.telegram,
            Telegram::Group {
                service: GroupService::Response,
                data: Data::Bytes(&[0x80]),
                ..
            }
        ));
    }

    #[test]
    fn other_telegrams_and_codes_are_told_apart_and_short_ones_refused() {
        // To an individual address (ctrl2 bit 7 clear).
        let p2p = [
            0x29, 0x00, 0xBC, 0x60, 0x11, 0x01, 0x11, 0x02, 0x01, 0x00, 0x80,
        ];
        assert!(matches!(
            decode(&p2p).unwrap(),
            Cemi::LData(LData {
                telegram: Telegram::Other,
                ..
            })
        ));
        // A connected-mode TPCI.
        let tpci = [
            0x29, 0x00, 0xBC, 0xE0, 0x11, 0x01, 0x0A, 0x03, 0x01, 0x42, 0x80,
        ];
        assert!(matches!(
            decode(&tpci).unwrap(),
            Cemi::LData(LData {
                telegram: Telegram::Other,
                ..
            })
        ));
        assert_eq!(decode(&[0xF0, 0x00]).unwrap(), Cemi::Other(0xF0));
        for cut in 0..WRITE_TEMP.len() {
            assert!(decode(&WRITE_TEMP[..cut]).is_err(), "{cut}");
        }
        assert!(decode(&[0x29, 0xFF, 0, 0]).is_err());
    }

    #[test]
    fn a_sent_telegram_reads_back_as_itself_and_a_negative_confirmation_is_seen() {
        let ga: GroupAddress = "5/6/7".parse().unwrap();
        for (service, payload) in [
            (GroupService::Read, None),
            (GroupService::Write, Some(Payload::Small(1))),
            (
                GroupService::Response,
                Some(Payload::Bytes(vec![1, 2, 3, 4])),
            ),
        ] {
            let mut out = Vec::new();
            encode_group(
                L_DATA_REQ,
                IndividualAddress(0),
                ga,
                service,
                payload.as_ref(),
                &mut out,
            );
            let Cemi::LData(f) = decode(&out).unwrap() else {
                panic!()
            };
            let want = payload.as_ref().map_or(Data::Small(0), Payload::as_data);
            assert_eq!(
                f.telegram,
                Telegram::Group {
                    destination: ga,
                    service,
                    data: want
                }
            );
            assert!(!f.is_negative_confirmation());
            out[0] = L_DATA_CON;
            out[2] |= 1;
            let Cemi::LData(f) = decode(&out).unwrap() else {
                panic!()
            };
            assert!(f.is_negative_confirmation());
        }
    }
}
