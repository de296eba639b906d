//! `edge-gateway`: parse the command line, load the config, run. The
//! tool subcommands (everything but `run`, `validate` and `configfile`)
//! are the `edge_gateway_tools` crate's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

use cmd::{run, validate};
#[cfg(feature = "demo")]
use edge_gateway_tools::demo;
use edge_gateway_tools::{fleet, history, replay, simulate, ProtocolTool};

#[derive(Parser)]
#[command(
    name = "edge-gateway",
    version,
    about = "Edge gateway for smart buildings: sensors in, window statistics and alerts out to a cloud MQTT broker."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "/etc/edge-gateway/gateway.toml")]
        config: PathBuf,
    },
    /// Check a config file with its conf.d/ drop-ins and EDGE_GATEWAY__
    /// variables: one line per problem, exit 78 if any.
    Validate {
        #[arg(short, long, default_value = "/etc/edge-gateway/gateway.toml")]
        config: PathBuf,
        /// Print the merged configuration as TOML, secrets redacted.
        #[arg(long)]
        print: bool,
    },
    /// Print a commented template of every key with its default.
    Configfile,
    // The protocols' tools (decode, ble record, modbus scan, …), each
    // with its protocol's feature, listed in edge_gateway_tools.
    #[command(flatten)]
    Protocol(ProtocolTool),
    /// Run the config's alert rules over a CSV of past readings (event
    /// time): alerts as JSON lines on stdout, a summary on stderr.
    Replay(replay::ReplayArgs),
    /// Play a fleet of sensors against a running gateway (MQTT, CoAP or LoRaWAN).
    Simulate(simulate::SimulateArgs),
    /// The dashboard's history: `history export` writes a series as CSV.
    History(history::HistoryArgs),
    /// Configurations pushed from the cloud ([remote_config]): `config
    /// keygen` makes a signing key, `config sign` prints a signed message,
    /// `config push` publishes one to a gateway.
    Config(fleet::ConfigArgs),
    /// Read a password on stdin and print its argon2id hash for
    /// `[[dashboard.user]] password_hash`.
    Passwd,
    /// Run a self-contained demo: embedded broker, simulated building, live output.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Protocol(tool) => tool.run(),
        Command::Replay(args) => replay::run(&args),
        Command::Simulate(args) => simulate::main(args),
        Command::Configfile => validate::configfile(),
        Command::Validate { config, print } => validate::main(&config, print),
        Command::Run { config } => run::main(&config),
        Command::History(args) => history::main(&args),
        Command::Passwd => history::passwd(),
        Command::Config(args) => fleet::main(&args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::main(&args, run::demo_gateway),
    }
}
