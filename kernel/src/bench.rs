//! `qplay bench`: measurements of qplay side by side with a reference measured in the same run.
//!
//! `qplay bench eval` times a full evaluation of each bundled model on the 10,000-image test set
//! and the same evaluation by Python onnxruntime / torch (`scripts/reference.py`), with the same
//! batch size and thread count, and prints a Markdown table for BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use qplay::data::{Bundled, Dataset};
use qplay::eval::{evaluate, EvalOptions};

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Full 10k evaluation per model: qplay vs Python onnxruntime / torch.
    Eval(EvalBench),
}

/// Arguments of `qplay bench eval`.
#[derive(Args)]
pub struct EvalBench {
    /// Models to measure (default: every bundled model).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Timed rounds per model (one run of each side per round); medians are reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Images per model call, on both sides.
    #[arg(long, default_value_t = qplay::eval::DEFAULT_BATCH)]
    batch_size: usize,
    /// Python interpreter with onnxruntime and torch (default: the project's .venv).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Eval(args) => bench_eval(args),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn bench_eval(args: EvalBench) -> Result<()> {
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let root = qplay::paths::root();
    let python = args
        .python
        .unwrap_or_else(|| root.join(".venv").join("bin").join("python"));
    let data = Dataset::bundled(&root, Bundled::Test)?;
    let data_file = root.join("data/cifar10/test_batch_jpeg75.bin");
    let threads = qplay::onnx::thread_count();
    let models = if args.models.is_empty() {
        qplay::registry::available()
    } else {
        args.models
    };
    crate::print_out(&format!(
        "Full evaluation on {}, batch {}, {} threads, median of {} interleaved rounds.\n\n",
        data.description(),
        args.batch_size,
        threads,
        args.repeats
    ))?;
    crate::print_out(
        "| model | reference | qplay s | reference s | ratio | qplay acc. | reference acc. |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    )?;
    for name in models {
        let model = qplay::registry::load(&name)?;
        let options = EvalOptions {
            batch_size: args.batch_size,
            progress: None,
        };
        let warm: Vec<usize> = (0..args.batch_size.min(data.len())).collect();
        model.run(data.nhwc_batch(&warm).view())?;
        // Interleave the two sides, one run each per round, so that drift in the machine's speed
        // (these are shared 2-core machines) hits both alike.
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut accuracy = 0.0;
        let mut reference = serde_json::Value::Null;
        for _ in 0..args.repeats {
            let result = evaluate(model.as_ref(), &data, &options)?;
            ours.push(result.seconds);
            accuracy = result.accuracy();
            reference = run_reference(
                &python,
                &root,
                model.path(),
                &data_file,
                args.batch_size,
                threads,
            )?;
            theirs.push(reference["seconds"].as_f64().unwrap_or(f64::NAN));
        }
        let (ours, theirs) = (median(ours), median(theirs));
        crate::print_out(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.2} | {:.2} % | {:.2} % |\n",
            name,
            reference["framework"].as_str().unwrap_or("?"),
            ours,
            theirs,
            ours / theirs,
            100.0 * accuracy,
            100.0 * reference["accuracy"].as_f64().unwrap_or(f64::NAN)
        ))?;
    }
    Ok(())
}

/// Times one full evaluation with `scripts/reference.py` (after its own warm-up run).
fn run_reference(
    python: &Path,
    root: &Path,
    model: &Path,
    data: &Path,
    batch_size: usize,
    threads: usize,
) -> Result<serde_json::Value> {
    let output = Command::new(python)
        .arg(root.join("scripts/reference.py"))
        .arg("bench")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .args(["--batch-size", &batch_size.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--repeats", "1"])
        .output()
        .with_context(|| format!("cannot run the Python reference {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "Python reference failed for {}: {}",
            model.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("Python reference printed no JSON")
}
