//! What the gateway says about this adapter, in one place: its `type`,
//! its label for people, Home Assistant's model, its Cargo feature and its
//! fuzz targets. The dashboard, Home Assistant, the build's feature check
//! and the folder test (`registry::declaration_tests`) read it from here.

use gateway_core::KindInfo;

use crate::registry::Declaration;

/// `type = "tcp_line"`.
pub const TCP_LINE: Declaration = Declaration {
    info: KindInfo {
        kind: "tcp_line",
        label: "TCP",
        model: "TCP line sensor",
    },
    folder: "line",
    feature: "tcp_line",
    fuzz_targets: &["line_parsers"],
    links: &[],
};

/// `type = "serial_line"`.
pub const SERIAL_LINE: Declaration = Declaration {
    info: KindInfo {
        kind: "serial_line",
        label: "serial",
        model: "Serial line sensor",
    },
    folder: "line",
    feature: "serial",
    fuzz_targets: &["line_parsers"],
    links: &[],
};
