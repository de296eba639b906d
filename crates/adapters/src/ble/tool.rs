//! `edge-gateway ble record`: advertisements from the real radio, written
//! as the capture format `source = "replay"` plays and `decode --ble-line`
//! reads (one JSON object per line, `Advertisement::to_line`), so a user
//! can attach what their sensors send to a bug report and anyone can
//! replay it without the hardware.
//!
//! The radio is the adapter's own (`BluezRadio`: btleplug over BlueZ), not
//! under the watchdog: a recording is minutes long, and a radio that cannot
//! be reached should fail at once with the fix, not retry.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::ble::radio::BluezRadio;
use crate::ble::watchdog::{Radio, RadioEvent};
use gateway_core::clock::SystemClock;

/// EX_UNAVAILABLE from sysexits.h: no bluetoothd, no adapter, no D-Bus.
const EX_UNAVAILABLE: u8 = 69;

#[derive(clap::Args)]
pub struct BleArgs {
    #[command(subcommand)]
    command: BleCommand,
}

#[derive(clap::Subcommand)]
enum BleCommand {
    /// Record advertisements from the radio as a capture (JSON lines on
    /// stdout) for `source = "replay"` and `decode --ble-line`.
    Record {
        /// How long to record (`60s`, `5m`); Ctrl-C stops earlier.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// The BlueZ adapter (`hci0`); the first one by default.
        #[arg(long)]
        adapter: Option<String>,
    },
}

/// Why a recording stopped short.
enum Failure {
    /// The radio could not be reached: the message names the fix.
    Radio(String),
    Other(String),
}

/// Runs the subcommand: the capture on stdout, a summary or the error on stderr.
pub fn main(args: &BleArgs) -> ExitCode {
    let BleCommand::Record { duration, adapter } = &args.command;
    let result = crate::registry::tool_runtime()
        .map_err(Failure::Other)
        .and_then(|rt| rt.block_on(record(*duration, adapter.clone())));
    match result {
        Ok(summary) => {
            eprintln!("edge-gateway ble record: {summary}");
            ExitCode::SUCCESS
        }
        Err(Failure::Radio(message)) => {
            eprintln!("edge-gateway ble record: cannot scan: {message}");
            ExitCode::from(EX_UNAVAILABLE)
        }
        Err(Failure::Other(e)) => {
            eprintln!("edge-gateway ble record: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn record(duration: Duration, adapter: Option<String>) -> Result<String, Failure> {
    let mut radio = BluezRadio::new(adapter, Arc::new(SystemClock));
    let mut events = radio.start().await.map_err(|e| Failure::Radio(e.message))?;
    // Also the line a test (or a user) waits for before making noise.
    eprintln!(
        "edge-gateway ble record: scanning for {}",
        humantime::format_duration(duration)
    );
    let started = tokio::time::Instant::now();
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut written = 0u64;
    let mut devices = HashSet::new();
    let ended =
        loop {
            let event = tokio::select! {
                () = &mut deadline => break None,
                _ = tokio::signal::ctrl_c() => break None,
                event = events.recv() => event,
            };
            match event {
                Some(RadioEvent::Advert(adv)) => {
                    // One line per write, flushed, so a capture cut short by
                    // Ctrl-C or a full disk still ends on a whole line.
                    writeln!(out, "{}", adv.to_line())
                        .and_then(|()| out.flush())
                        .map_err(|e| {
                            Failure::Other(format!("writing the capture to stdout: {e}"))
                        })?;
                    written += 1;
                    devices.insert(adv.mac);
                }
                Some(RadioEvent::Activity) => {}
                None => break Some(
                    "the BlueZ event stream ended (bluetoothd stopped or the adapter went away)",
                ),
            }
        };
    radio.stop().await;
    let summary = format!(
        "{written} advertisements from {} devices in {}",
        devices.len(),
        humantime::format_duration(Duration::from_millis(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
        ))
    );
    match ended {
        Some(why) => Err(Failure::Radio(format!("{why}; {summary} before that"))),
        None => Ok(summary),
    }
}
