//! The reported state, retained on `{prefix}/gateway/{gateway_id}/config/state`:
//! `{"desired", "serial", "applied", "status", "reason", "detail", "ts",
//! "sha256"}` as issue 71 lists them, plus `applied_serial`,
//! `applied_sha256` (what runs, exactly) and `highest_serial` (the mark a
//! new push must exceed: `config push` numbers the next one from it).

use serde::{Deserialize, Serialize};

/// Where the last push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Staged; the gateway is restarting on it or judging its health.
    Applying,
    /// Running and committed.
    Applied,
    /// Refused before it ran (`reason`: signature, sha256, format, stale,
    /// schema, not_allowed, …); the applied configuration stays.
    Rejected,
    /// It ran and failed `reason` (health, start, interrupted); the
    /// previous configuration runs again.
    RolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Rejected => "rejected",
            Self::RolledBack => "rolled_back",
        }
    }
}

/// One reported state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The version label of the push this reports on (`None`: a message
    /// too damaged to name one).
    pub desired: Option<String>,
    pub serial: Option<u64>,
    /// The pushed configuration running now (`None`: the local files alone).
    pub applied: Option<String>,
    pub status: Status,
    /// The check that refused or failed it; empty when applied.
    pub reason: String,
    /// For people: the key path and problem, the failing health check.
    pub detail: String,
    /// RFC 3339, when this state was reached.
    pub ts: String,
    /// The desired configuration's SHA-256.
    pub sha256: Option<String>,
    pub applied_serial: Option<u64>,
    pub applied_sha256: Option<String>,
    pub highest_serial: u64,
}

/// The desired-state topic.
pub fn config_topic(prefix: &str, gateway_id: &str) -> String {
    format!("{prefix}/gateway/{gateway_id}/config")
}

/// The reported-state topic.
pub fn state_topic(prefix: &str, gateway_id: &str) -> String {
    format!("{}/state", config_topic(prefix, gateway_id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_issues_fields() {
        let r = Report {
            desired: Some("v2".into()),
            serial: Some(2),
            applied: Some("v1".into()),
            status: Status::RolledBack,
            reason: "health".into(),
            detail: "adapter \"coap\" has not opened its port yet".into(),
            ts: "2026-11-27T10:00:00Z".into(),
            sha256: Some("ab".into()),
            applied_serial: Some(1),
            applied_sha256: Some("cd".into()),
            highest_serial: 2,
        };
        // The upstream adds `gateway` (and the forwarder `seq`).
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "desired", "serial", "applied", "status", "reason", "detail", "ts", "sha256",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["status"], "rolled_back");
        assert_eq!(
            state_topic("building/hq", "gw-1"),
            "building/hq/gateway/gw-1/config/state"
        );
    }
}
