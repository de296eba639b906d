//! What the gateway says about this adapter, in one place: its `type`,
//! its label for people, Home Assistant's model, its Cargo feature and its
//! fuzz targets. The dashboard, Home Assistant, the build's feature check
//! and the folder test (`registry::declaration_tests`) read it from here.

use gateway_core::KindInfo;

use crate::registry::Declaration;

/// `type = "coap"`.
pub const COAP: Declaration = Declaration {
    info: KindInfo {
        kind: "coap",
        label: "CoAP",
        model: "CoAP sensor",
    },
    folder: "coap",
    feature: "coap",
    fuzz_targets: &["coap_datagram"],
    links: &[],
};

/// `type = "coap_observe"`.
pub const COAP_OBSERVE: Declaration = Declaration {
    info: KindInfo {
        kind: "coap_observe",
        label: "CoAP",
        model: "CoAP sensor",
    },
    folder: "coap",
    feature: "coap",
    fuzz_targets: &["coap_datagram"],
    links: &[],
};
