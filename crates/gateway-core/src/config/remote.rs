//! `[remote_config]`: configuration pushed from the cloud broker (issue 71,
//! `docs/fleet.md`). Off by default. The keys are checked here; the public
//! keys' encoding by `gateway-settings` (which knows the signature crate).

use std::fmt::Write;
use std::time::Duration;

use serde::Deserialize;

use super::load::Problems;
use super::values::duration;

/// `[remote_config]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// Subscribe to `{prefix}/gateway/{id}/config` on the upstream (cloud)
    /// broker and apply what is pushed there.
    pub enabled: bool,
    /// Ed25519 public keys (base64 of the 32 raw bytes) allowed to sign a
    /// push; when any is set, an unsigned or otherwise signed push is
    /// refused.
    pub public_keys: Vec<String>,
    /// How long an applied configuration has to be healthy (upstream
    /// connected, every adapter started and reaching its device or port)
    /// before it is rolled back.
    #[serde(with = "duration")]
    pub health_timeout: Duration,
    /// The sections a push may change; unset, every one. `[remote_config]`
    /// itself, the upstream's credentials and `enabled`, `gateway.id` and
    /// `gateway.state_dir` never.
    pub allow: Option<Vec<String>>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            public_keys: Vec::new(),
            health_timeout: Duration::from_secs(60),
            allow: None,
        }
    }
}

impl RemoteConfig {
    /// Key checks, recorded under `remote_config`; `sections`: every
    /// section name this build accepts.
    pub fn validate(&self, upstream_enabled: bool, sections: &[&str], problems: &mut Problems) {
        if !self.enabled {
            return;
        }
        if !upstream_enabled {
            problems.push(
                "remote_config.enabled",
                "pushes come from the upstream (cloud) broker: enable [upstream], or set enabled = false",
            );
        }
        if self.health_timeout.is_zero() {
            problems.push("remote_config.health_timeout", "must be more than 0s");
        }
        for (i, section) in self.allow.iter().flatten().enumerate() {
            if section == "remote_config" {
                problems.push(
                    format!("remote_config.allow[{i}]"),
                    "a push can never change [remote_config]: remove it from allow",
                );
            } else if !sections.contains(&section.as_str()) {
                problems.push(
                    format!("remote_config.allow[{i}]"),
                    format!(
                        "unknown section \"{section}\", expected some of {}",
                        sections.join(", ")
                    ),
                );
            }
        }
    }
}

/// The `[remote_config]` part of the `configfile` template.
pub fn template() -> String {
    let c = RemoteConfig::default();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"
[remote_config]
# Configuration pushed from the cloud (docs/fleet.md): the gateway
# subscribes on the [upstream] broker ONLY to the retained message on
# {{prefix}}/gateway/{{gateway_id}}/config, applies a push over the local
# files (like a conf.d/ drop-in) if it is signed, newer, valid and healthy,
# rolls back otherwise, and reports on {{prefix}}/gateway/{{gateway_id}}/config/state.
# `edge-gateway config keygen|sign|push` make and publish pushes.
enabled = {enabled}
# Ed25519 public keys (base64 of the 32 raw bytes) that may sign a push.
# Set at least one: without keys, whoever can publish on the broker's
# config topic can reconfigure this gateway.
public_keys = []
# An applied configuration must be healthy within this time, or the
# previous one is restored.
health_timeout = "{health_timeout}"
# Sections a push may change (unset: all). Never [remote_config] itself,
# the upstream's credentials or `enabled`, gateway.id or gateway.state_dir.
# allow = ["adapter", "device", "rule", "aggregation", "sink"]
"#,
        enabled = c.enabled,
        health_timeout = duration::render(c.health_timeout),
    );
    out
}
