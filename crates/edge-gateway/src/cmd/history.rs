//! `edge-gateway history export` and `edge-gateway passwd`.
//!
//! redb lets one process hold the file: with the gateway stopped, export
//! opens it read-only; while it runs, export asks the gateway's own
//! `/api/series?format=csv` on the dashboard port (credentials from
//! `EDGE_GATEWAY_DASHBOARD_USER` / `EDGE_GATEWAY_DASHBOARD_PASSWORD` when
//! users are configured). Both give the same CSV.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use edge_gateway::dashboard::api::{csv, parse_time};
use edge_gateway::dashboard::history::{History, HistoryError};
use edge_gateway::dashboard::{auth, history_path};
use edge_gateway::settings;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::run;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    command: HistoryCommand,
}

#[derive(Debug, clap::Subcommand)]
enum HistoryCommand {
    /// Write one series of window aggregates as CSV on stdout.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    #[arg(short, long, default_value = "/etc/edge-gateway/gateway.toml")]
    config: PathBuf,
    /// Device id.
    #[arg(long)]
    device: String,
    #[arg(long)]
    metric: String,
    /// `-24h`, `now`, milliseconds since the epoch or RFC 3339.
    #[arg(long, default_value = "-30d", allow_hyphen_values = true)]
    from: String,
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    to: String,
    /// Merge windows into buckets of this length (`1h`); as stored without.
    #[arg(long)]
    step: Option<String>,
}

pub fn main(args: &HistoryArgs) -> ExitCode {
    let HistoryCommand::Export(a) = &args.command;
    match export(a) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(text.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway history export: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn export(a: &ExportArgs) -> anyhow::Result<String> {
    let cfg = settings::load(&a.config)?;
    let now = gateway_core::Timestamp::now().as_millis();
    let from = parse_time(&a.from, now).context("--from: expected now, -24h, ms or RFC 3339")?;
    let to = parse_time(&a.to, now).context("--to: expected now, -24h, ms or RFC 3339")?;
    let step = match &a.step {
        Some(s) => i64::try_from(humantime::parse_duration(s).context("--step")?.as_millis())
            .unwrap_or(i64::MAX),
        None => 0,
    };
    let path = history_path(&cfg.gateway.state_dir);
    match History::open_read_only(&path) {
        Ok(h) => {
            let points = h.series(&a.device, &a.metric, from, to, step)?;
            Ok(csv(&a.device, &a.metric, &points))
        }
        Err(HistoryError::Busy(_)) => {
            if cfg.dashboard.cert_file.is_some() {
                anyhow::bail!("the gateway is running with a TLS dashboard: use its /api/series?format=csv, or stop it to read the file");
            }
            let mut bind = cfg.dashboard.bind;
            if bind.ip().is_unspecified() {
                bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("device", &a.device)
                .append_pair("metric", &a.metric)
                .append_pair("from", &from.to_string())
                .append_pair("to", &to.to_string())
                .append_pair("step", a.step.as_deref().unwrap_or("0s"))
                .append_pair("format", "csv")
                .finish();
            run::runtime()?.block_on(fetch(bind, &format!("/api/series?{query}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn fetch(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| {
            format!("the history is in use and the dashboard at {addr} does not answer")
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
    if let (Ok(user), Ok(pw)) = (
        std::env::var("EDGE_GATEWAY_DASHBOARD_USER"),
        std::env::var("EDGE_GATEWAY_DASHBOARD_PASSWORD"),
    ) {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        req = req.header(hyper::header::AUTHORIZATION, format!("Basic {token}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        anyhow::bail!("dashboard answered {status}: {}", text.trim());
    }
    Ok(text)
}

/// Reads a password (first line of stdin) and prints its argon2id hash.
pub fn passwd() -> ExitCode {
    eprint!("Password: ");
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("edge-gateway passwd: cannot read the password");
        return ExitCode::FAILURE;
    }
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        eprintln!("edge-gateway passwd: empty password");
        return ExitCode::FAILURE;
    }
    match auth::hash(pw) {
        Ok(h) => {
            eprintln!();
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway passwd: {e}");
            ExitCode::FAILURE
        }
    }
}
