//! The periodic status log line: the gateway's vital signs for anyone
//! reading the journal, from the same counters the metrics endpoint shows.

use gateway_core::component::{ADAPTER_ERRORS, ADAPTER_READINGS, ADAPTER_RECEIVED};
use gateway_core::Telemetry;
use sinks::mqtt_upstream::{UPSTREAM_CONNECTED, UPSTREAM_RECONNECTS, UPSTREAM_SENT};
use sinks::spool::{
    OUTBOX_BYTES, OUTBOX_DROPPED, OUTBOX_MESSAGES, OUTBOX_OLDEST_AGE, OUTBOX_STORAGE_ERRORS,
};

use pipeline::durability::{INGRESS_DUPLICATES, JOURNAL_FAILURES};
use pipeline::{LATE_READINGS, WINDOWS_EMITTED};
use tracing::info;

pub fn log_line(t: &Telemetry) {
    info!(
        received = t.counter_total(ADAPTER_RECEIVED),
        readings = t.counter_total(ADAPTER_READINGS),
        adapter_errors = t.counter_total(ADAPTER_ERRORS),
        late = t.counter_total(LATE_READINGS),
        windows = t.counter_total(WINDOWS_EMITTED),
        upstream_sent = t.counter_total(UPSTREAM_SENT),
        outbox_dropped = t.counter_total(OUTBOX_DROPPED),
        outbox_messages = t.gauge(OUTBOX_MESSAGES, &[]).get(),
        outbox_bytes = t.gauge(OUTBOX_BYTES, &[]).get(),
        outbox_oldest_age_s = t.gauge(OUTBOX_OLDEST_AGE, &[]).get(),
        outbox_storage_errors = t.counter_total(OUTBOX_STORAGE_ERRORS),
        journal_failures = t.counter_total(JOURNAL_FAILURES),
        ingress_duplicates = t.counter_total(INGRESS_DUPLICATES),
        upstream_reconnects = t.counter_total(UPSTREAM_RECONNECTS),
        upstream_connected = t.gauge(UPSTREAM_CONNECTED, &[]).get() > 0.5,
        "Status."
    );
}
