//! `edge-gateway validate` and `configfile`: every problem of a config
//! with its key path (exit 78), the merged config printed, the template.

use std::path::Path;
use std::process::ExitCode;

use edge_gateway::settings::{self, LoadError};

/// EX_CONFIG from sysexits.h: systemd and scripts can tell a bad config
/// from a crash.
const EX_CONFIG: u8 = 78;

pub fn main(config: &Path, print: bool) -> ExitCode {
    match settings::load_layers(config, std::env::vars_os()) {
        Ok((c, layers)) => {
            let summary = format!(
                "{}: ok ({} adapter(s), {} device(s), {} rule(s))",
                config.display(),
                c.adapters.len(),
                c.devices.len(),
                c.rules.len()
            );
            // On stderr, like the summary of --print: stdout stays one
            // line (or the TOML) for scripts.
            for note in settings::notes(&c, &layers) {
                eprintln!("note: {note}");
            }
            if !print {
                println!("{summary}");
                return ExitCode::SUCCESS;
            }
            // stdout carries only the TOML, so it can be piped or saved.
            match layers.to_redacted_toml() {
                Ok(text) => {
                    print!("{text}");
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
    print!("{}", settings::template());
    ExitCode::SUCCESS
}

pub fn report_load_error(e: &LoadError) -> ExitCode {
    match e {
        LoadError::Invalid { path, problems } => {
            for p in problems.iter() {
                println!("{p}");
            }
            eprintln!("{path}: {} problem(s)", problems.len());
        }
        LoadError::Read(_) => eprintln!("{e}"),
    }
    ExitCode::from(EX_CONFIG)
}
