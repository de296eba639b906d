//! `edge-gateway bacnet discover`: the devices on the network and their
//! points, through the adapter's own client (`crate::bacnet::discover`).

use std::process::ExitCode;
use std::time::Duration;

use crate::bacnet::config::parse_address;
use crate::bacnet::discover::{discover, Discovery};

/// EX_USAGE from sysexits.h.
const EX_USAGE: u8 = 64;
/// EX_UNAVAILABLE: the socket could not be bound.
const EX_UNAVAILABLE: u8 = 69;

#[derive(clap::Args)]
pub struct BacnetArgs {
    #[command(subcommand)]
    command: BacnetCommand,
}

#[derive(clap::Subcommand)]
enum BacnetCommand {
    /// Send Who-Is and list every device that answers, with its objects
    /// (type, instance, name, units, present value).
    Discover(DiscoverArgs),
}

#[derive(clap::Args)]
struct DiscoverArgs {
    /// The local address to send from (47808 is where devices answer a
    /// broadcast; another port gets unicast answers only).
    #[arg(long, default_value = "0.0.0.0:47808")]
    bind: String,
    /// Where Who-Is goes: a subnet's broadcast address or a device's own
    /// ("host:port"); repeat for several.
    #[arg(long = "to", default_value = "255.255.255.255:47808")]
    to: Vec<String>,
    /// Only device instances from --low to --high.
    #[arg(long, requires = "high")]
    low: Option<u32>,
    #[arg(long, requires = "low")]
    high: Option<u32>,
    /// How long answers are collected.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// How long one answer may take.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Devices only, not their objects.
    #[arg(long)]
    no_objects: bool,
}

pub fn main(args: &BacnetArgs) -> ExitCode {
    let BacnetCommand::Discover(a) = &args.command;
    let parsed = (|| {
        let bind = a
            .bind
            .parse()
            .map_err(|_| format!("--bind: expected address:port, got \"{}\"", a.bind))?;
        let to =
            a.to.iter()
                .map(|t| parse_address(t).map_err(|e| format!("--to: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, String>(Discovery {
            bind,
            to,
            range: a.low.zip(a.high),
            wait: a.wait,
            timeout: a.timeout,
            objects: !a.no_objects,
        })
    })();
    let d = match parsed {
        Ok(d) => d,
        Err(e) => {
            eprintln!("edge-gateway bacnet discover: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let rt = match crate::registry::tool_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-gateway bacnet discover: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(discover(&d)) {
        Ok(report) => {
            gateway_core::out!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway bacnet discover: cannot bind {}: {e}", d.bind);
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}
