//! What a `[[sink]]` kind tells the rest of the gateway, once.
//!
//! Each sink's config implements [`SinkKind`]; the one list in the crate
//! root (`sink_registry!`) generates the `SinkConfig` enum, its
//! `SinkSpec` implementation (parsing with key paths), `kind()`, `start()`
//! and the config template. Adding an output is its folder and a line in
//! that list.

use std::fmt;

use gateway_core::config::Problems;
use tokio::task::JoinHandle;

use crate::outbox::OutboxError;
use crate::OutputLink;
use gateway_core::event::SinkEvent;

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
    /// The `type` value that selects it.
    const KIND: &'static str;

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

/// Generates, from the list of kinds: `SinkConfig` (a variant per kind),
/// its `SinkSpec` implementation, `kind()`, `start()` and `template()`.
macro_rules! sink_registry {
    ( $( $(#[$kmeta:meta])* $variant:ident => $kty:ty ),* $(,)? ) => {
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
