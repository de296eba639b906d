//! `edge-gateway config keygen|sign|push`: the fleet side of
//! `[remote_config]` (`docs/fleet.md`). `keygen` makes an Ed25519 signing
//! key; `sign` prints the desired-state message for a TOML file; `push`
//! builds, signs and publishes it, retained, on
//! `{prefix}/gateway/{id}/config`, numbering it one above the serial the
//! gateway reports unless told, and with `--wait` prints the state the
//! gateway reports for it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use gateway_core::config::{BrokerSection, BrokerUrl};
use mqtt_connect::ConnectionSettings;
use remote_config::keys;
use remote_config::report::{config_topic, state_topic};
use remote_config::DesiredMessage;
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
    /// Default: one above the highest serial the gateway reports.
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
        None => {
            next_serial(
                &mut events,
                &state,
                args.timeout.min(Duration::from_secs(5)),
            )
            .await?
        }
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
    let verdict = wait_for_verdict(&mut events, &state, serial, args.timeout).await?;
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

/// One above what the gateway reports (its retained state), 1 when it has
/// reported nothing within `wait`.
async fn next_serial(events: &mut EventLoop, state: &str, wait: Duration) -> anyhow::Result<u64> {
    let mut deadline = Instant::now() + wait;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(e) => e.context("the broker")?,
            Err(_) => return Ok(1),
        };
        match event {
            // The retained state comes right after the SUBACK, if there is
            // one: a moment's grace, not the whole wait.
            Event::Incoming(Packet::SubAck(_)) => {
                deadline = deadline.min(Instant::now() + Duration::from_secs(1));
            }
            Event::Incoming(Packet::Publish(p)) if p.topic == state => {
                return serial_after(&p.payload);
            }
            _ => {}
        }
    }
}

/// Reasons a gateway gives for a message it could not trust: the serial
/// such a state reports is whatever the sender wrote, not a mark.
const UNTRUSTED_REASONS: [&str; 4] = ["signature", "sha256", "gateway", "format"];

/// The serial to push after the gateway's reported `state`: one above
/// its `highest_serial`, the mark only validly signed pushes move. The
/// state's `serial` is that of whatever message the report is about, a
/// forged one included, so taking it would let a forgery with a huge
/// serial make every later push stale.
fn serial_after(state: &[u8]) -> anyhow::Result<u64> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(state) else {
        eprintln!("The gateway's reported state is not JSON: numbering the push 1.");
        return Ok(1);
    };
    let highest = match v["highest_serial"].as_u64() {
        Some(h) => h,
        // Not a state this tool knows: trust only what a refusal of an
        // untrusted message cannot have set.
        None => {
            let trusted = !v["reason"]
                .as_str()
                .is_some_and(|r| UNTRUSTED_REASONS.contains(&r));
            let reported = v["serial"].as_u64().filter(|_| trusted);
            let highest = v["applied_serial"].as_u64().max(reported).unwrap_or(0);
            eprintln!("The gateway's reported state has no highest_serial: numbering the push from {highest}; give --serial if it is refused as stale.");
            highest
        }
    };
    if highest >= u64::MAX - 1 {
        bail!(
            "the gateway has processed serial {highest}: no push can be numbered above it and still be followed by another; to start the numbering again, delete state_dir/remote-config/ on the gateway"
        );
    }
    Ok(highest + 1)
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

/// The first state the gateway reports for `serial` that is a verdict.
async fn wait_for_verdict(
    events: &mut EventLoop,
    state: &str,
    serial: u64,
    wait: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + wait;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(e) => e.context("the broker")?,
            Err(_) => bail!(
                "no verdict from the gateway on serial {serial} within {}",
                humantime::format_duration(wait)
            ),
        };
        if let Event::Incoming(Packet::Publish(p)) = event {
            if p.topic != state {
                continue;
            }
            let text = String::from_utf8_lossy(&p.payload).to_string();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["serial"].as_u64() == Some(serial) && v["status"] != "applying" {
                return Ok(text);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_next_serial_follows_the_mark_not_a_refused_forgery() {
        // A forgery with the highest serial there is, refused as signature.
        let forged = br#"{"desired":"evil","serial":18446744073709551615,"applied":"v1","status":"rejected","reason":"signature","applied_serial":1,"highest_serial":1}"#;
        assert_eq!(serial_after(forged).unwrap(), 2);
        let applied = br#"{"desired":"v4","serial":4,"status":"applied","reason":"","applied_serial":4,"highest_serial":4}"#;
        assert_eq!(serial_after(applied).unwrap(), 5);
        // Without the mark: the refused forgery's serial is not trusted.
        let old = br#"{"desired":"evil","serial":18446744073709551615,"status":"rejected","reason":"signature","applied_serial":3}"#;
        assert_eq!(serial_after(old).unwrap(), 4);
        let old = br#"{"desired":"v6","serial":6,"status":"rejected","reason":"schema","applied_serial":3}"#;
        assert_eq!(serial_after(old).unwrap(), 7);
        assert_eq!(serial_after(b"garbage").unwrap(), 1);
    }

    #[test]
    fn a_serial_no_push_could_follow_is_refused() {
        let err = followable(u64::MAX).unwrap_err().to_string();
        assert!(err.contains("refuse every later push"), "{err}");
        assert_eq!(followable(u64::MAX - 1).unwrap(), u64::MAX - 1);
        let full = format!(
            r#"{{"status":"applied","highest_serial":{}}}"#,
            u64::MAX - 1
        );
        let err = serial_after(full.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("delete state_dir/remote-config/"), "{err}");
    }
}
