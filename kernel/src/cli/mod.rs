//! The command line: one file per subcommand, and what they share (printing a result, progress
//! on stderr, saving an edited model).

pub mod adaround;
pub mod bench;
pub mod bench_adaround;
pub mod bench_graph;
pub mod calibrate;
pub mod check;
pub mod eval;
pub mod install;
pub mod kernel;
pub mod prewarm;
pub mod quant;

use std::io::Write;

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
    /// Compile the prelude into a build slot of $QPLAY_BUILD_DIR (default `.evcxr/`), which
    /// new kernels then start from, so that their first cell is fast; then run the given cells
    /// (or a trivial one) and print them.
    Prewarm(prewarm::PrewarmArgs),
    /// Check notebooks' dataflow without running them: cycles (errors), names defined by
    /// several cells, cells that change another cell's variable, reads ahead (warnings).
    Check(check::CheckArgs),
    /// Run the Jupyter kernel (started by Jupyter through the kernelspec).
    Kernel(kernel::KernelArgs),
    /// Install the Jupyter kernelspec "qplay" (Rust · qplay).
    Install(install::InstallArgs),
    /// List a quantized model's quantization parameters.
    Inspect(quant::InspectArgs),
    /// Per-layer SQNR of a QDQ model against its float model (onnxruntime's qdq_loss_debug).
    Sqnr(quant::SqnrArgs),
    /// Edit a quantized model's parameters and save the result.
    Edit(quant::EditArgs),
    /// Calibrate a float ONNX model into a QDQ model (MinMax, Percentile, Entropy, MSE).
    Calibrate(calibrate::CalibrateArgs),
    /// Search per-layer weight bit widths within an accuracy budget (greedy, 8/6/4).
    MixedPrecision(calibrate::MixedArgs),
    /// Keep the quantized tensors that cost the most accuracy in float, until within a budget
    /// of the float model (ranked on a calibration split, checked on held-out images).
    Repair(quant::RepairArgs),
    /// Calibrate with low-bit weights and round them by AdaRound (learned rounding); report
    /// accuracy with nearest rounding and after.
    Adaround(adaround::AdaRoundArgs),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Eval(args) => eval::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Prewarm(args) => prewarm::run(args),
        Command::Check(args) => check::run(args),
        Command::Kernel(args) => kernel::run(args),
        Command::Install(args) => install::run(args),
        Command::Inspect(args) => quant::inspect(args),
        Command::Sqnr(args) => quant::sqnr(args),
        Command::Calibrate(args) => calibrate::calibrate(args),
        Command::MixedPrecision(args) => calibrate::mixed_precision(args),
        Command::Edit(args) => quant::edit(args),
        Command::Repair(args) => quant::repair(args),
        Command::Adaround(args) => adaround::run(args),
    }
}

/// Writes a command's result to stdout; a closed pipe (`qplay eval | head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A progress line on stderr, redrawn in place, ended when done.
pub fn stderr_progress(what: &str, done: usize, total: usize) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r{what}: {done}/{total}");
    if done == total {
        let _ = writeln!(err);
    }
}

/// The end of a search command: writes the chosen `version` to `out` when given, then prints
/// `json` when given (`--json`), else `result` as text.
pub fn save_and_print(
    version: &qplay::quant::QuantModel,
    out: Option<&std::path::Path>,
    json: Option<serde_json::Value>,
    result: &dyn std::fmt::Display,
) -> Result<()> {
    if let Some(out) = out {
        version.save(out)?;
    }
    let text = match json {
        Some(json) => serde_json::to_string_pretty(&json)? + "\n",
        None => result.to_string(),
    };
    print_out(&text)
}
