//! `edge-gateway demo`: the gateway's main job on built-in defaults. The
//! embedded broker and the simulated building live in the library
//! (`edge_gateway::demo`), where the tests drive them too.

use std::process::ExitCode;

use super::run;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Window length of the demo's aggregates.
    #[arg(long, default_value = "10s")]
    window: String,
}

pub fn main(args: &DemoArgs) -> ExitCode {
    match run::runtime().and_then(|rt| rt.block_on(edge_gateway::demo::run(&args.window))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-gateway demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
