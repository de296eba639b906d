//! LoRaWAN 1.0.x MAC commands (spec §5, Class B §14): split and named, with
//! their payload kept raw. Counting them per CID is what the gateway needs;
//! acting on them is a network server's job.
//!
//! Our own CID table rather than the `lorawan` crate's `UplinkMacCommand`,
//! which has no Class B commands (0x10–0x13): a device answering a
//! PingSlotChannelReq in FOpts (lora-packet issue #18) must not make the
//! rest unreadable.

/// One MAC command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacCommand {
    pub cid: u8,
    /// Spec name, e.g. `LinkADRAns`.
    pub name: &'static str,
    pub payload: Vec<u8>,
}

/// Name and payload length of a CID, per direction.
fn spec(cid: u8, uplink: bool) -> Option<(&'static str, usize)> {
    Some(if uplink {
        match cid {
            0x02 => ("LinkCheckReq", 0),
            0x03 => ("LinkADRAns", 1),
            0x04 => ("DutyCycleAns", 0),
            0x05 => ("RXParamSetupAns", 1),
            0x06 => ("DevStatusAns", 2),
            0x07 => ("NewChannelAns", 1),
            0x08 => ("RXTimingSetupAns", 0),
            0x09 => ("TxParamSetupAns", 0),
            0x0A => ("DlChannelAns", 1),
            0x0D => ("DeviceTimeReq", 0),
            0x10 => ("PingSlotInfoReq", 1),
            0x11 => ("PingSlotChannelAns", 1),
            0x12 => ("BeaconTimingReq", 0),
            0x13 => ("BeaconFreqAns", 1),
            _ => return None,
        }
    } else {
        match cid {
            0x02 => ("LinkCheckAns", 2),
            0x03 => ("LinkADRReq", 4),
            0x04 => ("DutyCycleReq", 1),
            0x05 => ("RXParamSetupReq", 4),
            0x06 => ("DevStatusReq", 0),
            0x07 => ("NewChannelReq", 5),
            0x08 => ("RXTimingSetupReq", 1),
            0x09 => ("TxParamSetupReq", 1),
            0x0A => ("DlChannelReq", 4),
            0x0D => ("DeviceTimeAns", 5),
            0x10 => ("PingSlotInfoAns", 0),
            0x11 => ("PingSlotChannelReq", 4),
            0x12 => ("BeaconTimingAns", 3),
            0x13 => ("BeaconFreqReq", 3),
            _ => return None,
        }
    })
}

/// Splits a MAC command area (FOpts, or FRMPayload on FPort 0). Stops at the
/// first unknown CID or cut-off payload, returning the bytes from there on:
/// without a length, nothing after them can be read.
pub fn parse(bytes: &[u8], uplink: bool) -> (Vec<MacCommand>, &[u8]) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some((&cid, tail)) = rest.split_first() {
        let Some((name, len)) = spec(cid, uplink) else {
            break;
        };
        let Some(payload) = tail.get(..len) else {
            break;
        };
        out.push(MacCommand {
            cid,
            name,
            payload: payload.to_vec(),
        });
        rest = &tail[len..];
    }
    (out, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(cid: u8, name: &'static str, payload: &[u8]) -> MacCommand {
        MacCommand {
            cid,
            name,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn mac_command_areas() {
        type Row = (
            &'static str,
            &'static [u8],
            bool,
            Vec<MacCommand>,
            &'static [u8],
        );
        let rows: Vec<Row> = vec![
            (
                "lora-rs-fopts-no-fport: LinkCheckReq + LinkADRAns",
                &[0x02, 0x03, 0x05],
                true,
                vec![
                    cmd(0x02, "LinkCheckReq", &[]),
                    cmd(0x03, "LinkADRAns", &[0x05]),
                ],
                &[],
            ),
            (
                "lora-packet issue 18: TxParamSetupAns + PingSlotChannelAns",
                &[0x09, 0x11, 0x03],
                true,
                vec![
                    cmd(0x09, "TxParamSetupAns", &[]),
                    cmd(0x11, "PingSlotChannelAns", &[0x03]),
                ],
                &[],
            ),
            (
                "same bytes downlink: LinkCheckAns",
                &[0x02, 0x03, 0x05],
                false,
                vec![cmd(0x02, "LinkCheckAns", &[0x03, 0x05])],
                &[],
            ),
            ("empty", &[], true, vec![], &[]),
            (
                "proprietary CID stops the walk",
                &[0x02, 0x80, 0x01],
                true,
                vec![cmd(0x02, "LinkCheckReq", &[])],
                &[0x80, 0x01],
            ),
            (
                "cut-off DevStatusAns",
                &[0x06, 0xFF],
                true,
                vec![],
                &[0x06, 0xFF],
            ),
        ];
        for (label, bytes, uplink, want, rest) in rows {
            assert_eq!(parse(bytes, uplink), (want, rest), "{label}");
        }
    }
}
