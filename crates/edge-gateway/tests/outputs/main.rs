//! Every output as its user sees it: alerts upstream, the dashboard (pages, API, abuse, a real Chromium), Home Assistant discovery, InfluxDB, /metrics and /health, TLS to the cloud broker, a NATS cluster as the cloud, configurations pushed from the cloud.
//!
//! One test binary per theme (not one per file): each binary links the
//! whole gateway, and the tests of a theme share one pool of test threads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod alerts_end_to_end;
mod commands;
mod commands_attacks;
mod commands_bacnet;
mod commands_contract;
mod commands_late;
mod dashboard;
mod dashboard_abuse;
mod dashboard_browser;
mod dashboard_hourly;
mod dashboard_latest;
mod fleet_cluster;
mod home_assistant;
mod home_assistant_abuse;
mod home_assistant_commands;
mod influxdb_end_to_end;
mod jsonl_file;
mod metrics;
mod remote_config;
mod remote_config_signals;
mod upstream_report;
mod upstream_tls;
