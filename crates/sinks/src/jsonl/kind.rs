//! What the gateway says about this output, in one place: its `[[sink]]`
//! type, its label for people, what it delivers and its feature. The
//! folder test (`sinks::declaration_tests`) and the architecture page
//! read it.

use gateway_core::output::{Delivers, OutputDeclaration};

/// `[[sink]] type = "jsonl"`.
pub const JSONL: OutputDeclaration = OutputDeclaration {
    kind: "jsonl",
    section: "[[sink]] type = \"jsonl\"",
    label: "JSON-lines file",
    delivers: &[
        Delivers::Readings,
        Delivers::Windows,
        Delivers::Statuses,
        Delivers::Alerts,
    ],
    feature: Some("jsonl"),
    folder: "sinks/src/jsonl",
    durable: true,
};
