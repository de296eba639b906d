//! The health gate after an apply: within `health_timeout` the gateway
//! must be healthy as `/health` judges it (the upstream connected, every
//! adapter running, those that hold a connection connected and
//! subscribed, those that serve a port bound), seen twice
//! [`SETTLE`] apart so an adapter whose task has not yet said whether it
//! reached its broker cannot pass by not having spoken. An adapter whose
//! task has ended (a port already taken) fails the gate at once: it will
//! not come back by waiting.

use std::time::Duration;

use gateway_core::Telemetry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::health;
use crate::runtime::ADAPTER_UP;

/// Between the two healthy looks.
pub const SETTLE: Duration = Duration::from_millis(500);
/// Between looks.
const POLL: Duration = Duration::from_millis(100);

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// The failing checks, as `/health` words them.
    Failed(String),
    /// The gateway is stopping: no verdict.
    Stopped,
}

/// Watches `telemetry` until healthy, failed or `timeout`.
pub async fn judge(telemetry: &Telemetry, timeout: Duration, stop: &CancellationToken) -> Verdict {
    let deadline = Instant::now() + timeout;
    let mut healthy_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let h = health::check(telemetry);
        if h.healthy {
            let since = *healthy_since.get_or_insert(now);
            if now.duration_since(since) >= SETTLE {
                return Verdict::Healthy;
            }
        } else {
            healthy_since = None;
            if let Some(stopped) = stopped_adapter(telemetry) {
                return Verdict::Failed(reasons(&h.body, Some(&stopped)));
            }
            if now >= deadline {
                return Verdict::Failed(format!(
                    "not healthy within {}: {}",
                    humantime::format_duration(timeout),
                    reasons(&h.body, None)
                ));
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Verdict::Stopped,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// An adapter whose task has ended.
fn stopped_adapter(t: &Telemetry) -> Option<String> {
    t.gauges(ADAPTER_UP)
        .into_iter()
        .filter(|(_, v)| *v < 0.5)
        .find_map(|(labels, _)| labels.into_iter().find(|(k, _)| k == "adapter"))
        .map(|(_, name)| name)
}

fn reasons(body: &serde_json::Value, stopped: Option<&str>) -> String {
    let mut out: Vec<String> = body["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(name) = stopped {
        let said = format!("adapter \"{name}\" is not running");
        let why = format!("{said} (it stopped with an error: a port already taken, a path that does not exist; see the log)");
        // The verdict may have been read a moment before the task ended.
        match out.iter_mut().find(|r| **r == said) {
            Some(r) => *r = why,
            None => out.push(why),
        }
    }
    out.join("; ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use gateway_core::component::ADAPTER_LISTENING;
    use sinks::mqtt_upstream::UPSTREAM_CONNECTED;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn healthy_twice_passes_and_a_timeout_names_the_check() {
        let t = Telemetry::default();
        t.gauge(ADAPTER_UP, &[("adapter", "lines")]).set(1.0);
        let stop = CancellationToken::new();
        let v = judge(&t, Duration::from_secs(2), &stop).await;
        assert_eq!(
            v,
            Verdict::Failed("not healthy within 2s: upstream broker not connected".into())
        );
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        let start = Instant::now();
        assert_eq!(
            judge(&t, Duration::from_secs(2), &stop).await,
            Verdict::Healthy
        );
        assert!(start.elapsed() >= SETTLE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_adapter_that_stopped_fails_at_once() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        t.gauge(ADAPTER_UP, &[("adapter", "lines")]).set(0.0);
        t.gauge(ADAPTER_LISTENING, &[("adapter", "lines")]).set(0.0);
        let start = Instant::now();
        let Verdict::Failed(why) =
            judge(&t, Duration::from_secs(60), &CancellationToken::new()).await
        else {
            panic!()
        };
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(
            why.contains("adapter \"lines\" is not running (it stopped"),
            "{why}"
        );
        // A task that ended after the verdict was read is still named.
        let body =
            serde_json::json!({"reasons": ["adapter \"lines\" has not opened its port yet"]});
        let why = reasons(&body, Some("lines"));
        assert!(
            why.ends_with("; adapter \"lines\" is not running (it stopped with an error: a port already taken, a path that does not exist; see the log)"),
            "{why}"
        );
    }
}
