//! What the gateway says about this adapter, in one place: its `type`,
//! its label for people, Home Assistant's model, its Cargo feature and its
//! fuzz targets. The dashboard, Home Assistant, the build's feature check
//! and the folder test (`registry::declaration_tests`) read it from here.

use gateway_core::KindInfo;

use crate::registry::Declaration;

/// `type = "semtech_udp"`.
pub const SEMTECH_UDP: Declaration = Declaration {
    info: KindInfo {
        kind: "semtech_udp",
        label: "LoRaWAN",
        model: "LoRaWAN device",
    },
    folder: "lorawan",
    feature: "lorawan",
    fuzz_targets: &["lorawan_datagram"],
    links: &[],
};
