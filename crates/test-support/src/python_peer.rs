//! Independent protocol peers written in Python (pymodbus for Modbus,
//! bacpypes3 for BACnet/IP), run from the virtual environment that
//! `scripts/test.sh` makes under `target/peers-venv`.
//!
//! A peer is a Python script the test passes as text. It must print one
//! line `ready` on stdout once it serves; [`PythonPeer::start`] waits for
//! that line (bounded), so a test never sleeps for a peer to come up. The
//! process is killed when the value is dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where `scripts/test.sh` puts the peers' virtual environment, or
/// `EDGE_TEST_PEERS_VENV` when set.
pub fn peers_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDGE_TEST_PEERS_VENV") {
        return PathBuf::from(dir);
    }
    // crates/test-support → the repository root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/peers-venv")
        .components()
        .collect()
}

/// The venv's interpreter; panics with the command that makes it when it
/// is missing, so a test never passes for want of its peer.
pub fn peers_python() -> PathBuf {
    let python = peers_venv().join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: the Modbus and BACnet tests need pymodbus and bacpypes3; \
         run `bash scripts/test.sh` once (or `bash scripts/peers-venv.sh`)",
        python.display()
    );
    python
}

/// A running Python peer, killed on drop.
pub struct PythonPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl PythonPeer {
    /// Runs `script` with the peers' interpreter and waits (up to 30 s)
    /// for it to print `ready`. Lines it prints before are kept for
    /// [`PythonPeer::next_line`].
    pub fn start(script: &str) -> Self {
        Self::start_with_args(script, &[])
    }

    /// As [`PythonPeer::start`], with arguments for the script (`sys.argv[1:]`).
    pub fn start_with_args(script: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.py");
        std::fs::write(&path, script).unwrap();
        let mut child = Command::new(peers_python())
            .arg("-u")
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = Self {
            child,
            stdin,
            lines,
            _dir: dir,
        };
        peer.wait_for_line(|l| l == "ready", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the Python peer did not print `ready`"));
        peer
    }

    /// The next line the peer prints, within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Reads lines until one satisfies `want` (returned), or `timeout`
    /// passes (None). Lines read before it are discarded.
    pub fn wait_for_line(
        &mut self,
        want: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if want(&line) {
                return Some(line);
            }
        }
    }

    /// Sends one line to the peer's stdin (a script reads commands there:
    /// change a value, stop answering, …).
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the peer's stdin is closed");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The peer's process id (to stop or kill it from a test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the peer now and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_ready_and_answers_on_its_stdin() {
        let mut peer = PythonPeer::start(
            "import sys\nprint('ready')\nfor line in sys.stdin:\n    print('echo ' + line.strip())\n",
        );
        peer.send_line("hello");
        let got = peer.wait_for_line(|l| l.starts_with("echo"), Duration::from_secs(10));
        assert_eq!(got.as_deref(), Some("echo hello"));
    }

    #[test]
    fn the_peers_have_their_libraries() {
        let out = Command::new(peers_python())
            .args([
                "-c",
                "import pymodbus, bacpypes3, serial; print(pymodbus.__version__)",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
