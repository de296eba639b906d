//! A real InfluxDB 1.x (Debian's `influxdb`, `influxd -config`) on loopback
//! ports the test picked, with its data in a temporary directory; stopped
//! when dropped. Can be stopped and started again on the same data and port
//! (an outage), and can serve HTTPS only (`[http] https-enabled`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The server's certificate and key, and the CA the test's own queries
/// trust.
#[derive(Clone)]
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

pub struct Influxd {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    tls: Option<TlsFiles>,
    /// `[http] auth-enabled`: every request needs a user.
    auth: bool,
}

impl Influxd {
    /// Starts `influxd` on a free port and waits until its HTTP API listens.
    pub fn start() -> Self {
        Self::start_with(None, false)
    }

    /// Starts `influxd` with `[http] auth-enabled = true` and no user yet:
    /// the first `CREATE USER … WITH ALL PRIVILEGES` needs no credentials.
    /// Queries go through [`http`] with `u=`/`p=`, not [`Self::query`].
    pub fn start_with_auth() -> Self {
        Self::start_with(None, true)
    }

    /// Starts `influxd` serving HTTPS only, with `cert` and `key` (PEM);
    /// its queries here trust `ca`.
    pub fn start_tls(ca: &Path, cert: &Path, key: &Path) -> Self {
        Self::start_with(
            Some(TlsFiles {
                ca: ca.to_path_buf(),
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }),
            false,
        )
    }

    fn start_with(tls: Option<TlsFiles>, auth: bool) -> Self {
        assert!(
            crate::have("influxd"),
            "influxd is not installed: apt-get install influxdb (scripts/test.sh does)"
        );
        for _ in 0..5 {
            let mut db = Self {
                child: None,
                port: crate::free_port(),
                dir: tempfile::tempdir().unwrap(),
                tls: tls.clone(),
                auth,
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
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("influxdb.conf")
    }

    /// Writes the config and starts the process; true once HTTP listens.
    fn spawn(&mut self) -> bool {
        let d = self.dir.path().display();
        let rpc = crate::free_port();
        let https = match &self.tls {
            Some(t) => format!(
                "  https-enabled = true\n  https-certificate = \"{}\"\n  https-private-key = \"{}\"\n",
                t.cert.display(),
                t.key.display()
            ),
            None => String::new(),
        };
        let https = if self.auth {
            format!("{https}  auth-enabled = true\n")
        } else {
            https
        };
        let conf = format!(
            "reporting-disabled = true\n\
             bind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n{https}\
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
        let (status, text) = self.http(
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
        self.http("POST", &path, "text/plain", body).0
    }

    fn http(&self, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String) {
        match &self.tls {
            None => http(self.port, method, path, ctype, body),
            Some(t) => https(self.port, &t.ca, method, path, ctype, body),
        }
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
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    exchange(s, method, path, ctype, body)
}

/// [`http`] over TLS, trusting only `ca` (PEM).
fn https(
    port: u16,
    ca: &Path,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    exchange(
        rustls::StreamOwned::new(conn, tcp),
        method,
        path,
        ctype,
        body,
    )
}

fn exchange(
    mut s: impl Read + Write,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> (u16, String) {
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    // A TLS server may close without close_notify (Go's does after
    // HTTP/1.0): the answer read so far is whole.
    if let Err(e) = s.read_to_end(&mut out) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
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
