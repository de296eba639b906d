//! The dashboard's HTTP/1.1 server: hyper, as `/metrics` uses, with a
//! connection cap, a header timeout, optional TLS (rustls) and Basic auth
//! in front of every path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use gateway_core::config::DashboardConfig;
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Frame, Incoming};
use std::io::Write as _;

use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE,
    VARY, WWW_AUTHENTICATE,
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
use tracing::{debug, error};

use super::{api, pages, AppState};

/// Pages, API calls and open `/events` streams at once; more are closed at
/// accept (each open page holds one `/events` connection).
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The TLS acceptor when `cert_file` and `key_file` are set.
///
/// # Errors
/// Files that cannot be read or hold no certificate or key.
pub fn tls_acceptor(config: &DashboardConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        return Ok(None);
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert)
            .with_context(|| format!("dashboard.cert_file {}", cert.display()))?,
    ))
    .collect::<Result<_, _>>()
    .with_context(|| format!("dashboard.cert_file {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key)
            .with_context(|| format!("dashboard.key_file {}", key.display()))?,
    ))
    .with_context(|| format!("dashboard.key_file {}", key.display()))?
    .with_context(|| format!("dashboard.key_file {}: no private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("dashboard TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("dashboard TLS certificate and key")?;
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// Binds and serves. A port that cannot be bound is logged and the gateway
/// runs on (history is still kept): the pages must not stop the data path.
pub fn serve(bind: SocketAddr, tls: Option<TlsAcceptor>, state: Arc<AppState>) -> Option<Server> {
    let listener = std::net::TcpListener::bind(bind)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std);
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            error!(%bind, error = %e, "Cannot open the dashboard port; running without the pages.");
            return None;
        }
    };
    let addr = listener.local_addr().unwrap_or(bind);
    let stop = CancellationToken::new();
    let is_tls = tls.is_some();
    let task = tokio::spawn(accept_loop(listener, tls, state, stop.clone()));
    Some(Server {
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
    let serve = move |stream, peer: SocketAddr, stop| {
        let state = state.clone();
        let tls = tls.clone();
        async move {
            match tls {
                None => connection(stream, state, stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(s)) => connection(s, state, stop).await,
                        _ => debug!(%peer, "Dashboard: TLS handshake failed."),
                    }
                }
            }
        }
    };
    crate::metrics::accept_bounded(listener, MAX_CONNECTIONS, "Dashboard", stop, serve).await;
}

async fn connection<S>(stream: S, state: Arc<AppState>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stop_events = stop.clone();
    let service = service_fn(move |req| {
        let state = state.clone();
        let stop = stop_events.clone();
        async move { Ok::<_, Infallible>(respond(req, &state, &stop).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = conn => {}
    }
}

async fn respond(
    req: Request<Incoming>,
    state: &Arc<AppState>,
    stop: &CancellationToken,
) -> Response<Body> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if !state.auth.check(header) {
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
        "/events" => api::events(state, stop),
        "/api/devices" => api::devices(state),
        "/api/series" => api::series(state, &query).await,
        "/api/alerts" => api::alerts(state, &query).await,
        "/style.css" => {
            let mut r = full(StatusCode::OK, "text/css", pages::CSS);
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
