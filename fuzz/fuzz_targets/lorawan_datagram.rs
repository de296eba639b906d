//! The LoRaWAN path from a packet forwarder's datagram to readings: any
//! bytes as a Semtech UDP datagram (then each CRC-good rxpk through MIC,
//! FCnt, decryption and the device's codec), or, when the first byte is
//! odd, the rest as a bare PHYPayload. One long-lived counter store carries
//! state between inputs, as in the gateway. It must never panic, an ACK
//! echoes version and token, and every reading is finite.
#![no_main]

use std::sync::Mutex;

use adapters::lorawan::codecs::Codec;
use adapters::lorawan::config::{DeviceCodec, FcntReset, LorawanDevice, ABP_RX1_DELAY};
use adapters::lorawan::dedup::Uplink;
use adapters::lorawan::fcnt::FcntStore;
use adapters::lorawan::semtech::{self, Datagram};
use adapters::lorawan::uplink::{self, Devices};
use gateway_core::{DeviceId, Timestamp};
use libfuzzer_sys::fuzz_target;

struct State {
    devices: Devices,
    store: FcntStore,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn key(hex: &str) -> adapters::lorawan::frame::Key {
    hex.parse().unwrap_or_else(|_| unreachable!())
}

fn device(
    id: &str,
    dev_addr: u32,
    nwk: &str,
    app: &str,
    codec: Codec,
    reset: FcntReset,
) -> LorawanDevice {
    LorawanDevice {
        dev_addr,
        nwk_s_key: key(nwk),
        app_s_key: key(app),
        codec: DeviceCodec::Named(codec),
        name: None,
        id: DeviceId::new(id).unwrap_or_else(|_| unreachable!()),
        fcnt_reset: reset,
        rx1_delay: ABP_RX1_DELAY,
    }
}

fn state() -> State {
    // The published vectors' sessions (tests/data/vectors/lorawan_uplinks.json).
    let lp = (
        "44024241ed4ce9a68c6a8bc055233fd3",
        "ec925802ae430ca77fd3dd73cb2cc588",
    );
    let rs = (
        "02020202020202020202020202020202",
        "01010101010101010101010101010101",
    );
    State {
        devices: Devices::new(vec![
            device(
                "lp",
                0x49BE_7DF1,
                lp.0,
                lp.1,
                Codec::CayenneLpp,
                FcntReset::Reject,
            ),
            device(
                "rs",
                0x0102_0304,
                rs.0,
                rs.1,
                Codec::Batch,
                FcntReset::Accept,
            ),
            device(
                "rs0",
                0x0102_0304,
                rs.1,
                "00000000000000000000000000000000",
                Codec::CompactI16,
                FcntReset::Reject,
            ),
        ]),
        store: FcntStore::in_memory(),
    }
}

fn uplink(state: &mut State, phy: &[u8]) {
    let up = Uplink {
        phy: phy.to_vec(),
        rssi: Some(-60),
        snr: Some(7.0),
        received: Timestamp::from_millis(1_763_719_200_000).unwrap_or_else(|_| unreachable!()),
        heard: Default::default(),
        first_heard: adapters::lorawan::dedup::Instant::now(),
    };
    if let Ok(accepted) = uplink::process(&up, &state.devices, &mut state.store) {
        assert!(accepted.readings.iter().all(|r| r.value().is_finite()));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.get_or_insert_with(state);
    if mode & 1 == 1 {
        uplink(state, rest);
        return;
    }
    let Ok(datagram) = semtech::parse(rest) else {
        return;
    };
    if let Datagram::PushData { header, data, .. } = datagram {
        let ack = semtech::push_ack(header);
        assert_eq!(&ack[..3], &rest[..3]);
        for rx in data.rxpk.into_iter().flatten() {
            if rx.crc_ok() {
                uplink(state, &rx.data);
            }
        }
    }
});
