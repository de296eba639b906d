//! HTTP GET against the gateway's endpoints (`/metrics`, `/health`, the
//! dashboard and its API), one way for every test: a test file never
//! writes its own request line or splits its own response.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gateway::WAIT;

/// An answer: status code, head (status line and headers), body (a
/// chunked one whole), and the bytes as they came.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub code: u16,
    pub head: String,
    pub body: String,
    pub raw: String,
}

/// `GET path` with `headers` on `stream` (plain TCP, TLS, …), read to
/// its end: `None` when nothing came back. A peer that ends TLS without
/// close_notify after `Connection: close` still gives what it sent.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<Response> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut bytes = Vec::new();
    let read = stream.read_to_end(&mut bytes).await;
    if read.is_err() && bytes.is_empty() {
        return None;
    }
    let raw = String::from_utf8_lossy(&bytes).to_string();
    let code = raw.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    Some(Response {
        code,
        head: head.to_string(),
        body,
        raw,
    })
}

/// One `GET` with `headers` over a fresh connection to 127.0.0.1:`port`;
/// `None` while nothing answers.
pub async fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let answer = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        exchange(stream, path, headers).await
    };
    tokio::time::timeout(WAIT, answer).await.ok().flatten()
}

/// One `GET` over a fresh connection: (status code, body); `None` while
/// nothing answers (a gateway still starting, or one that refused its
/// config and exited). A chunked body (hyper's, when it does not know the
/// length) comes back whole.
pub async fn try_get(port: u16, path: &str) -> Option<(u16, String)> {
    let r = get_with(port, path, &[]).await?;
    Some((r.code, r.body))
}

pub fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One `GET` that must be answered: (status code, body).
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path)
        .await
        .unwrap_or_else(|| panic!("no HTTP answer on port {port} for {path}"))
}

/// Polls `path` until `done(status, body)`: the state behind it changes
/// asynchronously (a broker connection), and the endpoint is how we see it.
pub async fn http_until(port: u16, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    http_until_within(port, path, WAIT, done).await
}

/// [`http_until`] for state that takes longer than [`WAIT`] to reach (a
/// burst of tens of thousands of QoS 1 messages through a debug build).
pub async fn http_until_within(
    port: u16,
    path: &str,
    wait: std::time::Duration,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (code, body) = http_get(port, path).await;
        if done(code, &body) {
            return (code, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} stayed at {code}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
