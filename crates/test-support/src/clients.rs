//! Real MQTT clients we did not write: `mosquitto_sub` and `mosquitto_pub`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// One message as `mosquitto_sub` printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: String,
    pub retained: bool,
    /// The QoS it was delivered with: the lower of the publisher's and the
    /// subscription's (1 for `Subscriber`), so 0 means published at QoS 0.
    pub qos: u8,
}

impl Message {
    /// The payload as JSON (panics with the payload if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {}",
                self.topic, self.payload
            )
        })
    }
}

/// A running `mosquitto_sub`, subscribed before `start` returns.
pub struct Subscriber {
    child: Child,
    rx: mpsc::UnboundedReceiver<Message>,
}

const MARK: &str = "MSG>>";

impl Subscriber {
    /// Subscribes to `filter` at QoS 1 and waits for the broker's SUBACK.
    pub async fn start(port: u16, filter: &str) -> Self {
        Self::start_with(port, filter, None).await
    }

    /// Like `start`, with a persistent session under `client_id`: a broker
    /// with persistence queues QoS 1 messages for it while it is away.
    pub async fn start_persistent(port: u16, filter: &str, client_id: &str) -> Self {
        Self::start_with(port, filter, Some(client_id)).await
    }

    /// Like `start`, over TLS with a client certificate and a password.
    pub async fn start_tls(
        port: u16,
        filter: &str,
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
        (user, password): (&str, &str),
    ) -> Self {
        let args: Vec<String> = [
            "--cafile",
            &ca.display().to_string(),
            "--cert",
            &cert.display().to_string(),
            "--key",
            &key.display().to_string(),
            "-u",
            user,
            "-P",
            password,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Self::spawn(port, filter, args).await
    }

    async fn start_with(port: u16, filter: &str, session: Option<&str>) -> Self {
        let args = match session {
            Some(id) => vec!["-c".to_string(), "-i".to_string(), id.to_string()],
            None => vec![],
        };
        Self::spawn(port, filter, args).await
    }

    async fn spawn(port: u16, filter: &str, session_args: Vec<String>) -> Self {
        // stdbuf: mosquitto_sub block-buffers a piped stdout, which would
        // hold back both the SUBACK line and the messages.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                "1",
                "-t",
                filter,
                "-d",
            ])
            // Tab-separated with a marker, so debug lines are told apart.
            .args(["-F", &format!("{MARK}\t%r\t%q\t%t\t%p")])
            .args(&session_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mosquitto_sub (apt-get install mosquitto-clients)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix(MARK) {
                    let mut parts = rest.trim_start_matches('\t').splitn(4, '\t');
                    let retained = parts.next() == Some("1");
                    let qos = parts.next().and_then(|q| q.parse().ok()).unwrap_or(0);
                    let topic = parts.next().unwrap_or_default().to_string();
                    let payload = parts.next().unwrap_or_default().to_string();
                    if tx
                        .send(Message {
                            topic,
                            payload,
                            retained,
                            qos,
                        })
                        .is_err()
                    {
                        break;
                    }
                } else if line.contains("received SUBACK") {
                    let _ = subscribed_tx.try_send(());
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
            .await
            .expect("mosquitto_sub got no SUBACK within 10 s");
        Self { child, rx }
    }

    /// The next message, or `None` after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Message> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The first message satisfying `pred`, skipping others, or `None` after `within`.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Message) -> bool,
    ) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if pred(&m) => return Some(m),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Collects messages until `done` says enough, or `within` passes.
    pub async fn collect_until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::new();
        while !done(&got) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => got.push(m),
                _ => break,
            }
        }
        got
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Publishes one message with `mosquitto_pub` and waits for it to finish.
pub async fn publish(port: u16, topic: &str, payload: &str, qos: u8, retain: bool) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        &qos.to_string(),
        "-t",
        topic,
        "-m",
        payload,
    ]);
    if retain {
        cmd.arg("-r");
    }
    cmd.kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(20), cmd.status())
        .await
        .unwrap_or_else(|_| panic!("mosquitto_pub to port {port} did not finish in 20 s"))
        .expect("spawn mosquitto_pub");
    assert!(status.success(), "mosquitto_pub failed for {topic}");
}

/// Publishes every line as one message on `topic` with one `mosquitto_pub -l`.
pub async fn publish_lines(port: u16, topic: &str, lines: &[String], qos: u8) {
    publish_lines_with(port, topic, lines, qos, &[]).await;
}

/// Like `publish_lines`, in a persistent session under `client_id`: what
/// the broker has not acknowledged is resent by the next publisher of that
/// id, as a sensor that keeps its session does.
pub async fn publish_lines_as(port: u16, topic: &str, lines: &[String], qos: u8, client_id: &str) {
    publish_lines_with(port, topic, lines, qos, &["-c", "-i", client_id]).await;
}

async fn publish_lines_with(port: u16, topic: &str, lines: &[String], qos: u8, extra: &[&str]) {
    let mut child = Command::new("mosquitto_pub")
        .args(extra)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            &qos.to_string(),
            "-t",
            topic,
            "-l",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto_pub");
    let mut stdin = child.stdin.take().unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap_or_else(|_| panic!("mosquitto_pub -l to port {port} did not finish in 20 s"))
        .unwrap();
    assert!(status.success(), "mosquitto_pub -l failed for {topic}");
}
