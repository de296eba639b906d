//! `edge-gateway validate` and `configfile`: every problem of a config
//! with its key path (exit 78), the merged config printed, the template.

use std::path::Path;
use std::process::ExitCode;

use edge_gateway::settings::{self, LoadError};
use gateway_core::config::Durability;
use gateway_core::state_file::usable::{self, Space, StateDirError};

/// EX_CONFIG from sysexits.h: systemd and scripts can tell a bad config
/// from a crash.
const EX_CONFIG: u8 = 78;

/// EX_CANTCREAT from sysexits.h: the state directory cannot be created or
/// written. Not EX_CONFIG: the config may be right and the directory not
/// there yet (a mount), so the service manager's retry is welcome.
pub const EX_CANTCREAT: u8 = 73;

/// The line `validate` prints and `run` logs for an unusable state
/// directory: the key, what failed, and the fix.
pub fn state_dir_problem(e: &StateDirError) -> String {
    format!("gateway.state_dir: {e}; {}", e.fix())
}

pub fn main(config: &Path, print: bool) -> ExitCode {
    // With the configuration pushed from the cloud, as `run` merges it.
    let env: edge_gateway::remote_config::Env = std::env::vars_os().collect();
    match edge_gateway::remote_config::load(config, &env) {
        Ok(loaded) => {
            let (c, layers) = (loaded.config, loaded.layers);
            if let Some(why) = &loaded.dropped {
                eprintln!("note: {why}; the gateway runs the local files without it");
            }
            let summary = format!(
                "{}: ok ({} adapter(s), {} device(s), {} rule(s))",
                config.display(),
                c.adapters.len(),
                settings::device_count(&c),
                c.rules.len()
            );
            // On stderr, like the summary of --print: stdout stays one
            // line (or the TOML) for scripts.
            for note in settings::notes(&c, &layers) {
                eprintln!("note: {note}");
            }
            // As the user running validate: the packaged service runs it
            // as its own user, in ExecStartPre, before `run`.
            match usable::check(&c.gateway.state_dir) {
                Ok(Space::Free) => {}
                Ok(Space::Full) => eprintln!(
                    "note: the disk holding the state directory {} is full: readings wait unacknowledged until there is room",
                    c.gateway.state_dir.display()
                ),
                Err(e) if c.gateway.durability == Durability::Disk => {
                    gateway_core::outln!("{}", state_dir_problem(&e));
                    eprintln!("{}: the state directory cannot be used", config.display());
                    return ExitCode::from(EX_CANTCREAT);
                }
                Err(e) => eprintln!("note: {e}; durability = \"none\": the gateway runs without it and loses readings on every restart"),
            }
            if !print {
                gateway_core::outln!("{summary}");
                return ExitCode::SUCCESS;
            }
            // stdout carries only the TOML, so it can be piped or saved.
            match layers.to_redacted_toml() {
                Ok(text) => {
                    gateway_core::out!("{text}");
                    eprintln!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("edge-gateway validate: cannot print the config: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => report_load_error(&e),
    }
}

/// `edge-gateway configfile`: the commented template of every key.
pub fn configfile() -> ExitCode {
    gateway_core::out!("{}", settings::template());
    ExitCode::SUCCESS
}

pub fn report_load_error(e: &LoadError) -> ExitCode {
    match e {
        LoadError::Invalid { path, problems } => {
            for p in problems.iter() {
                gateway_core::outln!("{p}");
            }
            eprintln!("{path}: {} problem(s)", problems.len());
        }
        LoadError::Read(_) => eprintln!("{e}"),
    }
    ExitCode::from(EX_CONFIG)
}
