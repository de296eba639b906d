//! Accepting TCP connections the same way in every HTTP endpoint the
//! gateway serves (`/metrics` and `/health`, the dashboard).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Pause after a failed accept: EMFILE and friends fail again at once, so
/// retrying without one would spin a core while the gateway is short of
/// file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The next connection, or `None` once `stop` is cancelled. A failed
/// accept is logged (debug, prefixed with `what`) and retried after a
/// pause.
pub async fn accept_next(
    listener: &TcpListener,
    stop: &CancellationToken,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(connection) => return Some(connection),
                Err(e) => {
                    tracing::debug!(error = %e, "{what}: accept failed.");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_returned_and_a_stop_ends_the_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let client = tokio::spawn(TcpStream::connect(addr));
        let (_, peer) = accept_next(&listener, &stop, "test").await.unwrap();
        assert_eq!(peer, client.await.unwrap().unwrap().local_addr().unwrap());
        stop.cancel();
        assert!(accept_next(&listener, &stop, "test").await.is_none());
    }
}
