//! What the gateway says about this adapter, in one place: its `type`,
//! its label for people, Home Assistant's model, its Cargo feature and its
//! fuzz targets. The dashboard, Home Assistant, the build's feature check
//! and the folder test (`registry::declaration_tests`) read it from here.

use gateway_core::KindInfo;

use crate::registry::Declaration;

/// `type = "modbus"`.
pub const MODBUS: Declaration = Declaration {
    info: KindInfo {
        kind: "modbus",
        label: "Modbus",
        model: "Modbus device",
    },
    folder: "modbus",
    feature: "modbus",
    fuzz_targets: &["modbus_rtu_frame"],
    links: &[],
};
