//! Outputs: where the pipeline's aggregates and alerts go, one folder each,
//! beside the durable outbox they share.
//!
//! - `outbox`: the append-only, length- and CRC-framed log an output keeps
//!   its undelivered messages in;
//! - `spool`: the storage policy around it (store, hold in memory while
//!   the disk refuses, make room when full, expire, report);
//! - `outbox_loop`: the one loop around a spool (batch from the pipeline,
//!   urgent lane, flush handshake, housekeeping, drain at stop), generic
//!   over what an output sends and how a delivery settles (`Deliver`);
//! - `durable`: the framework that opens a durable output's spool where
//!   it says and runs that loop around its `Deliver` side;
//! - `mqtt_upstream`: the cloud MQTT broker (`[upstream]`, `[outbox]`),
//!   which renders the events into its topics and JSON payloads;
//! - `registry`: the one list of `[[sink]]` kinds (the crate root's
//!   `sink_registry!`), generating `SinkConfig`, its parsing and template;
//! - `influxdb`: `[[sink]] type = "influxdb"`, InfluxDB 1.x and 2.x;
//! - `jsonl`: `[[sink]] type = "jsonl"`, JSON lines in a rotated file;
//! - `home_assistant`: `[home_assistant]`, MQTT discovery for Home
//!   Assistant (fed the same events, started beside the dashboard).
//!
//! An output is its folder (`kind.rs`, `README.md`, `template.toml`,
//! listed in `DECLARATIONS`), and a task fed through an [`OutputLink`]; a
//! durable one implements only its `Deliver` side: `durable` opens its
//! spool in its own directory and answers flush requests once what it was
//! handed is on disk, so the gateway's checkpoint never runs ahead of it.
//! See `docs/architecture.md`, "Adding an output".

pub mod durable;
pub mod home_assistant;
#[cfg(feature = "influxdb")]
pub mod influxdb;
#[cfg(feature = "jsonl")]
pub mod jsonl;
pub mod mqtt_upstream;
pub mod outbox;
pub mod outbox_loop;
pub mod registry;
pub mod spool;

registry::sink_registry! {
    sections {
        mqtt_upstream::kind::UPSTREAM,
        home_assistant::kind::HOME_ASSISTANT,
    }
    sinks {
        #[cfg(feature = "influxdb")]
        Influxdb => influxdb::InfluxConfig,
        #[cfg(feature = "jsonl")]
        Jsonl => jsonl::JsonlConfig,
    }
}

pub use gateway_core::event::OutputLink;

/// A `[[sink]]` starts like every other output.
impl gateway_core::output::StartOutput for &SinkConfig {
    fn lanes(&self) -> gateway_core::output::Lanes {
        gateway_core::output::Lanes {
            urgent: false,
            flush: true,
            readings: true,
        }
    }

    fn start(
        self,
        link: OutputLink<gateway_core::event::SinkEvent>,
        ctx: &registry::SinkContext,
    ) -> Result<gateway_core::output::StartedOutput, gateway_core::output::OutputError> {
        let task = SinkConfig::start(self, ctx, link)?;
        Ok(gateway_core::output::StartedOutput {
            task: Box::pin(async move { Ok(task.await?) }),
        })
    }
}

#[cfg(test)]
#[path = "declaration_tests.rs"]
mod declaration_tests;

/// `[[device]]` tables as the config reads them, for tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_devices(text: &str) -> Vec<gateway_core::config::DeviceConfig> {
    toml::from_str::<toml::Table>(text).unwrap()["device"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.clone().try_into().unwrap())
        .collect()
}
