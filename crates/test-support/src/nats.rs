use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A cluster of `nats-server` nodes on loopback, each with JetStream (its
/// own store directory) and an MQTT listener: what a clustered cloud
/// broker looks like to the gateway. NATS speaks MQTT 3.1.1 only, and its
/// MQTT sessions, retained messages and QoS 1 deliveries live in JetStream.
pub struct NatsCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

struct Node {
    child: Option<Child>,
    client_port: u16,
    cluster_port: u16,
    mqtt_port: u16,
    ready: Option<mpsc::Receiver<()>>,
}

/// Whether `line` of a node's log says JetStream has a meta leader, which
/// MQTT sessions need before a CONNECT can be accepted.
fn is_ready_line(line: &str) -> bool {
    // Followers log "JetStream cluster new metadata leader: n1/fleet",
    // the leader "Self is new JetStream cluster metadata leader".
    line.contains("JetStream cluster new metadata leader")
        || line.contains("new JetStream cluster metadata leader")
}

impl NatsCluster {
    /// Starts `n` nodes and waits until each of them has a JetStream meta
    /// leader (so MQTT sessions can be created).
    pub fn start(n: usize) -> Self {
        assert!(
            crate::have("nats-server"),
            "nats-server is not installed: apt-get install nats-server"
        );
        let mut c = Self {
            dir: tempfile::tempdir().unwrap(),
            nodes: (0..n)
                .map(|_| Node {
                    child: None,
                    client_port: crate::free_port(),
                    cluster_port: crate::free_port(),
                    mqtt_port: crate::free_port(),
                    ready: None,
                })
                .collect(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The MQTT port of node `i`.
    pub fn mqtt_port(&self, i: usize) -> u16 {
        self.nodes[i].mqtt_port
    }

    /// `mqtt://127.0.0.1:<port>` of node `i`.
    pub fn mqtt_url(&self, i: usize) -> String {
        format!("mqtt://127.0.0.1:{}", self.nodes[i].mqtt_port)
    }

    /// Every node's MQTT URL, as a TOML array.
    pub fn urls_toml(&self) -> String {
        let urls: Vec<String> = (0..self.len())
            .map(|i| format!("\"{}\"", self.mqtt_url(i)))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// The node whose MQTT port is `port`.
    pub fn node_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.mqtt_port == port)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats-route://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &self.nodes[i];
        let store = self.dir.path().join(format!("js{i}"));
        let conf = format!(
            "server_name: n{i}\n\
             listen: 127.0.0.1:{client}\n\
             jetstream {{ store_dir: \"{store}\" }}\n\
             cluster {{ name: fleet, listen: 127.0.0.1:{cluster}, routes: [{routes}] }}\n\
             mqtt {{ listen: 127.0.0.1:{mqtt} }}\n",
            client = node.client_port,
            cluster = node.cluster_port,
            mqtt = node.mqtt_port,
            store = store.display(),
            routes = routes.join(", "),
        );
        let conf_path = self.dir.path().join(format!("n{i}.conf"));
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log_path = self.log_path(i);
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .ok();
            let mut told = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if !told && is_ready_line(&line) {
                    let _ = tx.send(());
                    told = true;
                }
            }
        });
        self.nodes[i].child = Some(child);
        self.nodes[i].ready = Some(rx);
    }

    fn wait_ready(&mut self, i: usize) {
        let Some(rx) = self.nodes[i].ready.take() else {
            return;
        };
        // A leader election under load retries with backoff: 30 s was
        // seen to run out with both cores busy beside the cluster.
        if rx.recv_timeout(Duration::from_secs(90)).is_err() {
            panic!(
                "nats node {i} has no JetStream leader after 90 s:\n{}",
                self.log(i)
            );
        }
    }

    /// SIGKILL node `i`: its clients see the connection reset, with no
    /// goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed node again on its ports and store, and waits until
    /// it has rejoined (sees a JetStream leader).
    pub fn start_again(&mut self, i: usize) {
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Node `i`'s log so far, for assertion messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
