//! A TCP path to a real server whose uplink (client to server) is late:
//! what a client writes reaches the server `latency` later, as receipts do
//! on a congested link or at a broker busy sending a burst, which reads
//! them late. The downlink is immediate.
//!
//! A client that resets its end has what it wrote before still delivered,
//! and then the reset, in that order, as on a real path: the server's own
//! handling of a reset (Mosquitto drops what it had not read yet) is what
//! the test meets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A listening slow path to `127.0.0.1:target`, closed when dropped.
pub struct SlowUplink {
    port: u16,
    task: JoinHandle<()>,
}

enum Up {
    Bytes(Vec<u8>),
    /// The client closed its writing side (FIN).
    Closed,
    /// The client reset the connection.
    Reset,
}

impl SlowUplink {
    /// Listens on a free loopback port; each connection is relayed to
    /// `target` on a connection of its own.
    pub async fn start(target: u16, latency: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut paths = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                paths.spawn(relay(client, target, latency));
            }
        });
        Self { port, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SlowUplink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, target: u16, latency: Duration) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (up, mut due) = mpsc::unbounded_channel();
    // A client that closes with messages unread resets its end: the reset
    // shows on the downlink's next write (a read after its FIN only says
    // end of stream).
    let reset = up.clone();
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = client_write.shutdown().await;
                    return;
                }
                Ok(n) => n,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                let _ = reset.send((Instant::now() + latency, Up::Reset));
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (next, last) = match client_read.read(&mut buf).await {
                Ok(0) => (Up::Closed, true),
                Ok(n) => (Up::Bytes(buf[..n].to_vec()), false),
                Err(_) => (Up::Reset, true),
            };
            if up.send((Instant::now() + latency, next)).is_err() || last {
                return;
            }
        }
    });
    while let Some((at, next)) = due.recv().await {
        tokio::time::sleep_until(at).await;
        match next {
            Up::Bytes(bytes) => {
                if server_write.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            Up::Closed => {
                let _ = server_write.shutdown().await;
            }
            Up::Reset => {
                let _ = server_write.as_ref().set_zero_linger();
                break;
            }
        }
    }
    // Both halves gone: the server's side closes (reset, after a reset).
    down.abort();
}
