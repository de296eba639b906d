//! What the gateway says about this output, in one place: its section,
//! its label for people, what it delivers and its feature. The folder
//! test (`history::tests::the_folder_is_declared`) and the architecture
//! page read it.

use gateway_core::output::{Delivers, OutputDeclaration};

/// The dashboard's writer (`[dashboard]`), which keeps `history/`.
pub const HISTORY: OutputDeclaration = OutputDeclaration {
    kind: "dashboard",
    section: "[dashboard]",
    label: "On-device history",
    delivers: &[
        Delivers::Readings,
        Delivers::Windows,
        Delivers::Statuses,
        Delivers::Alerts,
        Delivers::CommandResults,
    ],
    feature: None,
    folder: "dashboard/src/history",
    durable: true,
};

#[cfg(test)]
mod tests {
    /// The same check as `sinks::declaration_tests` makes of the outputs
    /// in that crate: the folder has what an output's folder has, and
    /// its template's placeholders are all filled.
    #[test]
    fn the_folder_is_declared_and_documented() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = crates.join(super::HISTORY.folder);
        for file in ["kind.rs", "README.md", "template.toml"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(!text.trim().is_empty(), "{file} is missing or empty");
        }
        let template = super::super::template();
        assert!(!template.contains("${"), "a placeholder has no value");
        assert!(template.contains("[dashboard]"));
    }
}
