//! Counters and gauges with explicit handles.
//!
//! A global recorder would make tests share state and run one at a time, so a
//! [`Telemetry`] is created by whoever builds the pipeline and handed to every
//! component. Components register their handles once and update them with a
//! relaxed atomic add; the metrics endpoint and the status log read them.
//! Names follow Prometheus conventions (`edge_gateway_<component>_<what>_total`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

#[derive(Default)]
struct Inner {
    series: BTreeMap<(String, Labels), (Kind, Arc<AtomicU64>)>,
}

/// The registry of every counter and gauge of one gateway instance.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Arc<Mutex<Inner>>,
}

/// A monotonically increasing count.
#[derive(Clone, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Clone, Debug)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> (String, Labels) {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (name.to_string(), labels)
}

impl Telemetry {
    fn handle(&self, kind: Kind, name: &str, labels: &[(&str, &str)]) -> Arc<AtomicU64> {
        let key = key(name, labels);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .series
            .entry(key)
            .or_insert_with(|| (kind, Arc::new(AtomicU64::new(0))))
            .1
            .clone()
    }

    /// The counter `name{labels}`, created at zero on first use.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Counter {
        Counter(self.handle(Kind::Counter, name, labels))
    }

    /// The gauge `name{labels}`, created at zero on first use.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Gauge {
        Gauge(self.handle(Kind::Gauge, name, labels))
    }

    /// Current value of a counter, if it was ever registered.
    pub fn counter_value(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Labels>(),
        );
        inner
            .series
            .get(&key)
            .map(|(_, v)| v.load(Ordering::Relaxed))
    }

    /// Sum of a counter over all its label sets.
    pub fn counter_total(&self, name: &str) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .series
            .iter()
            .filter(|((n, _), (k, _))| n == name && *k == Kind::Counter)
            .map(|(_, (_, v))| v.load(Ordering::Relaxed))
            .sum()
    }

    /// Forgets gauge `name{labels}`, for a component that no longer exists
    /// (a value left behind would still be read and exported).
    pub fn remove_gauge(&self, name: &str, labels: &[(&str, &str)]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((Kind::Gauge, _)) = inner.series.get(&key(name, labels)) {
            inner.series.remove(&key(name, labels));
        }
    }

    /// Every label set of gauge `name` with its value, for readers that judge
    /// a family as a whole (the health check's per-adapter state).
    pub fn gauges(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .series
            .iter()
            .filter(|((n, _), (k, _))| n == name && *k == Kind::Gauge)
            .map(|((_, labels), (_, v))| {
                (labels.clone(), f64::from_bits(v.load(Ordering::Relaxed)))
            })
            .collect()
    }

    /// Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last_name = "";
        for ((name, labels), (kind, value)) in &inner.series {
            if name != last_name {
                let t = match kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                };
                let _ = writeln!(out, "# TYPE {name} {t}");
                last_name = name;
            }
            let raw = value.load(Ordering::Relaxed);
            let rendered = match kind {
                Kind::Counter => raw.to_string(),
                Kind::Gauge => sample_value(f64::from_bits(raw)),
            };
            out.push_str(name);
            for (i, (k, v)) in labels.iter().enumerate() {
                out.push(if i == 0 { '{' } else { ',' });
                out.push_str(k);
                out.push_str("=\"");
                escape_label_value(&mut out, v);
                out.push('"');
            }
            if !labels.is_empty() {
                out.push('}');
            }
            let _ = writeln!(out, " {rendered}");
        }
        out
    }
}

/// A label value as the text exposition format writes it: `\`, `"` and a
/// line feed escaped, whatever the value's source. Label values come from
/// the config (adapter, rule and sink names) and from the network (a
/// device's id, a payload's format name): one with a quote and a newline
/// used to end its sample early and forge the next ones.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A gauge's value as the format spells it (`NaN`, `+Inf`, `-Inf`: Rust's
/// `inf` is not a number to a Prometheus parser).
fn sample_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        v.to_string()
    }
}

/// Lets a hot error path log its first occurrence and then at most once per
/// interval per key, reporting how many were suppressed in between. The
/// counters still count every occurrence.
pub struct LogThrottle {
    interval: Duration,
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed_since_last_log)` when this occurrence should be logged.
    pub fn allow(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: hostile input must not grow this map forever.
        if last.len() > 10_000 {
            last.clear();
        }
        match last.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                last.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_by_name_and_labels() {
        let t = Telemetry::default();
        let a = t.counter("x_total", &[("adapter", "a")]);
        let a2 = t.counter("x_total", &[("adapter", "a")]);
        let b = t.counter("x_total", &[("adapter", "b")]);
        a.inc();
        a2.add(2);
        b.inc();
        assert_eq!(t.counter_value("x_total", &[("adapter", "a")]), Some(3));
        assert_eq!(t.counter_total("x_total"), 4);
        let text = t.render_prometheus();
        assert!(text.contains("# TYPE x_total counter"));
        assert!(text.contains("x_total{adapter=\"a\"} 3"), "{text}");
    }

    #[test]
    fn label_values_cannot_end_a_sample_or_forge_another() {
        let t = Telemetry::default();
        t.counter(
            "edge_gateway_adapter_readings_total",
            &[("adapter", "k\\\"v} 1\nedge_gateway_injected_total 43\n")],
        )
        .add(2);
        t.gauge("g", &[]).set(f64::INFINITY);
        t.gauge("h", &[]).set(f64::NAN);
        let text = t.render_prometheus();
        assert_eq!(
            text,
            "# TYPE edge_gateway_adapter_readings_total counter\n\
             edge_gateway_adapter_readings_total{adapter=\"k\\\\\\\"v} 1\\nedge_gateway_injected_total 43\\n\"} 2\n\
             # TYPE g gauge\ng +Inf\n\
             # TYPE h gauge\nh NaN\n"
        );
        assert!(!text
            .lines()
            .any(|l| l.starts_with("edge_gateway_injected_total")));
    }

    #[test]
    fn throttle_logs_first_then_suppresses() {
        let th = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(th.allow("k"), Some(0));
        assert_eq!(th.allow("k"), None);
        assert_eq!(th.allow("other"), Some(0));
    }
}
