//! `qplay`: the command-line entry point. Subcommands evaluate and benchmark models and run
//! the Jupyter kernel.

mod adaround_cmd;
mod backend;
mod bench;
mod bench_adaround;
mod bench_graph;
mod blocks;
mod calib_cmd;
mod check;
mod completeness;
mod dataflow;
mod engine;
mod eval;
mod install;
mod interrupt;
mod kernel_cmd;
mod link;
mod output;
mod quant_cmd;
mod slots;
mod trim;
mod widgets;
mod wrap;

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
    /// Compile the prelude into a build slot of $QPLAY_BUILD_DIR (default `.evcxr/`), which
    /// new kernels then start from, so that their first cell is fast; then run the given cells
    /// (or a trivial one) and print them.
    Prewarm {
        /// Cells to run after start-up.
        cells: Vec<String>,
    },
    /// Check notebooks' dataflow without running them: cycles (errors), names defined by
    /// several cells, cells that change another cell's variable, reads ahead (warnings).
    Check(check::CheckArgs),
    /// Run the Jupyter kernel (started by Jupyter through the kernelspec).
    Kernel(kernel_cmd::KernelArgs),
    /// Install the Jupyter kernelspec "qplay" (Rust · qplay).
    Install(install::InstallArgs),
    /// List a quantized model's quantization parameters.
    Inspect(quant_cmd::InspectArgs),
    /// Per-layer SQNR of a QDQ model against its float model (onnxruntime's qdq_loss_debug).
    Sqnr(quant_cmd::SqnrArgs),
    /// Edit a quantized model's parameters and save the result.
    Edit(quant_cmd::EditArgs),
    /// Calibrate a float ONNX model into a QDQ model (MinMax, Percentile, Entropy, MSE).
    Calibrate(calib_cmd::CalibrateArgs),
    /// Search per-layer weight bit widths within an accuracy budget (greedy, 8/6/4).
    MixedPrecision(calib_cmd::MixedArgs),
    /// Keep the quantized tensors that cost the most accuracy in float, until within a budget
    /// of the float model (ranked on a calibration split, checked on held-out images).
    Repair(quant_cmd::RepairArgs),
    /// Calibrate with low-bit weights and round them by AdaRound (learned rounding); report
    /// accuracy with nearest rounding and after.
    Adaround(adaround_cmd::AdaRoundArgs),
}

/// The process-wide state slots that every copy of the qplay crate in the evcxr runtime finds
/// by name (see `qplay::process`); exported dynamically by build.rs.
#[no_mangle]
pub static QPLAY_PROCESS_SLOTS: [std::sync::atomic::AtomicPtr<std::ffi::c_void>;
    qplay::process::SLOT_COUNT] =
    [const { std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()) }; qplay::process::SLOT_COUNT];

fn main() -> ExitCode {
    // In the evcxr runtime child: one output per content block, then evcxr's loop, which never
    // returns there.
    blocks::install_in_runtime();
    interrupt::map_in_runtime();
    evcxr::runtime_hook();
    let result = match Cli::parse().command {
        Command::Eval(args) => eval::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Prewarm { cells } => prewarm(&cells),
        Command::Check(args) => check::run(args),
        Command::Kernel(args) => kernel_cmd::run(args),
        Command::Install(args) => install::run(args),
        Command::Inspect(args) => quant_cmd::inspect(args),
        Command::Sqnr(args) => quant_cmd::sqnr(args),
        Command::Calibrate(args) => calib_cmd::calibrate(args),
        Command::MixedPrecision(args) => calib_cmd::mixed_precision(args),
        Command::Edit(args) => quant_cmd::edit(args),
        Command::Repair(args) => quant_cmd::repair(args),
        Command::Adaround(args) => adaround_cmd::run(args),
    };
    report(result)
}

fn prewarm(cells: &[String]) -> Result<()> {
    let slot = slots::acquire()?;
    let start = std::time::Instant::now();
    let link = std::sync::Arc::new(link::RuntimeLink::listen(&slot.dir)?);
    let widgets = std::sync::Arc::new(widgets::Widgets::new(link.clone()));
    let interrupter = interrupt::Interrupter::new(&slot.dir)?;
    let mut engine = engine::Engine::start(interrupter, widgets, link, &slot.dir)?;
    slots::mark_warm(&slot)?;
    eprintln!(
        "engine started in {:.1} s in {}",
        start.elapsed().as_secs_f64(),
        slot.dir.display()
    );
    let trivial = ["1 + 1".to_string()];
    let cells = if cells.is_empty() {
        &trivial[..]
    } else {
        cells
    };
    let printer = std::sync::Arc::new(PrintSink);
    for (i, cell) in cells.iter().enumerate() {
        let start = std::time::Instant::now();
        let result = engine.execute(cell, &format!("cell-{i}"), printer.clone());
        match result {
            Ok(Some(bundle)) => println!("result: {}", serde_json::Value::Object(bundle)),
            Ok(None) => {}
            Err(e) => println!(
                "error: {}: {}\n{}",
                e.ename,
                e.evalue,
                e.traceback.join("\n")
            ),
        }
        eprintln!("cell ran in {:.2} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Prints a cell's outputs on the terminal (for `qplay prewarm`).
struct PrintSink;

impl output::OutputSink for PrintSink {
    fn stream(&self, name: &str, text: &str) {
        print!("[{name}] {text}");
    }
    fn display(&self, data: qplay::display::MimeBundle, id: Option<String>, update: bool) {
        let kind = if update { "update" } else { "display" };
        println!(
            "[{kind} {}] {}",
            id.unwrap_or_default(),
            serde_json::Value::Object(data)
        );
    }
    fn clear_output(&self, wait: bool) {
        println!("[clear_output wait={wait}]");
    }
    fn comm(&self, msg_type: &str, content: serde_json::Value, _metadata: serde_json::Value) {
        println!("[{msg_type}] {}", content["comm_id"]);
    }
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
