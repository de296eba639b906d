//! One way for an adapter to refuse an input: count it by reason in
//! `edge_gateway_adapter_errors_total{adapter,error_type}` (every one) and
//! warn at most once per interval per reason (with how many were not
//! logged), so hostile or broken input can neither hide nor flood the log.
//!
//! ```ignore
//! gateway_core::refuse!(stats, throttle, "payload_too_large";
//!     adapter, %peer, "Dropping CoAP request.");
//! // Throttled per device: one silent meter does not hide another.
//! gateway_core::refuse!(stats, throttle, "timeout", per format!("timeout:{device}");
//!     adapter, device, "Modbus device did not answer.");
//! ```

use crate::component::AdapterStats;
use crate::telemetry::LogThrottle;

#[doc(hidden)]
pub use tracing::{event as __event, Level as __Level};

impl AdapterStats {
    /// Counts an input refused for `reason`; `Some(suppressed since the
    /// last warning)` when this one is to be logged.
    pub fn refuse(&self, throttle: &LogThrottle, reason: &str) -> Option<u64> {
        self.error(reason);
        throttle.allow(reason)
    }

    /// As [`AdapterStats::refuse`], throttling the log per `key` (a reason
    /// of one device, say) rather than per reason.
    pub fn refuse_per(&self, throttle: &LogThrottle, reason: &str, key: &str) -> Option<u64> {
        self.error(reason);
        throttle.allow(key)
    }
}

/// Counts an input refused for a reason and warns at most once per
/// interval: `refuse!(stats, throttle, reason; fields…, "message")`
/// throttles the log per reason; `refuse!(stats, throttle, reason, per
/// key; …)` per `key` instead (a reason of one device, say, so one broken
/// device does not hide another). A leading `error:` logs at error level.
/// The line carries `error_type` (the reason) and `suppressed` (how many
/// were not logged since the last one) beside the caller's fields.
#[macro_export]
macro_rules! refuse {
    (@log $level:ident, $reason:ident, $allowed:expr; $($log:tt)+) => {
        if let Some(suppressed) = $allowed {
            $crate::refusal::__event!(
                $crate::refusal::__Level::$level,
                error_type = $reason,
                suppressed,
                $($log)+
            );
        }
    };
    (@at $level:ident, $stats:expr, $throttle:expr, $reason:expr, per $key:expr; $($log:tt)+) => {{
        let reason: &str = $reason;
        let key: &str = &$key;
        $crate::refuse!(@log $level, reason, ($stats).refuse_per(&$throttle, reason, key); $($log)+)
    }};
    (@at $level:ident, $stats:expr, $throttle:expr, $reason:expr; $($log:tt)+) => {{
        let reason: &str = $reason;
        $crate::refuse!(@log $level, reason, ($stats).refuse(&$throttle, reason); $($log)+)
    }};
    (error: $($rest:tt)+) => {
        $crate::refuse!(@at ERROR, $($rest)+)
    };
    ($($rest:tt)+) => {
        $crate::refuse!(@at WARN, $($rest)+)
    };
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::component::ADAPTER_ERRORS;
    use crate::Telemetry;

    use super::*;

    #[test]
    fn every_refusal_is_counted_and_the_log_is_throttled_per_reason() {
        let telemetry = Telemetry::default();
        let stats = AdapterStats::new(&telemetry, "a");
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(stats.refuse(&throttle, "payload_too_large"), Some(0));
        assert_eq!(stats.refuse(&throttle, "payload_too_large"), None);
        assert_eq!(stats.refuse(&throttle, "bad_json"), Some(0));
        crate::refuse!(stats, throttle, "bad_json"; adapter = "a", "Dropping.");
        let count = |reason| {
            telemetry.counter_value(ADAPTER_ERRORS, &[("adapter", "a"), ("error_type", reason)])
        };
        assert_eq!(count("payload_too_large"), Some(2));
        assert_eq!(count("bad_json"), Some(2));
        assert_eq!(
            stats.refuse_per(&throttle, "timeout", "timeout:meter-1"),
            Some(0)
        );
        assert_eq!(
            stats.refuse_per(&throttle, "timeout", "timeout:meter-2"),
            Some(0)
        );
        assert_eq!(count("timeout"), Some(2));
        crate::refuse!(stats, throttle, "timeout", per format!("timeout:{}", "meter-3");
            adapter = "a", "Dropping.");
        crate::refuse!(error: stats, throttle, "timeout", per "timeout:meter-3";
            adapter = "a", "Dropping.");
        crate::refuse!(error: stats, throttle, "store"; adapter = "a", "Dropping.");
        assert_eq!(count("timeout"), Some(4));
        assert_eq!(count("store"), Some(1));
        assert_eq!(
            stats.refuse_per(&throttle, "timeout", "timeout:meter-3"),
            None,
            "the macro's per-key form throttles by its key"
        );
        assert_eq!(
            stats.refuse(&throttle, "timeout"),
            Some(0),
            "and not by its reason"
        );
    }
}
