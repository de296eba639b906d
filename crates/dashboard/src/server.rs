//! The dashboard's HTTP/1.1 server: hyper, as `/metrics` uses, with
//! connections shed per address (`shed.rs`), a short deadline for the
//! request head, optional TLS (rustls) and Basic auth in front of every
//! path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_core::config::DashboardConfig;
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Frame, Incoming};
use std::io::Write as _;

use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::auth::Verdict;
use super::shed::{Connections, Limits, Slot};
use super::{api, commands, pages, AppState};

/// A client must send its request head within this time (and finish a
/// TLS handshake): a socket that says nothing holds its place no longer.
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// A whole answer, or the `/events` stream.
pub type Body = Either<Full<Bytes>, EventStream>;

/// `/events`: chunks handed over by the client's forwarding task.
pub struct EventStream {
    pub rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

pub struct Server {
    pub addr: SocketAddr,
    tls: bool,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Whether it answers HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if self.addr.is_ipv6() {
            format!("[{}]", self.addr.ip())
        } else {
            self.addr.ip().to_string()
        };
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}/", self.addr.port())
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Why the dashboard's HTTPS cannot start: the file and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("dashboard.{key} {path}: {source}")]
    Read {
        key: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dashboard.key_file {0}: no private key")]
    NoKey(std::path::PathBuf),
    #[error("dashboard TLS certificate and key: {0}")]
    Config(#[from] rustls::Error),
}

fn read_error(
    key: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Read { key, path, source }
}

/// The TLS acceptor when `cert_file` and `key_file` are set.
///
/// # Errors
/// Files that cannot be read or hold no certificate or key.
pub fn tls_acceptor(config: &DashboardConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        return Ok(None);
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).map_err(read_error("cert_file", cert))?,
    ))
    .collect::<Result<_, _>>()
    .map_err(read_error("cert_file", cert))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).map_err(read_error("key_file", key))?,
    ))
    .map_err(read_error("key_file", key))?
    .ok_or_else(|| TlsError::NoKey(key.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// Binds and serves. A port that cannot be bound is logged and the gateway
/// runs on (history is still kept): the pages must not stop the data path.
///
/// # Errors
/// The address cannot be bound (the caller says why and what to change).
pub fn serve(
    bind: SocketAddr,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
) -> std::io::Result<Server> {
    let listener = std::net::TcpListener::bind(bind)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std)?;
    let addr = listener.local_addr().unwrap_or(bind);
    let stop = CancellationToken::new();
    let is_tls = tls.is_some();
    let task = tokio::spawn(accept_loop(listener, tls, state, stop.clone()));
    Ok(Server {
        addr,
        tls: is_tls,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    stop: CancellationToken,
) {
    let connections = Connections::new(Limits::default(), state.telemetry.clone());
    loop {
        let Some((stream, peer)) =
            gateway_core::net::accept_next(&listener, &stop, "Dashboard").await
        else {
            return;
        };
        let slot = match connections.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                debug!(%peer, reason, "Dashboard: refusing a connection.");
                continue;
            }
        };
        let (state, tls, stop, connections) = (
            state.clone(),
            tls.clone(),
            stop.clone(),
            connections.clone(),
        );
        tokio::spawn(async move {
            let conn = Conn {
                peer,
                slot: Arc::new(slot),
                connections,
            };
            match tls {
                None => connection(stream, state, stop, conn).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(s)) => connection(s, state, stop, conn).await,
                        Ok(Err(_)) => debug!(%peer, "Dashboard: TLS handshake failed."),
                        Err(_) => conn.connections.refused("head_timeout"),
                    }
                }
            }
        });
    }
}

/// What a connection's requests need to know of it.
#[derive(Clone)]
struct Conn {
    peer: SocketAddr,
    slot: Arc<Slot>,
    connections: Connections,
}

async fn connection<S>(stream: S, state: Arc<AppState>, stop: CancellationToken, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stop_events = stop.clone();
    let close = conn.slot.close.clone();
    let counted = conn.connections.clone();
    let service = service_fn(move |req| {
        let state = state.clone();
        let stop = stop_events.clone();
        let conn = conn.clone();
        async move {
            conn.slot.busy();
            let mut response = respond(req, &state, &stop, &conn).await;
            harden(&mut response);
            conn.slot.idle();
            Ok::<_, Infallible>(response)
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = close.cancelled() => {}
        result = served => {
            if result.is_err_and(|e| e.is_timeout()) {
                counted.refused("head_timeout");
            }
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    state: &Arc<AppState>,
    stop: &CancellationToken,
    conn: &Conn,
) -> Response<Body> {
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok());
    if conn.peer.ip().is_loopback()
        && !crate::host_check::names_this_machine(
            host,
            crate::host_check::hostname(),
            &state.allowed_hosts,
        )
    {
        return full(
            StatusCode::MISDIRECTED_REQUEST,
            "text/plain; charset=utf-8",
            "reached over loopback under a name that is not this machine's (DNS rebinding?): use localhost or an address\n",
        );
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    match state.auth.check(header, conn.peer.ip()).await {
        Verdict::Allowed => {}
        Verdict::Denied => {
            let mut r = full(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "authentication required\n",
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"edge-gateway\", charset=\"UTF-8\""),
            );
            return r;
        }
        Verdict::Throttled(wait) => {
            return come_back(
                StatusCode::TOO_MANY_REQUESTS,
                wait,
                "too many failed logins from this address; wait\n",
            )
        }
        Verdict::Busy => {
            return come_back(
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(1),
                "busy checking passwords; retry\n",
            )
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return full(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    let path = req.uri().path().to_string();
    let query = api::Query::parse(req.uri().query().unwrap_or(""));
    let gzip = req
        .headers()
        .get(ACCEPT_ENCODING)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.contains("gzip"));
    let html = |body: String| html(body, gzip);
    match path.as_str() {
        "/events" => match conn.connections.to_stream(&conn.slot) {
            Ok(()) => api::events(state, stop),
            Err(_) => come_back(
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(5),
                "too many live streams open; retry\n",
            ),
        },
        "/api/devices" => api::devices(state),
        "/api/series" => api::series(state, &query).await,
        "/api/alerts" => api::alerts(state, &query).await,
        "/api/commands" => commands::api(state, &query),
        "/style.css" => {
            let mut r = full(StatusCode::OK, "text/css", pages::CSS);
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
            r
        }
        "/live.js" => {
            let mut r = full(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                pages::SCRIPT,
            );
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
            r
        }
        "/" => html(pages::overview(state, &query).await),
        "/device" => match pages::device(state, &query).await {
            Some(body) => html(body),
            None => full(StatusCode::NOT_FOUND, "text/plain", "no such device\n"),
        },
        "/alerts" => html(pages::alerts(state).await),
        "/gateway" => html(pages::gateway(state)),
        _ => full(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Headers every answer carries. The pages show a building's live state
/// (behind a password on any address but loopback): no other site may
/// frame them (clickjacking), and no browser or proxy may keep a copy of
/// them or of the API's answers on disk, where the next user of a shared
/// kiosk or a proxy's cache would find them. The stylesheet and the
/// script, the same for everyone, keep the cache time they set. Scripts
/// run only from the dashboard's own `/live.js`: markup a device id or
/// tag slipped past the escaping could not run one of its own.
fn harden(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// No framing by another site; scripts from this origin only (the pages
/// have no inline script or handler: see `pages`).
const CSP: &str = "frame-ancestors 'none'; script-src 'self'";

/// A page, gzipped when the client takes it: an overview of hundreds of
/// devices is mostly repeated markup and shrinks about tenfold.
fn html(body: String, gzip: bool) -> Response<Body> {
    if gzip && body.len() > 1024 {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if enc.write_all(body.as_bytes()).is_ok() {
            if let Ok(zipped) = enc.finish() {
                let mut r = full(StatusCode::OK, "text/html; charset=utf-8", zipped);
                r.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r.headers_mut()
                    .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
                return r;
            }
        }
    }
    full(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// An answer that says when to come back (`Retry-After`, whole seconds).
fn come_back(status: StatusCode, wait: Duration, text: &'static str) -> Response<Body> {
    let mut r = full(status, "text/plain; charset=utf-8", text);
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        r.headers_mut().insert(RETRY_AFTER, v);
    }
    r
}

pub fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_allows_scripts_from_the_dashboard_only_and_no_framing() {
        let mut r = full(StatusCode::OK, "text/plain", "x");
        harden(&mut r);
        let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        assert!(directives.contains(&"frame-ancestors 'none'"), "{csp}");
        assert!(directives.contains(&"script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers()[X_FRAME_OPTIONS], "DENY");
    }
}
