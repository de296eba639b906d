//! What the edge-gateway benches share: a Mosquitto on a free port, the
//! real gateway binary with a config, its `/metrics` counters, and the
//! first-to-last rate of a burst.
//!
//! Each bench includes it with `#[path]`; not every bench uses every part.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a counter may stand still before a burst counts as over.
pub const IDLE: Duration = Duration::from_secs(3);

/// What a receiver took in, first arrival to last.
pub struct Run {
    pub received: u64,
    pub seconds: f64,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.received as f64 / self.seconds.max(1e-9)
    }
}

/// A Mosquitto on a free loopback port, killed on drop.
pub struct Broker {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// `options`: more lines of mosquitto.conf (queue limits, Nagle).
    pub fn start(options: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = test_support::free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n{options}\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child's stdout, line by line with the moment each was read.
pub fn lines(child: &mut Child) -> mpsc::Receiver<(Instant, String)> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// The real gateway binary, stopped with SIGTERM on drop.
pub struct Gateway {
    child: Child,
    /// Where its `/metrics` listens, if the config gave it one.
    pub metrics: Option<u16>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Runs `edge-gateway run` on `config`, in which `@STATE_DIR@` becomes
    /// a fresh directory, and waits until a log line contains each of
    /// `ready` (in any order, one line each).
    pub fn start(config: &str, metrics: Option<u16>, ready: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config.replace(
            "@STATE_DIR@",
            &dir.path().join("state").display().to_string(),
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .expect("edge-gateway");
        let rx = lines(&mut child);
        let mut waiting: Vec<&str> = ready.to_vec();
        while !waiting.is_empty() {
            let (_, line) = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("gateway ready");
            if let Some(i) = waiting.iter().position(|w| line.contains(w)) {
                waiting.swap_remove(i);
            }
        }
        // Keep reading so a full pipe never blocks the gateway's logging.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Self {
            child,
            metrics,
            _dir: dir,
        }
    }

    /// A counter or gauge from `/metrics`; 0 when absent or unreachable.
    pub fn counter(&self, name: &str) -> f64 {
        self.metrics
            .and_then(|port| http_get(port, "/metrics"))
            .and_then(|body| {
                body.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Polls a counter (of a fresh gateway: it starts at 0) until it
    /// reaches `n` or stands still for IDLE; the rate is over its first
    /// to last increase.
    pub fn watch(&self, name: &str, n: f64) -> Run {
        let (mut first, mut last, mut value) = (None, Instant::now(), 0.0);
        let mut changed = Instant::now();
        loop {
            let v = self.counter(name);
            let now = Instant::now();
            if v > value {
                first.get_or_insert(now);
                value = v;
                last = now;
                changed = now;
            }
            if value >= n || now - changed > IDLE {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Run {
            received: value as u64,
            seconds: first.map_or(0.0, |f| (last - f).as_secs_f64()),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}
