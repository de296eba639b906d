//! What an adapter kind tells the rest of the gateway, once.
//!
//! Each adapter's folder declares its kinds in `kind.rs` (a [`Declaration`]
//! each: `type`, label, Home Assistant model, feature, fuzz targets); its
//! config module implements [`AdapterKind`] with that declaration (and, for
//! a family that owns a top-level section such as `[lorawan]`,
//! [`OwnedSection`]); the one list in the crate root names them all and
//! generates the family's module, the `[[adapter]]` enum, the accepted
//! `type`s, parsing, building, the owned sections, the config template and
//! [`crate::DECLARATIONS`] from it. Adding an adapter is its folder, an
//! entry in that list and a feature (docs/architecture.md, "Adding an
//! adapter").

use std::fmt;
use std::path::PathBuf;

use gateway_core::component::LinkKind;
use gateway_core::config::{DeviceConfig, Problems};
use gateway_core::{Adapter, KindInfo};

/// Everything the rest of the gateway knows of one adapter kind, declared
/// once in its folder's `kind.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declaration {
    /// `type`, label for people, Home Assistant's model.
    pub info: KindInfo,
    /// Its folder under `crates/adapters/src/`.
    pub folder: &'static str,
    /// The Cargo feature that builds it in, of the same name in `adapters`
    /// and `edge-gateway`.
    pub feature: &'static str,
    /// Its decoders' cargo-fuzz targets (`fuzz/Cargo.toml`); none where
    /// the decoding is a shared payload format fuzzed elsewhere.
    pub fuzz_targets: &'static [&'static str],
    /// The kinds of link of its own it reports ([`ADAPTER_LINK`]), with
    /// what `/health` says while one is down; none where it holds only
    /// links several protocols share ([`gateway_core::component::LINKS`]).
    ///
    /// [`ADAPTER_LINK`]: gateway_core::component::ADAPTER_LINK
    pub links: &'static [LinkKind],
}

/// One `[[adapter]] type = "…"`: its config, parsed from its table.
pub trait AdapterKind: Sized + Clone + fmt::Debug + PartialEq {
    /// What is said of it everywhere else: the folder's `kind.rs`.
    const DECLARATION: Declaration;

    /// The `type` value that selects it.
    const KIND: &'static str = Self::DECLARATION.info.kind;

    /// Parses the table (with `type` already removed), recording problems
    /// under `path` with their full key paths.
    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self>;

    /// The adapter's unique `name`.
    fn name(&self) -> &str;

    /// The socket it listens on, for `validate` to refuse two adapters
    /// (or an adapter and `[metrics]`) on one.
    fn listens_on(&self) -> Option<(gateway_core::config::Transport, std::net::SocketAddr)> {
        None
    }

    /// A runnable adapter for this config.
    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter>;

    /// This kind's part of the `configfile` template. Kinds of one family
    /// that share a commented block leave it to the first of them.
    fn template() -> String {
        String::new()
    }
}

/// A folder's `template.toml` with each `${name}` replaced by its value.
/// The text lives beside the code as a plain file people can read; the
/// defaults it shows still come from the code, so they cannot go stale.
/// Every family uses it; with none built in (a crate that needs only the
/// config types, `gateway-settings` checked alone), nothing does.
#[cfg_attr(
    not(any(
        feature = "mqtt",
        feature = "coap",
        feature = "lorawan",
        feature = "ble",
        feature = "tcp_line",
        feature = "serial",
        feature = "modbus",
        feature = "bacnet",
        feature = "knx"
    )),
    allow(dead_code)
)]
pub(crate) fn render_template(text: &str, values: &[(&str, String)]) -> String {
    gateway_core::config::template::fill(text, values)
}

/// A top-level section owned by an adapter family (`[lorawan]` with its
/// `[[lorawan.device]]`), parsed from the file's root table.
pub trait OwnedSection: Sized + Clone + fmt::Debug + PartialEq + Default {
    /// Its key in the root table.
    const NAME: &'static str;

    /// Parses it from the root table (absent: the default), recording
    /// problems with their key paths.
    fn parse(root: &toml::Table, problems: &mut Problems) -> Self;

    /// Devices it names, as registry entries, so their names go upstream
    /// like those of `[[device]]` (which wins for the same id).
    fn registry_devices(&self) -> Vec<DeviceConfig> {
        Vec::new()
    }

    /// What a valid section probably gets wrong, one line each with its
    /// key path: `validate` prints them, `run` logs them.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What adapters need to know about the gateway they run in.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub gateway_id: String,
    /// `gateway.state_dir`: where adapters keep durable state (LoRaWAN
    /// frame counters).
    pub state_dir: PathBuf,
    pub sections: crate::Sections,
    /// The ids of `[[device]]`: what `accept = "registered"` admits beside
    /// an adapter family's own device list.
    pub registered: Vec<String>,
    /// `[[device]] writable`: device id → metrics a command may set
    /// (through an adapter with a command topic).
    pub writable: Vec<(String, Vec<String>)>,
}

/// Generates, from one list of adapter families (a folder each, behind its
/// `#[cfg(...)]`, with its kinds and the top-level section it owns, if
/// any): the family's `pub mod`, `DECLARATIONS` and `KINDS`, the
/// `AdapterConfig` enum (a variant per kind), its `AdapterSpec`
/// implementation, `kind()`, `build()`, the `Sections` struct (a field per
/// section, named after its family's module), `template()` and
/// `deprecated_names_in_use()` (from the families that keep old names,
/// `deprecated`). The family's `cfg` applies to everything generated for
/// it; a `#[cfg(...)]` before a kind narrows it (`tcp_line` and
/// `serial_line` share `line/`).
macro_rules! adapter_registry {
    (
        $(
            #[cfg($fcfg:meta)]
            $module:ident {
                $( $(#[$kmeta:meta])* $variant:ident => $kty:ty ),+
                $( ; section $sty:ty )?
                $( ; deprecated $deprecated:path )?
                $( ; tool $(#[doc = $tdoc:literal])* $tool:ident($targs:ty) => $trun:path )?
            }
        )*
    ) => {
        $( #[cfg($fcfg)] pub mod $module; )*

        /// The top-level sections owned by adapter families.
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct Sections {
            $( $( #[cfg($fcfg)] pub $module: $sty, )? )*
        }

        impl Sections {
            /// Devices these sections name, as registry entries.
            pub fn registry_devices(&self) -> Vec<gateway_core::config::DeviceConfig> {
                #[allow(unused_mut)]
                let mut out = Vec::new();
                $( $( #[cfg($fcfg)] out.extend(<$sty as $crate::registry::OwnedSection>::registry_devices(&self.$module)); )? )*
                out
            }

            /// The sections that differ from `other`'s, each by its own
            /// name (a reload reports them).
            // `other` is unused when no section's feature is on (`mqtt` alone).
            #[allow(unused_variables)]
            pub fn changed(&self, other: &Self) -> Vec<&'static str> {
                #[allow(unused_mut)]
                let mut out = Vec::new();
                $( $( #[cfg($fcfg)] if self.$module != other.$module {
                    out.push(<$sty as $crate::registry::OwnedSection>::NAME);
                } )? )*
                out
            }

            /// What these sections probably get wrong, for `validate`.
            pub fn notes(&self) -> Vec<String> {
                #[allow(unused_mut)]
                let mut out = Vec::new();
                $( $( #[cfg($fcfg)] out.extend(<$sty as $crate::registry::OwnedSection>::notes(&self.$module)); )? )*
                out
            }
        }

        /// One sentence per deprecated name (a LoRaWAN codec's old name)
        /// the config parsed since the process started and not yet
        /// returned, from every family built in that keeps such names:
        /// each is told once per process, however often the config is
        /// reloaded.
        pub fn deprecated_names_in_use() -> Vec<String> {
            #[allow(unused_mut)]
            let mut out = Vec::new();
            $( $( #[cfg($fcfg)] out.extend($deprecated()); )? )*
            out
        }

        /// Every kind built in, as declared in its folder, in list order.
        pub const DECLARATIONS: &[$crate::registry::Declaration] = &[
            $( $( #[cfg($fcfg)] $(#[$kmeta])* <$kty as $crate::registry::AdapterKind>::DECLARATION, )+ )*
        ];

        /// What the pages and Home Assistant say of each kind built in.
        pub const KINDS: &[gateway_core::KindInfo] = &[
            $( $( #[cfg($fcfg)] $(#[$kmeta])* <$kty as $crate::registry::AdapterKind>::DECLARATION.info, )+ )*
        ];

        gateway_core::config_kinds! {
            kind_trait = $crate::registry::AdapterKind;
            spec_trait = gateway_core::config::AdapterSpec {
                const SECTIONS: &'static [&'static str] = &[
                    $( $( #[cfg($fcfg)] <$sty as $crate::registry::OwnedSection>::NAME, )? )*
                ];

                type Sections = Sections;

                #[allow(unused_variables)]
                fn sections(root: &toml::Table, problems: &mut gateway_core::config::Problems) -> Sections {
                    Sections {
                        $( $( #[cfg($fcfg)] $module: <$sty as $crate::registry::OwnedSection>::parse(root, problems), )? )*
                    }
                }

                fn listens_on(&self) -> Option<(gateway_core::config::Transport, std::net::SocketAddr)> {
                    match *self {
                        $( $( #[cfg($fcfg)] $(#[$kmeta])* Self::$variant(ref c) => $crate::registry::AdapterKind::listens_on(c), )+ )*
                    }
                }
            }
            /// One `[[adapter]]` table, by its `type`.
            pub enum AdapterConfig { $( $( #[cfg($fcfg)] $(#[$kmeta])* $variant => $kty, )+ )* }
        }

        /// The adapters' own tool subcommands (`knx discover`, `modbus
        /// scan`…), each in its folder's `tool.rs`, built with its family's
        /// feature. The binary flattens them into its subcommands.
        // Parsed once per process and moved once: the size of its biggest
        // variant costs nothing.
        #[cfg(feature = "tools")]
        #[allow(clippy::large_enum_variant)]
        #[derive(clap::Subcommand)]
        pub enum AdapterTool {
            $( $( #[cfg($fcfg)] $(#[doc = $tdoc])* $tool($targs), )? )*
        }

        #[cfg(feature = "tools")]
        impl AdapterTool {
            /// Runs the tool: the process's exit code.
            #[must_use]
            pub fn run(self) -> std::process::ExitCode {
                match self {
                    $( $( #[cfg($fcfg)] Self::$tool(args) => $trun(&args), )? )*
                }
            }
        }

        impl AdapterConfig {
            /// A runnable adapter for this config.
            #[allow(unused_variables)]
            pub fn build(&self, ctx: &$crate::registry::BuildContext) -> Box<dyn gateway_core::Adapter> {
                match *self {
                    $( $( #[cfg($fcfg)] $(#[$kmeta])* Self::$variant(ref c) => $crate::registry::AdapterKind::build(c, ctx), )+ )*
                }
            }
        }
    };
}

pub(crate) use adapter_registry;

/// The multi-threaded runtime a tool that talks to the network runs on, as
/// the gateway's own.
///
/// # Errors
/// The runtime could not start (no threads or no epoll), as a sentence.
#[cfg(feature = "tools")]
pub fn tool_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

#[cfg(test)]
#[path = "declaration_tests.rs"]
mod declaration_tests;
