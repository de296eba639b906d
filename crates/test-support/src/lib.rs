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
pub mod gateway;
mod influxdb;
pub mod metrics;
mod mosquitto;
mod nats;
mod python_peer;
pub mod remote_config;
mod slow_uplink;
mod tls;
pub mod web;

pub use clients::{publish, publish_lines, publish_lines_as, Message, Subscriber};
pub use coap::{coap_client, coap_client_run, free_udp_port, CoapOutput, CoapServer};
pub use influxdb::{http, Influxd};
pub use mosquitto::{Mosquitto, Options};
pub use nats::NatsCluster;
pub use python_peer::{peers_python, peers_venv, PythonPeer};
pub use slow_uplink::SlowUplink;
pub use tls::Pki;

/// A free TCP port on 127.0.0.1, never handed out twice to tests running
/// at the same time, in this process or in another.
///
/// Tests that stop a broker and start it again later leave its port unbound
/// in between; without a registry a parallel test could be given that
/// port, and the gateway under test would talk to the wrong broker. The
/// registry is a lock file per port, held until the process exits, so test
/// binaries run side by side (`cargo nextest`, two suites at once) never
/// share a port either.
pub fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        if ports::reserve(port) {
            return port;
        }
    }
}

mod ports {
    use std::collections::HashSet;
    use std::fs::{File, OpenOptions};
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock};

    /// The lock files this process holds: a lock is released by the
    /// kernel when its process ends, however it ends, so a crashed test
    /// leaves no port taken.
    static HELD: OnceLock<Mutex<(HashSet<u16>, Vec<File>)>> = OnceLock::new();

    fn dir() -> PathBuf {
        std::env::temp_dir().join("edge-gateway-test-ports")
    }

    /// Takes `port` for this process; false when this or another test
    /// process already has it.
    pub(crate) fn reserve(port: u16) -> bool {
        let held = HELD.get_or_init(|| Mutex::new((HashSet::new(), Vec::new())));
        let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
        if held.0.contains(&port) {
            return false;
        }
        let _ = std::fs::create_dir_all(dir());
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir().join(port.to_string()))
        else {
            // No shared temp dir: this process's own registry still holds.
            held.0.insert(port);
            return true;
        };
        if file.try_lock().is_err() {
            return false;
        }
        held.0.insert(port);
        held.1.push(file);
        true
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

#[cfg(test)]
mod port_tests {
    #[test]
    fn a_port_held_by_another_process_is_not_handed_out() {
        // Another process (a child `flock`, as a second test binary would)
        // holds the lock of a port this process has not taken yet.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = std::env::temp_dir()
            .join("edge-gateway-test-ports")
            .join(port.to_string());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut holder = std::process::Command::new("flock")
            .arg(&path)
            .args(["-c", "echo held; read _"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        assert!(!super::ports::reserve(port), "held by the other process");
        drop(holder.stdin.take());
        holder.wait().unwrap();
        assert!(super::ports::reserve(port), "free once its holder ended");
        assert!(
            !super::ports::reserve(port),
            "and never twice in one process"
        );
    }
}
