//! `qplay`: the command-line entry point. Subcommands evaluate and benchmark models and run
//! the Jupyter kernel.

mod bench;
mod eval;
mod kernel_cmd;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// qplay — a reactive playground for quantized neural networks.
#[derive(Parser)]
#[command(name = "qplay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a model on CIFAR-10.
    Eval(eval::EvalArgs),
    /// Measure qplay against the reference implementations.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the Jupyter kernel (started by Jupyter through the kernelspec).
    Kernel(kernel_cmd::KernelArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Eval(args) => eval::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Kernel(args) => kernel_cmd::run(args),
    };
    report(result)
}

/// Writes a command's result to stdout; a closed pipe (`qplay eval | head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints an error with its causes on one line, without a backtrace: these are user errors.
fn report(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
