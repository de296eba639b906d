//! What the gateway says about this adapter, in one place: its `type`,
//! its label for people, Home Assistant's model, its Cargo feature and its
//! fuzz targets. The dashboard, Home Assistant, the build's feature check
//! and the folder test (`registry::declaration_tests`) read it from here.

use gateway_core::KindInfo;

use crate::registry::Declaration;

/// `type = "mqtt"`.
pub const MQTT: Declaration = Declaration {
    info: KindInfo {
        kind: "mqtt",
        label: "MQTT",
        model: "MQTT sensor",
    },
    folder: "mqtt",
    feature: "mqtt",
    fuzz_targets: &["mqtt_packets"],
    links: &[],
};
