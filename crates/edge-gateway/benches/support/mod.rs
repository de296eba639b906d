//! What the edge-gateway benches share: a Mosquitto on a free port, the
//! real gateway binary with a config, its `/metrics` counters, the
//! first-to-last rate of a burst, and the CPU a process spent on it.
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

/// User + system CPU seconds a process has used so far, all its threads
/// (`/proc/<pid>/stat`, fields 14 and 15); 0 when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces: count from its ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Waits for a child to end and gives the user + system CPU seconds it
/// used in all: read while it is a zombie, before it is reaped (after,
/// its `/proc` entry is gone). Polls, which a bench may.
pub fn wait_with_cpu(child: &mut Child) -> f64 {
    let pid = child.id();
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 1..].trim_start().chars().next())
            });
        match state {
            Some('Z') | None => break,
            Some(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let used = cpu_seconds(pid);
    let _ = child.wait();
    used
}

/// The CPU one process spends from now on, per item of a burst.
pub struct CpuMeter {
    pid: u32,
    start: f64,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            start: cpu_seconds(pid),
        }
    }

    /// Microseconds of CPU per item since [`Self::start`].
    pub fn micros_per(&self, items: u64) -> f64 {
        self.micros_per_until(cpu_seconds(self.pid), items)
    }

    /// Microseconds of CPU per item from [`Self::start`] to when the
    /// process had used `cpu_seconds` (read by [`Gateway::watch_costed`]).
    pub fn micros_per_until(&self, cpu_seconds: f64, items: u64) -> f64 {
        1e6 * (cpu_seconds - self.start) / (items.max(1) as f64)
    }
}

/// Pins a running process and every thread it has to CPU 0 (`taskset`):
/// what it costs when it cannot spread over cores, as on a loaded Pi.
/// Threads it starts later inherit the mask.
pub fn pin_to_one_core(pid: u32) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset -a -p -c 0 {pid} failed (util-linux)");
}

/// Lets a pinned process use every core again.
pub fn unpin(pid: u32) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &format!("0-{}", cores - 1),
            &pid.to_string(),
        ])
        .stdout(Stdio::null())
        .status();
}

/// A process that keeps one core busy until dropped: the "something else
/// runs on this Pi" condition.
pub struct Burner(Child);

impl Burner {
    pub fn start() -> Self {
        Self(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("sh"),
        )
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

impl Broker {
    pub fn pid(&self) -> u32 {
        self.child.id()
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
        let mut child = Command::new(gateway_exe())
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

    pub fn pid(&self) -> u32 {
        self.child.id()
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
        self.watch_from(name, 0.0, n)
    }

    /// [`Self::watch`] for a counter that stood at `from` before this
    /// burst: waits for `n` more, and counts only those.
    pub fn watch_from(&self, name: &str, from: f64, n: f64) -> Run {
        self.watch_costed(name, from, n, &[]).0
    }

    /// [`Self::watch_from`], and the CPU seconds each of `pids` had used
    /// when the counter last rose: what a burst cost, without the idle
    /// wait that tells its end (3 s of timers and of this watch's own
    /// `/metrics` scrapes, a microsecond a datagram when a short burst
    /// lost most of its datagrams).
    pub fn watch_costed(&self, name: &str, from: f64, n: f64, pids: &[u32]) -> (Run, Vec<f64>) {
        let n = from + n;
        let (mut first, mut last, mut value) = (None, Instant::now(), from);
        let mut changed = Instant::now();
        let mut cpu: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
        loop {
            let v = self.counter(name);
            let now = Instant::now();
            if v > value {
                first.get_or_insert(now);
                value = v;
                last = now;
                changed = now;
                cpu = pids.iter().map(|&p| cpu_seconds(p)).collect();
            }
            if value >= n || now - changed > IDLE {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let run = Run {
            received: (value - from) as u64,
            seconds: first.map_or(0.0, |f| (last - f).as_secs_f64()),
        };
        (run, cpu)
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
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Which side of its limit a figure must stay on.
#[derive(Clone, Copy)]
pub enum Bound {
    AtLeast,
    AtMost,
}
// Not every bench judges both ways.
#[allow(unused_imports)]
pub use Bound::{AtLeast, AtMost};

/// Prints one judged figure as a `goal:` line, the form
/// `scripts/bench-ratios.sh` collects from every bench into one table:
/// `goal: <what> | <measured> <unit> | <≥ or ≤> <limit> <unit> | met or NOT MET`.
/// A verdict only: a bench never fails on a number.
pub fn goal(what: &str, measured: f64, limit: f64, bound: Bound, unit: &str) {
    let (sign, met) = match bound {
        Bound::AtLeast => ("≥", measured >= limit),
        Bound::AtMost => ("≤", measured <= limit),
    };
    let verdict = if met { "met" } else { "NOT MET" };
    let places = if unit == "%" { 1 } else { 2 };
    println!(
        "goal: {what} | {measured:.places$} {unit} | {sign} {limit:.places$} {unit} | {verdict}"
    );
}

/// A figure with no goal of its own, in the same table as the goals: the
/// trend the next regression shows in.
pub fn figure(what: &str, measured: f64, unit: &str) {
    let places = if unit == "%" { 1 } else { 2 };
    println!("goal: {what} | {measured:.places$} {unit} | - | figure");
}

/// The gateway binary a bench measures: `EDGE_BENCH_GATEWAY` when set (an
/// older build, to measure before and after a change with the same
/// harness and sender), else the one cargo built beside the bench.
pub fn gateway_exe() -> std::path::PathBuf {
    std::env::var_os("EDGE_BENCH_GATEWAY")
        .filter(|p| !p.is_empty())
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_BIN_EXE_edge-gateway")),
            std::path::PathBuf::from,
        )
}
