//! Real peers for tests, started by the test itself on loopback ports it
//! picked, and stopped when dropped.
//!
//! Every wait here is on an event (a log line, a process exit, a message)
//! bounded by a timeout, never a fixed sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod chromium;
mod clients;
mod coap;
pub mod exposition;
mod influxdb;
mod mosquitto;
mod nats;
mod python_peer;
mod tls;

pub use clients::{publish, publish_lines, publish_lines_as, Message, Subscriber};
pub use coap::{coap_client, coap_client_run, free_udp_port, CoapOutput, CoapServer};
pub use influxdb::{http, Influxd};
pub use mosquitto::{Mosquitto, Options};
pub use nats::NatsCluster;
pub use python_peer::{peers_python, peers_venv, PythonPeer};
pub use tls::Pki;

/// A free TCP port on 127.0.0.1, never handed out twice in this process.
///
/// Tests that stop a broker and start it again later leave its port unbound
/// in between; without this registry a parallel test could be given that
/// port, and the gateway under test would talk to the wrong broker.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        if handed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port)
        {
            return port;
        }
    }
}

/// Whether a program is on PATH; tests name what is missing instead of
/// failing obscurely.
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
