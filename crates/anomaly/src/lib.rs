//! Alerts: thresholds, rate of change, silence and a learned anomaly model.
//!
//! Placeholder crate of the workspace layout. It will hold the rule engine
//! and the online detector that sit between the aggregator and the upstream
//! forwarder, publishing `{prefix}/{device}/alerts` as soon as a reading
//! crosses a rule (alerts bypass the windows). Like the aggregator it will be
//! pure logic over readings with the clock passed in.

/// The alert kinds the rules will produce, as they appear upstream in the
/// `kind` field of an alert.
pub const ALERT_KINDS: [&str; 4] = ["threshold", "rate", "silence", "anomaly"];
