//! The modbus adapter against pymodbus's own client, same server, same
//! run: `cargo bench -p edge-gateway --bench modbus`.
//!
//! 1. Registers per second from one Modbus TCP device, grouped reads of
//!    120 registers (60 f32 values): the adapter's link and answer
//!    judging (`Link::read` + `Unit::judge`, the code every poll runs) in
//!    a closed loop, then pymodbus's synchronous client reading and
//!    decoding the same registers from the same pymodbus server. The
//!    server (Python) is the ceiling both share, so the figure is the
//!    ratio; beside it, each client's CPU per register read (user +
//!    system, `/proc/<pid>/stat`).
//! 2. The schedule: the whole adapter (`ModbusSource`) polling 100 devices
//!    (units 1-100 of one TCP server) every second for
//!    `EDGE_BENCH_SECONDS` (default 10); the jitter is how far each
//!    device's interval between two readings is from 1 s (p50, p99,
//!    max), against a limit of 10 % of the period (`EDGE_BENCH_JITTER=0`
//!    leaves it out).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::modbus::config::{ModbusConfig, Transport};
use adapters::modbus::devices::ModbusDevice;
use adapters::modbus::link::Link;
use adapters::modbus::poller::{Answer, Unit, Verdict};
use adapters::modbus::registers::{Order, Register, Table, ValueType};
use adapters::modbus::source::ModbusSource;
use gateway_core::backoff::Backoff;
use gateway_core::{Adapter, AdapterContext, DeviceId, Ingress, SystemClock, Telemetry};
use test_support::{free_port, PythonPeer};

const PEER: &str = include_str!("../tests/data/modbus_peer.py");
const VALUES: u16 = 60;

/// pymodbus's client: the same reads, decoded, for `seconds`.
const PYMODBUS_CLIENT: &str = r#"
import sys, time
from pymodbus.client import ModbusTcpClient
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
c = ModbusTcpClient("127.0.0.1", port=port, timeout=1)
c.connect()
print("ready", flush=True)
n = 0
cpu0, t0 = time.process_time(), time.monotonic()
while time.monotonic() - t0 < seconds:
    r = c.read_holding_registers(0, count=count, device_id=1)
    regs = r.registers
    vals = [c.convert_from_registers(regs[i:i + 2], data_type=c.DATATYPE.FLOAT32) for i in range(0, count, 2)]
    assert len(vals) == count // 2
    n += 1
print(f"result {n} {time.process_time() - cpu0} {time.monotonic() - t0}", flush=True)
"#;

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis: utime is the 14th
    // field of the line, stime the 15th (11th and 12th after it).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn f32_registers() -> Vec<Register> {
    (0..VALUES)
        .map(|i| Register {
            metric: format!("v{i}"),
            table: Table::Holding,
            address: 2 * i,
            ty: ValueType::F32,
            order: Order::Abcd,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            writable: false,
            min: None,
            max: None,
            bit: None,
            length: 0,
        })
        .collect()
}

async fn gateway_rate(port: u16, seconds: f64) -> (f64, f64) {
    let transport = Transport::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let mut link = Link::open(&transport, Duration::from_secs(1))
        .await
        .unwrap();
    let period = Duration::from_secs(1);
    let mut unit = Unit::new(
        1,
        f32_registers(),
        8,
        period,
        tokio::time::Instant::now(),
        Backoff::new(period, period),
    );
    let read = unit.plan.reads()[0].clone();
    assert_eq!(read.count, 2 * VALUES, "one grouped read");
    let cpu0 = cpu_seconds("self");
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < seconds {
        let answer = link.read(1, &read).await;
        assert!(matches!(answer, Answer::Words(_)), "{answer:?}");
        match unit.judge(&read, answer, tokio::time::Instant::now()) {
            Verdict::Values { values, .. } => assert_eq!(values.len(), usize::from(VALUES)),
            other => panic!("{other:?}"),
        }
        n += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    (n as f64 / wall, (cpu_seconds("self") - cpu0) / n as f64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn jitter(seconds: u64) {
    const DEVICES: u8 = 100;
    let port = free_port();
    let units: serde_json::Map<String, serde_json::Value> = (1..=DEVICES)
        .map(|u| {
            (
                u.to_string(),
                serde_json::json!({ "holding": { "0": [u, 2, 3, 4] } }),
            )
        })
        .collect();
    let layout = serde_json::json!({ "units": units }).to_string();
    let _peer = PythonPeer::start_with_args(PEER, &["tcp", &port.to_string(), &layout]);
    let period = Duration::from_secs(1);
    let config = ModbusConfig {
        name: "bench".into(),
        transport: Transport::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        poll: period,
        timeout: Duration::from_secs(1),
        max_backoff: Duration::from_secs(5),
        max_gap: 8,
    };
    let devices = (1..=DEVICES)
        .map(|u| ModbusDevice {
            common: Default::default(),
            id: DeviceId::new(format!("meter-{u:03}")).unwrap(),
            unit: u,
            profile: None,
            registers: f32_registers().into_iter().take(2).collect(),
            poll: None,
            max_gap: None,
        })
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ctx = AdapterContext {
        name: "bench".into(),
        ingress: tx.into(),
        shutdown: shutdown.clone(),
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
    };
    let task = tokio::spawn(Box::new(ModbusSource::new(config, devices)).run(ctx));
    let mut seen: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while let Ok(Some(msg)) = tokio::time::timeout_at(end.into(), rx.recv()).await {
        if let Ingress::Readings(readings) = msg {
            if let Some(r) = readings.first() {
                seen.entry(r.device().as_str().to_string())
                    .or_default()
                    .push(Instant::now());
            }
        }
    }
    shutdown.cancel();
    let _ = task.await;
    let mut offsets: Vec<f64> = seen
        .values()
        .flat_map(|t| t.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() - 1.0))
        .map(f64::abs)
        .collect();
    offsets.sort_by(f64::total_cmp);
    let polls: usize = seen.values().map(Vec::len).sum();
    println!(
        "schedule: {} devices answered, {polls} polls in {seconds} s ({:.1}/s, period 1 s)",
        seen.len(),
        polls as f64 / seconds as f64
    );
    if offsets.is_empty() {
        println!("schedule: no intervals measured");
        return;
    }
    let (p50, p99, max) = (
        percentile(&offsets, 0.5) * 1e3,
        percentile(&offsets, 0.99) * 1e3,
        offsets[offsets.len() - 1] * 1e3,
    );
    println!(
        "schedule jitter |interval - 1 s|: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; limit 100 ms (10 % of the period): {}",
        if p99 <= 100.0 { "within" } else { "OVER" }
    );
}

fn main() {
    let seconds: f64 = std::env::var("EDGE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let words: Vec<u16> = (0..VALUES)
        .flat_map(|i| {
            let b = (20.0 + f32::from(i) / 8.0).to_be_bytes();
            [
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            ]
        })
        .collect();
    let layout = serde_json::json!({ "units": { "1": { "holding": { "0": words } } } }).to_string();
    let server = PythonPeer::start_with_args(PEER, &["tcp", &port.to_string(), &layout]);
    let (gw_reads, gw_cpu) = rt.block_on(gateway_rate(port, seconds / 2.0));
    let regs = f64::from(2 * VALUES);
    let mut client = PythonPeer::start_with_args(
        PYMODBUS_CLIENT,
        &[
            &port.to_string(),
            &(2 * VALUES).to_string(),
            &(seconds / 2.0).to_string(),
        ],
    );
    let line = client
        .wait_for_line(|l| l.starts_with("result"), Duration::from_secs(120))
        .expect("pymodbus client result");
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let (py_reads, py_cpu) = (f[0] / f[2], f[1] / f[0]);
    drop(server);
    println!(
        "grouped reads of {} registers ({VALUES} f32) from one pymodbus TCP server:",
        2 * VALUES
    );
    println!(
        "  gateway (adapter link + decode): {:.0} reads/s = {:.0} registers/s, CPU {:.2} us/register",
        gw_reads,
        gw_reads * regs,
        gw_cpu / regs * 1e6
    );
    println!(
        "  pymodbus client (limit, same server, same run): {:.0} reads/s = {:.0} registers/s, CPU {:.2} us/register",
        py_reads,
        py_reads * regs,
        py_cpu / regs * 1e6
    );
    println!(
        "  ratio gateway/pymodbus: {:.2} in rate, {:.2} in CPU per register",
        gw_reads / py_reads,
        gw_cpu / py_cpu
    );
    // Issue 69's goal, as a `goal:` line for scripts/bench-ratios.sh: the
    // adapter at least 5x pymodbus's own client per CPU (registers per
    // CPU-second, both measured in this run against the same server).
    let per_cpu = py_cpu / gw_cpu.max(1e-12);
    println!(
        "goal: Modbus registers per CPU-second, gateway / pymodbus ({:.2} / {:.2} µs per register) | {per_cpu:.2} x | ≥ 5.00 x | {}",
        gw_cpu / regs * 1e6,
        py_cpu / regs * 1e6,
        if per_cpu >= 5.0 { "met" } else { "NOT MET" }
    );
    if std::env::var("EDGE_BENCH_JITTER").is_ok_and(|v| v == "0") {
        return;
    }
    rt.block_on(jitter(seconds as u64));
}
