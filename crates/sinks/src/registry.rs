//! What a `[[sink]]` kind tells the rest of the gateway, once.
//!
//! Each sink's config implements [`SinkKind`]; the one list in the crate
//! root (`sink_registry!`) generates the `SinkConfig` enum, its
//! `SinkSpec` implementation (parsing with key paths), `kind()`, `start()`
//! and the config template, and the list of every output's declaration.
//! Adding an output is its folder, a line in that list and a feature
//! (docs/architecture.md, "Adding an output").

use std::fmt;

use gateway_core::config::Problems;
use gateway_core::output::OutputDeclaration;
use tokio::task::JoinHandle;

use crate::outbox::OutboxError;
use crate::OutputLink;
use gateway_core::event::SinkEvent;

/// Writes that failed, per output and `reason`.
pub const SINK_BATCHES_FAILED: &str = "edge_gateway_sink_batches_failed_total";
/// `1` while the last write to the output succeeded, per output.
pub const SINK_UP: &str = "edge_gateway_sink_up";

/// What sinks need to know about the gateway they run in (every output's
/// context, under the name sinks have always used).
pub use gateway_core::output::OutputContext as SinkContext;

/// Why a sink could not start (the running service; `validate` reports
/// the same mistakes earlier with their key paths).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("sink {sink}: {key} names environment variable {var}, which is not set")]
    MissingSecret {
        sink: String,
        key: &'static str,
        var: String,
    },
    #[error("sink {sink}: TLS for https: {source} (check ca_file)")]
    Tls {
        sink: String,
        #[source]
        source: mqtt_connect::SetupError,
    },
    #[error("sink {sink}: url: {host} cannot be a TLS server name")]
    ServerName { sink: String, host: String },
    #[error("sink {sink}: outbox: {source}")]
    Outbox {
        sink: String,
        #[source]
        source: OutboxError,
    },
}

/// One `[[sink]] type = "…"`: its config, parsed from its table.
pub trait SinkKind: Sized + Clone + fmt::Debug + PartialEq {
    /// What is said of it everywhere else: the folder's `kind.rs`.
    const DECLARATION: OutputDeclaration;

    /// The `type` value that selects it.
    const KIND: &'static str = Self::DECLARATION.kind;

    /// Parses and validates the table (with `type` already removed),
    /// recording problems under `path` with their full key paths.
    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self>;

    /// The sink's unique `name`.
    fn name(&self) -> &str;

    /// Starts the sink's task, fed through `link`; it ends once the link's
    /// messages close and it has delivered (or stored) what it was given.
    ///
    /// # Errors
    /// A secret that cannot be read, an outbox locked by another process.
    fn start(
        &self,
        ctx: &SinkContext,
        link: OutputLink<SinkEvent>,
    ) -> Result<JoinHandle<()>, StartError>;

    /// This kind's part of the `configfile` template.
    fn template() -> String;
}

/// Generates, from the outputs with a section of their own and the list
/// of `[[sink]]` kinds: [`crate::DECLARATIONS`], `SinkConfig` (a variant
/// per kind), its `SinkSpec` implementation, `kind()`, `start()` and
/// `template()`. A `#[cfg(...)]` before a kind applies to everything
/// generated for it.
macro_rules! sink_registry {
    (
        sections { $( $section:expr ),* $(,)? }
        sinks { $( $(#[$kmeta:meta])* $variant:ident => $kty:ty ),* $(,)? }
    ) => {
        /// Every output of this crate built in, as declared in its folder.
        pub const DECLARATIONS: &[gateway_core::output::OutputDeclaration] = &[
            $( $section, )*
            $( $(#[$kmeta])* <$kty as $crate::registry::SinkKind>::DECLARATION, )*
        ];

        gateway_core::config_kinds! {
            kind_trait = $crate::registry::SinkKind;
            spec_trait = gateway_core::config::SinkSpec {}
            /// One `[[sink]]` table, by its `type`.
            pub enum SinkConfig { $( $(#[$kmeta])* $variant => $kty ),* }
        }

        impl SinkConfig {
            /// Starts the sink's task.
            ///
            /// # Errors
            /// See [`registry::SinkKind::start`].
            // A build without any `[[sink]]` kind has nothing to start.
            #[allow(unused_variables)]
            pub fn start(
                &self,
                ctx: &$crate::registry::SinkContext,
                link: $crate::OutputLink<gateway_core::event::SinkEvent>,
            ) -> Result<tokio::task::JoinHandle<()>, $crate::registry::StartError> {
                match *self {
                    $( $(#[$kmeta])* Self::$variant(ref c) => $crate::registry::SinkKind::start(c, ctx, link), )*
                }
            }
        }
    };
}

pub(crate) use sink_registry;
