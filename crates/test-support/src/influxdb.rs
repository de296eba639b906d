//! A real InfluxDB 1.x (Debian's `influxdb`, `influxd -config`) on loopback
//! ports the test picked, with its data in a temporary directory; stopped
//! when dropped. Can be stopped and started again on the same data and port
//! (an outage).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Influxd {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Influxd {
    /// Starts `influxd` on a free port and waits until its HTTP API listens.
    pub fn start() -> Self {
        assert!(
            crate::have("influxd"),
            "influxd is not installed: apt-get install influxdb (scripts/test.sh does)"
        );
        for _ in 0..5 {
            let mut db = Self {
                child: None,
                port: crate::free_port(),
                dir: tempfile::tempdir().unwrap(),
            };
            if db.spawn() {
                return db;
            }
        }
        panic!("influxd did not start");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("influxdb.conf")
    }

    /// Writes the config and starts the process; true once HTTP listens.
    fn spawn(&mut self) -> bool {
        let d = self.dir.path().display();
        let rpc = crate::free_port();
        let conf = format!(
            "reporting-disabled = true\n\
             bind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [subscriber]\n  enabled = false\n",
            port = self.port
        );
        std::fs::write(self.config_path(), conf).unwrap();
        let mut child = Command::new("influxd")
            .arg("-config")
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut said = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !said && line.contains("Listening on HTTP") {
                    said = true;
                    let _ = tx.send(true);
                }
                if std::env::var_os("INFLUXD_LOG").is_some() {
                    eprintln!("influxd: {line}");
                }
            }
            let _ = tx.send(false);
        });
        let up = matches!(rx.recv_timeout(Duration::from_secs(30)), Ok(true));
        self.child = Some(child);
        if !up {
            self.stop();
        }
        up
    }

    /// Stops the process (SIGKILL: the WAL makes what it acknowledged
    /// durable); the data stays for [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "influxd did not restart");
    }

    /// Runs an InfluxQL query; the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let body = form(&[("db", db), ("q", q), ("epoch", "ms")]);
        let (status, text) = http(
            self.port,
            "POST",
            "/query",
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        );
        assert_eq!(status, 200, "query {q}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The first series' rows of a query, `[]` when it has none.
    pub fn rows(&self, db: &str, q: &str) -> Vec<Vec<serde_json::Value>> {
        self.try_rows(db, q)
            .unwrap_or_else(|e| panic!("query {q}: {e}"))
    }

    /// Like [`Self::rows`], with InfluxDB's error (no such database yet).
    pub fn try_rows(&self, db: &str, q: &str) -> Result<Vec<Vec<serde_json::Value>>, String> {
        let v = self.query(db, q);
        if let Some(e) = v["results"][0]["error"].as_str() {
            return Err(e.to_string());
        }
        Ok(v["results"][0]["series"][0]["values"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// POSTs line protocol to `/write` as any client would (for baselines).
    pub fn write(&self, db: &str, precision: &str, body: &[u8]) -> u16 {
        let path = format!("/write?{}", form(&[("db", db), ("precision", precision)]));
        http(self.port, "POST", &path, "text/plain", body).0
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One HTTP/1.0 exchange (the connection closes after the answer).
pub fn http(port: u16, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
