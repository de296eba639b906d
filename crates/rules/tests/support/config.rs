//! A `gateway.toml` fragment parsed as the gateway parses it, without
//! adapters: the rules tests need its `[gateway]`, rules and devices.

use gateway_core::config::Config;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct NoAdapter;

impl gateway_core::config::AdapterSpec for NoAdapter {
    const KINDS: &'static [&'static str] = &[];
    const SECTIONS: &'static [&'static str] = &[];
    type Sections = ();
    fn sections(_: &toml::Table, _: &mut gateway_core::config::Problems) {}
    fn from_table(
        _: &str,
        _: toml::Value,
        _: &str,
        _: &mut gateway_core::config::Problems,
    ) -> Option<Self> {
        None
    }
    fn name(&self) -> &str {
        ""
    }
}

/// The fragment's config; a problem panics with its message.
pub fn parse(toml: &str) -> Config<NoAdapter> {
    Config::<NoAdapter>::parse(toml).unwrap_or_else(|p| panic!("{p}"))
}
