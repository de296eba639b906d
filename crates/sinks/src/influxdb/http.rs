//! A minimal HTTP/1.1 client over hyper's connection API (hyper is already
//! in the tree for `/metrics`): one kept-alive connection, plain or TLS
//! (rustls, as for MQTT), reopened when it breaks, each request bounded by
//! a timeout. One request at a time: the writer keeps one client per
//! request in flight.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// The most of an answer's body read: InfluxDB's error messages are far
/// shorter.
const MAX_ANSWER: usize = 64 * 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed: an unknown CA, a certificate for another
    /// name, an expired one, or a server that does not speak TLS.
    #[error("TLS with {authority}: {source}")]
    Tls {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Protocol(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// TLS for an `https://` server: the rustls config and the name its
/// certificate must carry.
#[derive(Clone)]
pub struct Tls {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl Tls {
    pub fn new(
        config: tokio_rustls::rustls::ClientConfig,
        server_name: ServerName<'static>,
    ) -> Self {
        Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        }
    }
}

pub struct Client {
    authority: String,
    timeout: Duration,
    tls: Option<Tls>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(authority: String, timeout: Duration, tls: Option<Tls>) -> Self {
        Self {
            authority,
            timeout,
            tls,
            conn: None,
        }
    }

    /// Sends one request and reads the whole answer.
    ///
    /// # Errors
    /// No connection, a broken one, or no answer in time; the connection
    /// is dropped and the next request opens a new one.
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Response, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(
            timeout,
            self.exchange(method, path_and_query, headers, body),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(HttpError::Timeout(timeout))
            }
        }
    }

    async fn exchange(
        &mut self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Response, HttpError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, &self.authority);
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        let request = builder.body(Full::new(body))?;
        let conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().await?,
        };
        let mut conn = conn;
        conn.ready().await?;
        let response = conn.send_request(request).await?;
        let (parts, mut body) = response.into_parts();
        // Only InfluxDB's message is wanted from the body: a proxy's page
        // or a body that never ends was read whole, into memory, until
        // the timeout, and the status was lost with it.
        let mut read = Vec::new();
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                let room = MAX_ANSWER.saturating_sub(read.len());
                read.extend_from_slice(&data[..data.len().min(room)]);
                if data.len() > room {
                    whole = false;
                    break;
                }
            }
        }
        let body = Bytes::from(read);
        // The rest of a cut answer is still on the wire: the connection
        // goes with it.
        if whole {
            self.conn = Some(conn);
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| HttpError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => handshake(stream).await,
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .map_err(|source| HttpError::Tls {
                        authority: self.authority.clone(),
                        source,
                    })?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection's I/O runs beside the requests; it ends when the
    // sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
