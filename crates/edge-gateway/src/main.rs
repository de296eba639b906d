//! `edge-gateway`: parse the command line, load the config, run. The
//! tool subcommands (everything but `run`, `validate` and `configfile`)
//! are the `edge_gateway_tools` crate's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

use cmd::{run, validate};
#[cfg(feature = "bacnet")]
use edge_gateway_tools::bacnet;
#[cfg(feature = "ble")]
use edge_gateway_tools::ble;
#[cfg(any(feature = "lorawan", feature = "ble"))]
use edge_gateway_tools::decode;
#[cfg(feature = "demo")]
use edge_gateway_tools::demo;
#[cfg(feature = "knx")]
use edge_gateway_tools::knx;
#[cfg(feature = "modbus")]
use edge_gateway_tools::modbus;
#[cfg(feature = "lorawan")]
use edge_gateway_tools::script;
use edge_gateway_tools::{fleet, history, replay, simulate};

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
    /// Decode a LoRaWAN payload with a codec, verify and decrypt a
    /// PHYPayload, or decode a BLE advertisement (--ble, --ble-line).
    #[cfg(any(feature = "lorawan", feature = "ble"))]
    Decode(decode::DecodeArgs),
    /// Encode a downlink with a vendor's JavaScript codec (encodeDownlink):
    /// prints {"fPort":…,"bytes":[…]}.
    #[cfg(feature = "lorawan")]
    Encode(script::EncodeArgs),
    /// JavaScript codec tools: `codec test PATH` runs ChirpStack's test
    /// vectors beside each codec.
    #[cfg(feature = "lorawan")]
    Codec(script::CodecArgs),
    /// Bluetooth LE tools: `ble record` writes the radio's advertisements
    /// as a capture for `source = "replay"`.
    #[cfg(feature = "ble")]
    Ble(ble::BleArgs),
    /// Modbus tools: `modbus scan` reads a range of a device's registers
    /// and prints each in every type and byte/word order.
    #[cfg(feature = "modbus")]
    Modbus(modbus::ModbusArgs),
    /// BACnet tools: `bacnet discover` lists the devices answering Who-Is
    /// and their objects (name, type, instance, units, present value).
    #[cfg(feature = "bacnet")]
    Bacnet(bacnet::BacnetArgs),
    /// KNX tools: `knx discover` lists the KNXnet/IP interfaces and
    /// routers answering a search; `knx monitor` prints every group
    /// telegram on the bus.
    #[cfg(feature = "knx")]
    Knx(knx::KnxArgs),
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
        #[cfg(any(feature = "lorawan", feature = "ble"))]
        Command::Decode(args) => decode::run(&args),
        #[cfg(feature = "lorawan")]
        Command::Encode(args) => script::encode(&args),
        #[cfg(feature = "lorawan")]
        Command::Codec(args) => script::codec(&args),
        #[cfg(feature = "ble")]
        Command::Ble(args) => ble::main(&args),
        #[cfg(feature = "modbus")]
        Command::Modbus(args) => modbus::main(&args),
        #[cfg(feature = "bacnet")]
        Command::Bacnet(args) => bacnet::main(&args),
        #[cfg(feature = "knx")]
        Command::Knx(args) => knx::main(&args),
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
