//! What the gateway says about this output, in one place: its `[[sink]]`
//! type, its label for people, what it delivers and its feature. The
//! folder test (`sinks::declaration_tests`) and the architecture page
//! read it.

use gateway_core::output::{Delivers, OutputDeclaration};

/// `[[sink]] type = "influxdb"`.
pub const INFLUXDB: OutputDeclaration = OutputDeclaration {
    kind: "influxdb",
    section: "[[sink]] type = \"influxdb\"",
    label: "InfluxDB",
    delivers: &[Delivers::Readings, Delivers::Windows, Delivers::Alerts],
    feature: Some("influxdb"),
    folder: "sinks/src/influxdb",
    durable: true,
};
