//! What the gateway says about this adapter, in one place: its `type`,
//! its label for people, Home Assistant's model, its Cargo feature and its
//! fuzz targets. The dashboard, Home Assistant, the build's feature check
//! and the folder test (`registry::declaration_tests`) read it from here.

use gateway_core::component::LinkKind;
use gateway_core::KindInfo;

use crate::registry::Declaration;

/// `type = "knx"`.
pub const KNX: Declaration = Declaration {
    info: KindInfo {
        kind: "knx",
        label: "KNX",
        model: "KNX device",
    },
    folder: "knx",
    feature: "knx",
    fuzz_targets: &["knx_frame"],
    links: &[INTERFACE],
};

/// A KNXnet/IP interface: tunnel connected (or routing multicast joined).
pub const INTERFACE: LinkKind = LinkKind {
    name: "knx_interface",
    down: "has no tunnel to its KNXnet/IP interface (or has not joined the routing multicast)",
};
