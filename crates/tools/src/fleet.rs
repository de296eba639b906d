//! `edge-gateway config keygen|sign|push`: the fleet side of
//! `[remote_config]` (`docs/fleet.md`). `keygen` makes an Ed25519 signing
//! key; `sign` prints the desired-state message for a TOML file; `push`
//! builds, signs and publishes it, retained, on
//! `{prefix}/gateway/{id}/config`, numbering it from the clock (or one
//! above the serial the gateway reports, if higher and plausible) unless
//! told, and with `--wait` prints the state the gateway reports for it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use gateway_core::config::{BrokerSection, BrokerUrl};
use mqtt_connect::ConnectionSettings;
use remote_config::keys;
use remote_config::report::{config_topic, state_topic};
use remote_config::{DesiredMessage, Pushed};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::time::Instant;

/// The signing key file `config push` uses without `--key`.
pub const SIGNING_KEY_ENV: &str = "EDGE_GATEWAY_SIGNING_KEY";

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Make a signing key: writes it to --key (mode 600) and prints the
    /// public key for `[remote_config] public_keys`.
    Keygen {
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the signed desired-state message for CONFIG (JSON, to publish
    /// retained on {prefix}/gateway/{id}/config).
    Sign {
        /// The signing key (`config keygen`'s file, or a PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        serial: u64,
        #[arg(long)]
        version: String,
        /// The one gateway (`[gateway] id`) the push is for, signed with
        /// it: another gateway refuses it. Without it, any gateway that
        /// trusts the key takes it (one message for a whole fleet).
        #[arg(long)]
        gateway: Option<String>,
        config: PathBuf,
    },
    /// Build, sign and publish CONFIG for one gateway.
    Push(PushArgs),
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The cloud broker, mqtt://host[:port] or mqtts://host[:port].
    #[arg(long)]
    pub url: String,
    /// The gateway's id (`[gateway] id`).
    #[arg(long)]
    pub gateway: String,
    #[arg(long)]
    pub version: String,
    /// Default: this machine's clock in milliseconds since the epoch, or
    /// one above the highest serial the gateway reports if that is higher
    /// (refused when the report is more than a day ahead of the clock).
    #[arg(long)]
    pub serial: Option<u64>,
    /// The signing key (default: the file EDGE_GATEWAY_SIGNING_KEY names);
    /// without one the push is unsigned, which only a gateway without
    /// `public_keys` takes.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The gateway's topic prefix, as its `[upstream] topic_prefix` resolves.
    #[arg(long, default_value = "building/hq")]
    pub prefix: String,
    #[arg(long, default_value = "")]
    pub username: String,
    /// The environment variable holding the broker password.
    #[arg(long, default_value = "")]
    pub password_env: String,
    /// PEM CA file for mqtts (default: the system's roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Sign without naming the gateway: any gateway trusting the key then
    /// takes the message, and one whose version predates `gateway` in
    /// the message (which it refuses as `signature`) too.
    #[arg(long)]
    pub any_gateway: bool,
    /// Wait for the gateway's verdict on this push and print its state;
    /// exit 0 only if it was applied.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (and how long the reported serial is looked
    /// for without --serial).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    pub config: PathBuf,
}

pub fn main(args: &ConfigArgs) -> ExitCode {
    let done = match &args.command {
        ConfigCommand::Keygen { key } => keygen(key),
        ConfigCommand::Sign {
            key,
            serial,
            version,
            gateway,
            config,
        } => sign(key, *serial, version, gateway.as_deref(), config),
        ConfigCommand::Push(push_args) => {
            crate::runtime().and_then(|rt| rt.block_on(push(push_args)))
        }
    };
    match done {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edge-gateway config: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(path: &Path) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = keys::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (an existing key is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(keys::key_file_text(&key).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    let public = remote_config::message::public_key_text(&key.verifying_key());
    eprintln!(
        "Signing key written to {}; keep it secret. For the gateways' gateway.toml:",
        path.display()
    );
    gateway_core::outln!("public_keys = [\"{public}\"]");
    Ok(ExitCode::SUCCESS)
}

fn read_key(path: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    keys::parse_signing_key(&text).with_context(|| path.display().to_string())
}

fn read_config(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // The gateway refuses a layer that is not TOML; say so before pushing,
    // by position only: toml's own message quotes the line, and a key
    // file given by mistake had its secret printed.
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        let at = gateway_core::config::syntax::describe(&text, &e);
        anyhow::bail!("{} is not TOML: {}", path.display(), at.message);
    }
    Ok(text)
}

fn sign(
    key: &Path,
    serial: u64,
    version: &str,
    gateway: Option<&str>,
    config: &Path,
) -> anyhow::Result<ExitCode> {
    followable(serial)?;
    if let Some(gateway) = gateway {
        gateway_id("--gateway", gateway)?;
    }
    let key = read_key(key)?;
    let text = read_config(config)?;
    gateway_core::outln!(
        "{}",
        DesiredMessage::signed(&key, serial, version, &text, gateway).to_json()
    );
    Ok(ExitCode::SUCCESS)
}

/// `[gateway] id`'s rule: one MQTT topic level. A wildcard or a `/` would
/// make the push's topic one no gateway reads (or the broker refuses).
fn gateway_id(flag: &str, id: &str) -> anyhow::Result<()> {
    gateway_core::DeviceId::new(id).map_err(|e| {
        anyhow::anyhow!(
            "{flag} {id:?}: {}, as in [gateway] id",
            e.to_string().replace("device id", "gateway id")
        )
    })?;
    Ok(())
}

/// `[upstream] topic_prefix`'s rule: levels without wildcards.
fn topic_prefix(prefix: &str) -> anyhow::Result<()> {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.contains("//")
        || prefix.contains(['+', '#'])
        || prefix.chars().any(char::is_control)
    {
        bail!("--prefix {prefix:?}: expected topic levels like building/hq, without + or # or an empty level");
    }
    Ok(())
}

async fn push(args: &PushArgs) -> anyhow::Result<ExitCode> {
    gateway_id("--gateway", &args.gateway)?;
    topic_prefix(&args.prefix)?;
    let text = read_config(&args.config)?;
    let key_file = args
        .key
        .clone()
        .or_else(|| std::env::var_os(SIGNING_KEY_ENV).map(PathBuf::from));
    let key = key_file.as_deref().map(read_key).transpose()?;
    if key.is_none() {
        eprintln!("No --key (nor {SIGNING_KEY_ENV}): the push is unsigned; a gateway with public_keys refuses it.");
    }
    let url = BrokerUrl::parse(&args.url).map_err(|e| anyhow::anyhow!("--url: {e}"))?;
    let mut broker = BrokerSection::from_url(url);
    broker.username.clone_from(&args.username);
    broker.password_env.clone_from(&args.password_env);
    broker.ca_file.clone_from(&args.ca_file);
    let settings = ConnectionSettings::new(
        &broker,
        format!("edge-gateway-config-push-{}", std::process::id()),
    );
    let options = settings.mqtt_options(None).context("--url")?;
    let (client, mut events) = AsyncClient::new(options, 16);
    let state = state_topic(&args.prefix, &args.gateway);
    client.subscribe(&state, QoS::AtLeastOnce).await?;
    let serial = match args.serial {
        Some(s) => followable(s)?,
        None => followable(
            next_serial(
                &mut events,
                &state,
                args.timeout.min(Duration::from_secs(5)),
            )
            .await?,
        )?,
    };
    // Signed for this gateway alone: copied onto another's topic by
    // whoever may publish there, it is refused.
    let gateway = (!args.any_gateway).then_some(args.gateway.as_str());
    let message = match &key {
        Some(k) => DesiredMessage::signed(k, serial, &args.version, &text, gateway),
        None => DesiredMessage {
            version: args.version.clone(),
            serial,
            sha256: remote_config::message::sha256_hex(&text),
            config: text.clone(),
            gateway: gateway.map(str::to_string),
            signature: None,
        },
    };
    let topic = config_topic(&args.prefix, &args.gateway);
    client
        .publish(&topic, QoS::AtLeastOnce, true, message.to_json())
        .await?;
    wait_for_puback(&mut events, args.timeout).await?;
    eprintln!(
        "Published {} (serial {serial}) on {topic}, retained.",
        args.version
    );
    if !args.wait {
        let _ = client.disconnect().await;
        return Ok(ExitCode::SUCCESS);
    }
    let pushed = Pushed::of(&message);
    let verdict = wait_for_verdict(&mut events, &state, &pushed, args.timeout).await?;
    gateway_core::outln!("{verdict}");
    let _ = client.disconnect().await;
    let applied =
        serde_json::from_str::<serde_json::Value>(&verdict).is_ok_and(|v| v["status"] == "applied");
    Ok(if applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How far ahead of this machine's clock, in milliseconds, a reported
/// mark may be and still number the next push: a day, far more than the
/// clocks of an operator's machine and a gateway drift apart, and far less
/// than the 2^64 a forged report would push the numbering towards.
pub const MAX_MARK_AHEAD_MS: u64 = 24 * 60 * 60 * 1000;

/// Why `config push` will not number a push from the gateway's report.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("the gateway's reported {field} is {value}, not a plain unsigned integer: refusing to number the push from it (a damaged or forged report); check the gateway and pass --serial explicitly")]
    NotAnInteger { field: &'static str, value: String },
    #[error("the gateway reports highest_serial {highest}, more than a day ahead of this machine's clock ({now} milliseconds since the epoch): refusing to number the push from it, since signing near the top of the range would leave no serial for any later push. The report is not authenticated: a forged one, or a mark set by hand. Check the gateway's own state (its /health, or state_dir/remote-config/ on it) and, if it really has processed that serial, pass --serial explicitly")]
    FarAhead { highest: u64, now: u64 },
}

/// Milliseconds since the epoch on this machine (0 before it).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The serial of a push when the gateway has reported nothing within
/// `wait`, else from its retained state ([`serial_after`]).
async fn next_serial(events: &mut EventLoop, state: &str, wait: Duration) -> anyhow::Result<u64> {
    let mut deadline = Instant::now() + wait;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(e) => e.context("the broker")?,
            Err(_) => return Ok(serial_after(None, now_ms())?),
        };
        match event {
            // The retained state comes right after the SUBACK, if there is
            // one: a moment's grace, not the whole wait.
            Event::Incoming(Packet::SubAck(_)) => {
                deadline = deadline.min(Instant::now() + Duration::from_secs(1));
            }
            Event::Incoming(Packet::Publish(p)) if p.topic == state => {
                return Ok(serial_after(Some(&p.payload), now_ms())?);
            }
            _ => {}
        }
    }
}

/// Reasons a gateway gives for a message it could not trust: the serial
/// such a state reports is whatever the sender wrote, not a mark.
const UNTRUSTED_REASONS: [&str; 4] = ["signature", "sha256", "gateway", "format"];

/// `field` of a report: absent is `None` (and null, when `nullable`: a
/// state about no push has no serial); anything but a plain unsigned
/// integer is refused.
fn reported_u64(
    v: &serde_json::Value,
    field: &'static str,
    nullable: bool,
) -> Result<Option<u64>, SerialError> {
    match v.get(field) {
        None => Ok(None),
        Some(serde_json::Value::Null) if nullable => Ok(None),
        Some(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| SerialError::NotAnInteger {
                field,
                value: bounded(&n.to_string()),
            }),
    }
}

/// A reported value as an error repeats it: whoever forged it chose its
/// length.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The serial to push after the gateway's reported `state` (none: it has
/// reported nothing), at `now` (milliseconds since the epoch): `now`, or
/// one above the reported `highest_serial` when that is higher.
///
/// The report is not authenticated: whoever may publish on its topic
/// writes it. Numbering from the clock keeps a forged low mark from
/// making the push stale (a real mark, set by earlier pushes numbered the
/// same way, is below the clock), and a mark more than
/// [`MAX_MARK_AHEAD_MS`] ahead of the clock is refused rather than
/// followed towards 2^64, where no push could follow. Only
/// `highest_serial` counts: the state's `serial` is that of whatever
/// message the report is about, a forged one included.
///
/// # Errors
/// A reported serial that is not a plain unsigned integer, or one
/// implausibly far ahead of `now`.
pub fn serial_after(state: Option<&[u8]>, now: u64) -> Result<u64, SerialError> {
    let highest = match state.map(serde_json::from_slice::<serde_json::Value>) {
        None => 0,
        Some(Err(_)) => {
            eprintln!("The gateway's reported state is not JSON: numbering the push from this machine's clock.");
            0
        }
        Some(Ok(v)) => match reported_u64(&v, "highest_serial", false)? {
            Some(h) => h,
            // Not a state this tool knows: trust only what a refusal of an
            // untrusted message cannot have set.
            None => {
                let trusted = !v["reason"]
                    .as_str()
                    .is_some_and(|r| UNTRUSTED_REASONS.contains(&r));
                let reported = reported_u64(&v, "serial", true)?.filter(|_| trusted);
                let highest = reported_u64(&v, "applied_serial", true)?
                    .max(reported)
                    .unwrap_or(0);
                eprintln!("The gateway's reported state has no highest_serial: numbering the push from {highest} or this machine's clock; give --serial if it is refused as stale.");
                highest
            }
        },
    };
    if highest > now.saturating_add(MAX_MARK_AHEAD_MS) {
        return Err(SerialError::FarAhead { highest, now });
    }
    // Below the bound above, `highest + 1` cannot overflow.
    Ok(now.max(highest.saturating_add(1)))
}

/// A serial a later push can still exceed: the highest one would leave the
/// gateway refusing every push after it as stale.
fn followable(serial: u64) -> anyhow::Result<u64> {
    if serial == u64::MAX {
        bail!("serial {serial} is the highest there is: the gateway would refuse every later push as stale; use a smaller one");
    }
    Ok(serial)
}

async fn wait_for_puback(events: &mut EventLoop, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let event = tokio::time::timeout_at(deadline, events.poll())
            .await
            .map_err(|_| anyhow::anyhow!("the broker did not acknowledge the push"))?
            .context("the broker")?;
        if matches!(event, Event::Incoming(Packet::PubAck(_))) {
            return Ok(());
        }
    }
}

/// The first state the gateway reports for `pushed` that is a verdict.
async fn wait_for_verdict(
    events: &mut EventLoop,
    state: &str,
    pushed: &Pushed,
    wait: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + wait;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(e) => e.context("the broker")?,
            Err(_) => bail!(
                "no verdict from the gateway on serial {} within {}",
                pushed.serial,
                humantime::format_duration(wait)
            ),
        };
        if let Event::Incoming(Packet::Publish(p)) = event {
            if p.topic != state {
                continue;
            }
            let text = String::from_utf8_lossy(&p.payload).to_string();
            if is_verdict_on(&text, pushed) {
                return Ok(text);
            }
        }
    }
}

/// A reported state that judges exactly this push: its serial and its
/// SHA-256, not merely its serial. A state about another message with the
/// same serial (a forgery refused as `signature`, a blind forgery of the
/// report) does not pass for the verdict on this one. Whoever can read the
/// pushed message and publish on the state topic can still copy both: the
/// report is not signed (`docs/fleet.md`, Trust model).
fn is_verdict_on(state: &str, pushed: &Pushed) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(state) else {
        return false;
    };
    v["serial"].as_u64() == Some(pushed.serial)
        && v["sha256"].as_str() == Some(pushed.sha256.as_str())
        && v["status"].as_str().is_some_and(|s| s != "applying")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Late November 2026, in milliseconds since the epoch.
    const NOW: u64 = 1_796_000_000_000;

    #[test]
    fn the_next_serial_follows_the_mark_not_a_refused_forgery() {
        let after = |state: &[u8]| serial_after(Some(state), 0).unwrap();
        // A forgery with the highest serial there is, refused as signature.
        let forged = br#"{"desired":"evil","serial":18446744073709551615,"applied":"v1","status":"rejected","reason":"signature","applied_serial":1,"highest_serial":1}"#;
        assert_eq!(after(forged), 2);
        let applied = br#"{"desired":"v4","serial":4,"status":"applied","reason":"","applied_serial":4,"highest_serial":4}"#;
        assert_eq!(after(applied), 5);
        // Without the mark: the refused forgery's serial is not trusted.
        let old = br#"{"desired":"evil","serial":18446744073709551615,"status":"rejected","reason":"signature","applied_serial":3}"#;
        assert_eq!(after(old), 4);
        let old = br#"{"desired":"v6","serial":6,"status":"rejected","reason":"schema","applied_serial":3}"#;
        assert_eq!(after(old), 7);
        assert_eq!(after(b"garbage"), 1);
        assert_eq!(serial_after(None, 0).unwrap(), 1);
    }

    /// The numbering comes from the clock: a forged report with a low
    /// mark cannot make the push stale, and a real mark ahead of the
    /// clock (within a day) is still followed.
    #[test]
    fn a_push_is_numbered_from_the_clock_unless_the_mark_is_ahead() {
        let state = |h: u64| format!(r#"{{"status":"applied","highest_serial":{h}}}"#);
        assert_eq!(serial_after(None, NOW).unwrap(), NOW);
        assert_eq!(serial_after(Some(state(0).as_bytes()), NOW).unwrap(), NOW);
        assert_eq!(serial_after(Some(state(7).as_bytes()), NOW).unwrap(), NOW);
        assert_eq!(
            serial_after(Some(state(NOW).as_bytes()), NOW).unwrap(),
            NOW + 1
        );
        let ahead = NOW + MAX_MARK_AHEAD_MS;
        assert_eq!(
            serial_after(Some(state(ahead).as_bytes()), NOW).unwrap(),
            ahead + 1
        );
    }

    /// Whoever may publish on the report topic forges a mark near 2^64:
    /// followed, one push there would leave the fleet unable to push.
    #[test]
    fn a_forged_mark_far_ahead_of_the_clock_is_refused_with_a_way_out() {
        for highest in [
            18_446_744_073_709_551_000,
            NOW + MAX_MARK_AHEAD_MS + 1,
            u64::MAX,
        ] {
            let state = format!(r#"{{"status":"applied","highest_serial":{highest}}}"#);
            let err = serial_after(Some(state.as_bytes()), NOW).unwrap_err();
            assert!(matches!(err, SerialError::FarAhead { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains("more than a day ahead"), "{text}");
            assert!(text.contains("pass --serial explicitly"), "{text}");
        }
    }

    #[test]
    fn a_reported_serial_that_is_not_a_plain_unsigned_integer_is_refused() {
        for value in [
            r#""12""#,
            "-1",
            "1.5",
            "1e3",
            "18446744073709551616",
            "null",
            "[1]",
            &format!("\"{}\"", "9".repeat(10_000)),
        ] {
            let state = format!(r#"{{"status":"applied","highest_serial":{value}}}"#);
            let err = serial_after(Some(state.as_bytes()), NOW).unwrap_err();
            assert!(
                matches!(err, SerialError::NotAnInteger { .. }),
                "{value}: {err}"
            );
            assert!(err.to_string().len() < 400, "the forged value is cut");
        }
        let legacy = br#"{"status":"applied","applied_serial":"3"}"#;
        assert!(serial_after(Some(legacy), NOW).is_err());
        // A legacy state's nulls are absent values, not forgeries.
        let legacy = br#"{"status":"rejected","serial":null,"applied_serial":null}"#;
        assert_eq!(serial_after(Some(legacy), NOW).unwrap(), NOW);
    }

    #[test]
    fn only_a_state_naming_this_pushs_serial_and_digest_is_its_verdict() {
        let pushed = Pushed {
            version: "v9".into(),
            serial: NOW,
            sha256: "ab".repeat(32),
        };
        let state = |serial: u64, sha: &str, status: &str| {
            format!(r#"{{"serial":{serial},"sha256":"{sha}","status":"{status}"}}"#)
        };
        let sha = pushed.sha256.clone();
        assert!(is_verdict_on(&state(NOW, &sha, "applied"), &pushed));
        assert!(is_verdict_on(&state(NOW, &sha, "rejected"), &pushed));
        assert!(!is_verdict_on(&state(NOW, &sha, "applying"), &pushed));
        assert!(!is_verdict_on(
            &state(NOW, &"cd".repeat(32), "applied"),
            &pushed
        ));
        assert!(!is_verdict_on(&state(NOW - 1, &sha, "applied"), &pushed));
        assert!(!is_verdict_on(
            r#"{"serial":1,"status":"applied"}"#,
            &pushed
        ));
        assert!(!is_verdict_on("garbage", &pushed));
    }

    #[test]
    fn a_serial_no_push_could_follow_is_refused() {
        let err = followable(u64::MAX).unwrap_err().to_string();
        assert!(err.contains("refuse every later push"), "{err}");
        assert_eq!(followable(u64::MAX - 1).unwrap(), u64::MAX - 1);
    }
}
