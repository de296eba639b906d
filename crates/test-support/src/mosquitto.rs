use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A Mosquitto broker on `127.0.0.1:<port>` with a generated config.
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: Options,
}

/// How the broker is set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep sessions and retained messages across restarts.
    pub persistence: bool,
    /// TLS listener: (CA, server certificate, server key) files.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Also demand a client certificate signed by the CA.
    pub require_client_certificate: bool,
    /// Only this user, with this password.
    pub user: Option<(String, String)>,
    /// Mosquitto's own default in-flight window (20) instead of the 1000
    /// the tests use elsewhere, as a broker set up by the book has.
    pub default_inflight: bool,
    /// Another in-flight window (0: no limit, as `max_inflight_messages 0`
    /// sets it): a broker that sends more than a client reads ahead.
    pub max_inflight: Option<u32>,
}

impl Mosquitto {
    /// Starts a broker on a free port and waits until it listens.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a broker that keeps sessions and retained messages across restarts.
    pub fn start_persistent() -> Self {
        Self::start_with(Options {
            persistence: true,
            ..Options::default()
        })
    }

    pub fn start_with(options: Options) -> Self {
        assert!(
            crate::have("mosquitto"),
            "mosquitto is not installed: apt-get install mosquitto mosquitto-clients"
        );
        // A port picked free can be taken before mosquitto binds it: retry.
        for _ in 0..5 {
            let mut m = Self {
                child: None,
                port: crate::free_port(),
                dir: tempfile::tempdir().unwrap(),
                options: options.clone(),
            };
            if m.spawn() {
                return m;
            }
        }
        panic!("mosquitto did not start");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// Writes the config and starts the process; true once it listens.
    fn spawn(&mut self) -> bool {
        let mut extra = String::new();
        if let Some((ca, cert, key)) = &self.options.tls {
            extra += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                ca.display(),
                cert.display(),
                key.display(),
                self.options.require_client_certificate
            );
        }
        let anonymous = match &self.options.user {
            Some((user, password)) => {
                let file = self.dir.path().join("passwords");
                std::fs::write(&file, "").unwrap();
                let ok = Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg(&file)
                    .args([user, password])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "mosquitto_passwd failed");
                extra += &format!("password_file {}\n", file.display());
                false
            }
            None => true,
        };
        let conf = format!(
            "per_listener_settings false\n\
             listener {port} 127.0.0.1\n\
             {extra}\
             allow_anonymous {anonymous}\n\
             user root\n\
             persistence {persistence}\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 1000000\n\
             max_inflight_messages {inflight}\n\
             log_dest stderr\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            port = self.port,
            persistence = self.options.persistence,
            inflight = if self.options.default_inflight {
                20
            } else {
                self.options.max_inflight.unwrap_or(1000)
            },
            dir = self.dir.path().display(),
        );
        std::fs::write(self.config_path(), conf).unwrap();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log_path = self.dir.path().join("mosquitto.log");
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).ok();
            let mut told = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if !told && line.contains(" running") {
                    let _ = tx.send(true);
                    told = true;
                }
                if line.contains("Error") && line.contains("ddress already in use") {
                    let _ = tx.send(false);
                }
            }
            let _ = tx.send(false);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(true) => {
                self.child = Some(child);
                true
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
        }
    }

    /// Kills the broker (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker with SIGTERM: it saves its persistence file and
    /// disconnects clients (whose Last Wills it does not publish).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            // Bounded: a broker that has not exited 10 s after SIGTERM is killed.
            let pid = c.id().to_string();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = c.wait();
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_secs(10)).is_err() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
        }
    }

    /// Freezes the broker (SIGSTOP): its sockets stay open and nothing
    /// answers, as a wedged broker or a path that drops every packet.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen broker run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        if let Some(c) = &self.child {
            let sent = Command::new("kill")
                .args([&format!("-{name}"), &c.id().to_string()])
                .status();
            assert!(sent.is_ok_and(|s| s.success()), "kill -{name} mosquitto");
        }
    }

    /// Stops it gracefully and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts a stopped (or killed) broker again on its port, with its
    /// persistence file: an outage of a chosen length.
    pub fn start_again(&mut self) {
        for _ in 0..5 {
            if self.spawn() {
                return;
            }
        }
        panic!("mosquitto did not restart on port {}", self.port);
    }

    /// The broker's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
