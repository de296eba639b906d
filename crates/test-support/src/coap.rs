//! libcoap's `coap-client` (Debian `libcoap3-bin`), run as a child process.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The first libcoap client binary on PATH.
pub fn coap_client() -> Option<&'static str> {
    [
        "coap-client-notls",
        "coap-client-openssl",
        "coap-client-gnutls",
        "coap-client",
    ]
    .into_iter()
    .find(|p| crate::have(p))
}

/// What one `coap-client` run printed and how it ended.
#[derive(Debug)]
pub struct CoapOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `coap-client` with `args` and waits (bounded) for it to exit.
pub async fn coap_client_run(args: &[&str]) -> CoapOutput {
    let program = coap_client().expect("coap-client (apt install libcoap3-bin)");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("coap-client did not exit in time")
        .expect("spawn coap-client");
    CoapOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A free UDP port on 127.0.0.1 (bound then released).
pub fn free_udp_port() -> u16 {
    loop {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("no free loopback UDP port");
        // The same registry as TCP ports: a number taken for either is not
        // handed out again while its holder runs.
        if crate::ports::reserve(port) {
            return port;
        }
    }
}

/// libcoap's example `coap-server` on a loopback port; killed when dropped.
/// Its `/example_data` resource is observable and takes PUTs, so a test can
/// change a value and have the server notify its observers.
pub struct CoapServer {
    child: std::process::Child,
    port: u16,
}

impl CoapServer {
    /// Starts the server and waits until it answers a discovery request.
    pub async fn start(port: u16) -> Self {
        let program = [
            "coap-server-notls",
            "coap-server-openssl",
            "coap-server-gnutls",
            "coap-server",
        ]
        .into_iter()
        .find(|p| crate::have(p))
        .expect("coap-server (apt install libcoap3-bin)");
        let child = std::process::Command::new(program)
            .args(["-A", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn coap-server");
        let server = Self { child, port };
        // Ready when it answers: each try waits at most a second for a reply.
        let target = format!("coap://127.0.0.1:{port}/.well-known/core");
        for _ in 0..20 {
            let out = coap_client_run(&["-m", "get", "-B", "1", &target]).await;
            if out.stdout.contains("example_data") {
                return server;
            }
        }
        panic!("coap-server on port {port} never answered");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets `/example_data` to `value` (text/plain); observers get notified.
    pub async fn put(&self, value: &str) {
        let target = format!("coap://127.0.0.1:{}/example_data", self.port);
        let out = coap_client_run(&["-m", "put", "-t", "0", "-e", value, &target]).await;
        assert!(out.success && out.stderr.is_empty(), "PUT {value}: {out:?}");
    }

    /// Sets `/example_data` to a JSON document (Content-Format 50); one
    /// over 1024 bytes reaches observers block-wise (RFC 7959 §2.4).
    pub async fn put_json(&self, body: &str) {
        let target = format!("coap://127.0.0.1:{}/example_data", self.port);
        let out = coap_client_run(&["-m", "put", "-t", "50", "-e", body, &target]).await;
        assert!(out.success && out.stderr.is_empty(), "PUT {body}: {out:?}");
    }
}

impl Drop for CoapServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
