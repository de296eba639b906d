//! A config applied to the running gateway: which adapters start, stop or
//! restart, and which sections only a restart applies.

use gateway_core::config::AdapterSpec;

use super::{forget_adapter_state, stop_adapters, Gateway};
use crate::settings::GatewayConfig;

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    /// Sections whose changes need a restart (they own open windows, the
    /// outbox or a listening socket); the running values are kept.
    pub need_restart: Vec<&'static str>,
}

impl Gateway {
    /// Applies a new, already validated config: adapters that were added,
    /// removed or changed are started, stopped or restarted; the others,
    /// the open windows and the outbox are untouched.
    pub async fn reload(&mut self, new: GatewayConfig) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let old = &self.config;
        for (section, changed) in [
            ("gateway", old.gateway != new.gateway),
            ("upstream", old.upstream != new.upstream),
            ("aggregation", old.aggregation != new.aggregation),
            ("outbox", old.outbox != new.outbox),
            ("log", old.log != new.log),
            ("metrics", old.metrics != new.metrics),
            ("device", old.devices != new.devices),
            ("rule", old.rules != new.rules),
            ("sink", old.sinks != new.sinks),
            ("dashboard", old.dashboard != new.dashboard),
            // The pages, sinks and alerts were given their units at start.
            (
                "units",
                old.units != new.units || old.adapter_units != new.adapter_units,
            ),
            ("home_assistant", old.home_assistant != new.home_assistant),
            ("commands", old.commands != new.commands),
            // The remote-config controller checks pushes with the keys,
            // `allow` and timeout it started with: a key revoked on the Pi
            // is still trusted until the restart, which must be said.
            ("remote_config", old.remote_config != new.remote_config),
        ] {
            if changed {
                summary.need_restart.push(section);
            }
        }
        // The adapter families' own sections (`[[knx.group]]` and its ETS
        // export, `[[modbus.device]]`, `[lorawan]`, …): an adapter reads its
        // family's when it is built, so each adapter of a family whose
        // section changed is restarted with the new one. A family with no
        // adapter running has nothing to restart.
        let families = old.sections.changed(&new.sections);
        let family_of = |config: &adapters::AdapterConfig| {
            adapters::DECLARATIONS
                .iter()
                .find(|d| d.info.kind == config.kind())
                .map(|d| d.folder)
        };
        if !families.is_empty() {
            self.config.sections = new.sections.clone();
        }
        let mut keep = Vec::new();
        let mut leaving = Vec::new();
        for running in std::mem::take(&mut self.adapters) {
            let name = running.config.name().to_string();
            let section_changed = family_of(&running.config).is_some_and(|f| families.contains(&f));
            match new.adapters.iter().find(|a| a.name() == name) {
                Some(a) if *a == running.config && !section_changed => keep.push(running),
                Some(_) => {
                    summary.restarted.push(name);
                    leaving.push(running);
                }
                None => {
                    self.command_targets.remove(&name);
                    summary.stopped.push(name);
                    leaving.push(running);
                }
            }
        }
        stop_adapters(leaving).await;
        // A successor reports its own links: one of another type (or with
        // other links) never overwrites what the old one last said, which
        // kept `/health` failing.
        for name in summary.restarted.iter().chain(&summary.stopped) {
            forget_adapter_state(&self.telemetry, name);
        }
        self.adapters = keep;
        for a in &new.adapters {
            if self.adapters.iter().any(|r| r.config.name() == a.name()) {
                continue;
            }
            if !summary.restarted.iter().any(|n| n == a.name()) {
                summary.started.push(a.name().to_string());
            }
            let running = self.spawn_adapter(a);
            self.adapters.push(running);
        }
        // Keep the config order, so logs and stop order stay predictable.
        self.adapters.sort_by_key(|r| {
            new.adapters
                .iter()
                .position(|a| a.name() == r.config.name())
        });
        self.config.adapters = new.adapters;
        self.tell_writable();
        summary
    }
}
