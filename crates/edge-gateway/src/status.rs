//! The periodic status log line: the gateway's vital signs for anyone
//! reading the journal, from the same counters the metrics endpoint shows.

use gateway_core::Telemetry;
use tracing::info;

pub fn log_line(t: &Telemetry) {
    info!(
        received = t.counter_total("edge_gateway_adapter_received_messages_total"),
        readings = t.counter_total("edge_gateway_adapter_readings_total"),
        adapter_errors = t.counter_total("edge_gateway_adapter_errors_total"),
        late = t.counter_total("edge_gateway_aggregator_late_readings_total"),
        windows = t.counter_total("edge_gateway_aggregator_windows_emitted_total"),
        upstream_sent = t.counter_total("edge_gateway_upstream_sent_messages_total"),
        outbox_dropped = t.counter_total("edge_gateway_outbox_dropped_messages_total"),
        outbox_messages = t.gauge("edge_gateway_outbox_messages", &[]).get(),
        outbox_bytes = t.gauge("edge_gateway_outbox_bytes", &[]).get(),
        outbox_oldest_age_s = t.gauge("edge_gateway_outbox_oldest_age_seconds", &[]).get(),
        outbox_storage_errors = t.counter_total("edge_gateway_outbox_storage_errors_total"),
        journal_failures = t.counter_total("edge_gateway_journal_failures_total"),
        ingress_duplicates = t.counter_total("edge_gateway_ingress_duplicates_total"),
        upstream_reconnects = t.counter_total("edge_gateway_upstream_reconnects_total"),
        upstream_connected = t.gauge("edge_gateway_upstream_connected", &[]).get() > 0.5,
        "Status."
    );
}
