//! The real radio path (btleplug → bluez-async → D-Bus) with no radio:
//! `edge-gateway ble record` against python3-dbusmock's `bluez5` template on
//! a private bus the test starts (`DBUS_SYSTEM_BUS_ADDRESS`). The mock
//! plays bluetoothd: an adapter, a device, and PropertiesChanged signals
//! carrying RSSI, ServiceData and ManufacturerData, which btleplug turns
//! into the advertisement events the adapter decodes. The capture must be
//! the replay format and decode to the published values.
//!
//! Needs `dbus-daemon` (Debian `dbus`) and python3-dbusmock (Debian
//! `python3-dbusmock`; scripts/test.sh installs both); without them the
//! mock tests print why and pass, the refusal without any bus still runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use adapters::ble::{Advertisement, Mac, ServiceUuid};

const WAIT: Duration = Duration::from_secs(30);
const MAC: &str = "54:48:E6:8F:80:A5";
/// bthome.io's format example: temperature 25.06 °C, humidity 50.55 %.
const BTHOME: &str = "4002ca0903bf13";
/// Ruuvi's "valid data" vector.
const RUUVI: &str = "0512fc5394c37c0004fffc040cac364200cdcbb8334c884f";

/// A child killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's pipe, as they come.
fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`, returning the lines before it.
fn until(rx: &Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(line) if line.contains(needle) => return seen,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no line with {needle:?} ({e}); before: {seen:?}"),
        }
    }
}

/// The Python with dbusmock: Debian's, which a pyenv shim may hide.
fn python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import dbusmock"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn have_dbus_daemon() -> bool {
    Command::new("dbus-daemon")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A private bus of our own: the daemon and its address.
fn private_bus() -> (Proc, String) {
    let mut child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let address = out
        .recv_timeout(WAIT)
        .expect("dbus-daemon printed no address");
    (Proc(child), address)
}

/// The bluez5 mock on `bus`, up (hci0 and the device, unless `adapters`
/// is 0), with its stdin to ask for advertisements and its stdout lines.
fn bluez_mock(py: &str, bus: &str, adapters: u8) -> (Proc, ChildStdin, Receiver<String>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bluez_mock.py");
    let mut child = Command::new(py)
        .arg(script)
        .args([
            MAC,
            "0000fcd2-0000-1000-8000-00805f9b34fb",
            BTHOME,
            "0499",
            RUUVI,
        ])
        .arg(adapters.to_string())
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = lines(child.stdout.take().unwrap());
    until(&out, "ready");
    (Proc(child), stdin, out)
}

fn record(bus: &str, duration: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-gateway"));
    cmd.args(["ble", "record", "--duration", duration])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus);
    cmd
}

fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(out.stdout.is_empty(), "no capture lines: {out:?}");
}

#[test]
fn record_captures_what_bluez_reports_in_the_replay_format() {
    let Some(py) = python() else {
        eprintln!("skipped: python3-dbusmock is not installed (apt install python3-dbusmock)");
        return;
    };
    if !have_dbus_daemon() {
        eprintln!("skipped: dbus-daemon is not installed (apt install dbus)");
        return;
    }
    let (_bus, address) = private_bus();
    let (_mock, mut mock_in, mock_out) = bluez_mock(py, &address, 1);

    let mut child = record(&address, "5m")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let captured = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let recorder = Proc(child);
    // btleplug has set the discovery filter and started the scan.
    until(&stderr, "scanning");
    writeln!(mock_in, "send").unwrap();
    until(&mock_out, "sent");

    let mut adverts = Vec::new();
    while adverts.len() < 2 {
        let line = captured
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("capture stopped at {adverts:?}: {e}"));
        adverts.push(Advertisement::parse_line(&line).unwrap());
    }
    drop(recorder);

    let mac: Mac = MAC.parse().unwrap();
    assert!(adverts.iter().all(|a| a.mac == mac), "{adverts:?}");
    // RSSI came first, in its own PropertiesChanged.
    assert!(adverts.iter().all(|a| a.rssi == Some(-61)), "{adverts:?}");
    let service = adverts
        .iter()
        .find_map(|a| a.service(ServiceUuid::BTHOME))
        .expect("a BTHome advertisement");
    assert_eq!(adapters::ble::advert::to_hex(service), BTHOME);
    let maker = adverts
        .iter()
        .find_map(|a| a.manufacturer(0x0499))
        .expect("a Ruuvi advertisement");
    assert_eq!(adapters::ble::advert::to_hex(maker), RUUVI);

    // And the capture decodes as the gateway would decode it.
    let line = adverts
        .iter()
        .find(|a| a.service(ServiceUuid::BTHOME).is_some())
        .unwrap()
        .to_line();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["decode", "--ble-line", &line])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let decoded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decoded["values"]["temperature"].as_f64(), Some(25.06));
    assert_eq!(decoded["values"]["rssi"].as_f64(), Some(-61.0));
}

#[test]
fn record_without_an_adapter_exits_69_naming_the_fix() {
    let Some(py) = python() else {
        eprintln!("skipped: python3-dbusmock is not installed (apt install python3-dbusmock)");
        return;
    };
    if !have_dbus_daemon() {
        eprintln!("skipped: dbus-daemon is not installed (apt install dbus)");
        return;
    }
    let (_bus, address) = private_bus();
    let (_mock, _mock_in, _mock_out) = bluez_mock(py, &address, 0);
    let out = record(&address, "5m").output().unwrap();
    refused(&out, "no Bluetooth adapter");
}

#[test]
fn record_without_bluetoothd_exits_69_naming_the_fix() {
    if !have_dbus_daemon() {
        eprintln!("skipped: dbus-daemon is not installed (apt install dbus)");
        return;
    }
    // A bus where nobody owns org.bluez.
    let (_bus, address) = private_bus();
    let out = record(&address, "5m").output().unwrap();
    refused(&out, "apt install bluez");
}

#[test]
fn record_without_a_system_bus_exits_69_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-bus");
    let out = record(&format!("unix:path={}", socket.display()), "5m")
        .output()
        .unwrap();
    refused(&out, "the system D-Bus is not running");
}
