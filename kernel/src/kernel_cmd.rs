//! `qplay kernel -f <connection_file>`: runs the Jupyter kernel.
//!
//! The Rust engine is not wired in yet: this placeholder backend answers every cell with an
//! error, so that the protocol layer can be exercised end to end from a real Jupyter client.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use qplay_kernel::jupyter::{self, Backend, ExecuteContext, ExecuteOutcome, KernelInfo};

#[derive(Args)]
pub struct KernelArgs {
    /// The connection file written by the Jupyter client.
    #[arg(short = 'f', long = "connection-file")]
    connection_file: PathBuf,
}

pub fn run(args: KernelArgs) -> Result<()> {
    jupyter::serve(&args.connection_file, Placeholder, || {})
}

/// Answers every execute request with an "engine not wired" error.
struct Placeholder;

impl Backend for Placeholder {
    fn kernel_info(&self) -> KernelInfo {
        KernelInfo {
            language_version: jupyter::rustc_version(),
            banner: "qplay: Rust kernel (engine not wired yet)".to_string(),
            help_links: Vec::new(),
        }
    }

    fn execute(&mut self, _code: &str, _ctx: &ExecuteContext) -> ExecuteOutcome {
        ExecuteOutcome::error(
            "EngineNotWired",
            "the Rust engine is not connected to this kernel yet",
            Vec::new(),
        )
    }
}
