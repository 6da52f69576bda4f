//! `qplay adaround`: calibrate a float model with low-bit weights, round them by AdaRound (see
//! `qplay::quant::adaround`), and report accuracy with nearest rounding and after.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use qplay::eval::{evaluate, EvalOptions, Evaluation};
use qplay::model::Model;
use qplay::quant::adaround::{adaround_with, AdaRoundOptions};
use qplay::quant::calibrate::{calibrate_version, equalize, CalibOptions};
use qplay::quant::QDtype;
use serde_json::json;

use super::quant::open_data;
use super::stderr_progress;

/// Arguments of `qplay adaround`.
#[derive(Args)]
pub struct AdaRoundArgs {
    /// The float model: bundled name or .onnx path.
    #[arg(long = "float", default_value = "resnet8_float")]
    float_model: String,
    /// Weight bits, 2 to 8 (activations stay 8-bit); up to 4 bits the weights are stored as
    /// real int4 (packed two per byte), above as int8.
    #[arg(long, default_value_t = 4)]
    weight_bits: u32,
    /// Weights per output channel (symmetric), else per tensor.
    #[arg(long)]
    per_channel: bool,
    /// Cross-layer equalization of the float model first.
    #[arg(long)]
    equalize: bool,
    /// Adam steps per layer.
    #[arg(long, default_value_t = AdaRoundOptions::default().iterations)]
    iterations: usize,
    /// Images per class AdaRound learns on (chosen by --seed).
    #[arg(long, default_value_t = AdaRoundOptions::default().per_class)]
    per_class: usize,
    /// Chooses the images AdaRound learns on.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Calibration and learning images: train4000 (default) | a .bin file, directory, .tar.gz or
    /// URL. (Calibration takes the first 100 of each class.)
    #[arg(long, default_value = "train4000")]
    data: String,
    /// Images the accuracies are measured on (none of them used to learn): test (default) |
    /// lossless249 | a .bin file, directory, .tar.gz or URL.
    #[arg(long, default_value = "test")]
    test: String,
    /// Where to write the rounded QDQ model (.onnx; loads in Python onnxruntime).
    #[arg(long)]
    out: PathBuf,
    /// Print a JSON summary (accuracies before and after, seconds, per layer) instead of text.
    #[arg(long)]
    json: bool,
}

fn summary(e: &Evaluation) -> serde_json::Value {
    json!({ "accuracy": e.accuracy(), "correct": e.correct(), "total": e.total() })
}

/// Runs `qplay adaround`.
pub fn run(args: AdaRoundArgs) -> Result<()> {
    let options = AdaRoundOptions {
        weight_bits: Some(args.weight_bits),
        iterations: args.iterations,
        per_class: args.per_class,
        seed: args.seed,
        ..Default::default()
    };
    options.check()?;
    let calib = CalibOptions {
        per_channel: args.per_channel,
        weight_type: if args.weight_bits <= QDtype::Int4.bits() {
            QDtype::Int4
        } else {
            QDtype::Int8
        },
        weight_bits: args.weight_bits,
        ..Default::default()
    };
    let data = open_data(&args.data)?;
    let test = open_data(&args.test)?;
    let mut float = qplay::quant::workbench(&args.float_model)?;
    if args.equalize {
        float = equalize(&float)?.0;
    }
    let start = Instant::now();
    let progress = |what: &str, done: usize, total: usize| stderr_progress(what, done, total);
    let m = calibrate_version(&float, &data, &calib, Some(&progress))?;
    let calibration_seconds = start.elapsed().as_secs_f64();
    let r = adaround_with(&m, &float, &data, &options, Some(&progress))?;
    r.version.save(&args.out)?;
    let before = evaluate(&m, &test, &EvalOptions::default())?;
    let after = evaluate(&r.version, &test, &EvalOptions::default())?;
    let text = if args.json {
        serde_json::to_string_pretty(&json!({
            "model": r.version.name(),
            "calibration": calib.label(),
            "equalized": args.equalize,
            "test": test.description(),
            "nearest": summary(&before),
            "adaround": summary(&after),
            "calibration_seconds": calibration_seconds,
            "adaround_seconds": r.seconds,
            "threads": qplay::onnx::thread_count(),
            "result": r.to_json(),
            "out": args.out,
        }))? + "\n"
    } else {
        format!(
            "{}\n{} on {} images: nearest rounding {:.2} %, AdaRound {:.2} % → {}\n",
            r,
            calib.label(),
            before.total(),
            100.0 * before.accuracy(),
            100.0 * after.accuracy(),
            args.out.display()
        )
    };
    super::print_out(&text)
}
