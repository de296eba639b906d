//! What the gateway says about this output, in one place: its section,
//! its label for people, what it delivers and its feature. The folder
//! test (`sinks::declaration_tests`) and the architecture page read it.

use gateway_core::output::{Delivers, OutputDeclaration};

/// `[home_assistant]`.
pub const HOME_ASSISTANT: OutputDeclaration = OutputDeclaration {
    kind: "home_assistant",
    section: "[home_assistant]",
    label: "Home Assistant",
    delivers: &[
        Delivers::Readings,
        Delivers::Windows,
        Delivers::Statuses,
        Delivers::Alerts,
    ],
    feature: None,
    folder: "sinks/src/home_assistant",
    // It mirrors state on a broker and is never waited for.
    durable: false,
};
