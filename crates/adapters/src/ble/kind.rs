//! What the gateway says about this adapter, in one place: its `type`,
//! its label for people, Home Assistant's model, its Cargo feature and its
//! fuzz targets. The dashboard, Home Assistant, the build's feature check
//! and the folder test (`registry::declaration_tests`) read it from here.

use gateway_core::component::LinkKind;
use gateway_core::KindInfo;

use crate::registry::Declaration;

/// `type = "ble"`.
pub const BLE: Declaration = Declaration {
    info: KindInfo {
        kind: "ble",
        label: "BLE",
        model: "Bluetooth LE sensor",
    },
    folder: "ble",
    feature: "ble",
    fuzz_targets: &[
        "ble_advert_line",
        "ble_bthome",
        "ble_ruuvi",
        "ble_xiaomi",
        "ble_dispatch",
    ],
    links: &[RADIO],
};

/// A Bluetooth radio: scanning.
pub const RADIO: LinkKind = LinkKind {
    name: "radio",
    down: "has no working Bluetooth radio (not scanning)",
};
