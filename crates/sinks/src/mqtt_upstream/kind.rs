//! What the gateway says about this output, in one place: its section,
//! its label for people, what it delivers and its feature. The folder
//! test (`sinks::declaration_tests`) and the architecture page read it.

use gateway_core::output::{Delivers, OutputDeclaration};

/// `[upstream]` (with `[outbox]`).
pub const UPSTREAM: OutputDeclaration = OutputDeclaration {
    kind: "upstream",
    section: "[upstream] and [outbox]",
    label: "Cloud MQTT broker",
    delivers: &[
        Delivers::Windows,
        Delivers::Statuses,
        Delivers::Alerts,
        Delivers::CommandResults,
        Delivers::ConfigStates,
    ],
    feature: None,
    folder: "sinks/src/mqtt_upstream",
    durable: true,
};
