//! `qplay adaround`: calibrate a float model with low-bit weights (or re-quantize a quantized
//! model's weights to fewer bits, e.g. the TorchScript `resnet8_int8_torch`), round them by
//! AdaRound (see `qplay::quant::adaround`), and report accuracy with nearest rounding and after.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use qplay::eval::{evaluate, EvalOptions, Evaluation};
use qplay::model::{Framework, Model};
use qplay::quant::adaround::{adaround_with, AdaRoundOptions};
use qplay::quant::calibrate::{calibrate_version, equalize, CalibOptions};
use qplay::quant::{workbench, QDtype, QuantModel, Role};
use serde_json::json;

use super::quant::open_data;
use super::stderr_progress;

/// Arguments of `qplay adaround`.
#[derive(Args)]
pub struct AdaRoundArgs {
    /// The float model: bundled name or .onnx path.
    #[arg(long = "float", default_value = "resnet8_float")]
    float_model: String,
    /// A quantized model to round instead of calibrating --float (bundled name, .onnx or .pt
    /// path; TorchScript too, e.g. resnet8_int8_torch, whose float model is resnet8_float): its
    /// weights are re-quantized to --weight-bits inside their stored type (`with_bits`, per
    /// channel or per tensor as stored), and --out gets its format (.pt for TorchScript).
    #[arg(long)]
    model: Option<String>,
    /// Weight bits, 2 to 8 (activations stay 8-bit); when calibrating, up to 4 bits the weights
    /// are stored as real int4 (packed two per byte), above as int8.
    #[arg(long, default_value_t = 4)]
    weight_bits: u32,
    /// Weights per output channel (symmetric), else per tensor (calibration only).
    #[arg(long)]
    per_channel: bool,
    /// Cross-layer equalization of the float model first (calibration only).
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
    /// Where to write the rounded model: QDQ .onnx (loads in Python onnxruntime), or .pt for a
    /// TorchScript --model (loads in torch.jit.load).
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
    let mut float = workbench(&args.float_model)?;
    if args.equalize && args.model.is_none() {
        float = equalize(&float)?.0;
    }
    let start = Instant::now();
    let progress = |what: &str, done: usize, total: usize| stderr_progress(what, done, total);
    let (m, label) = match &args.model {
        Some(name) => fewer_bits(name, &args)?,
        None => (
            calibrate_version(&float, &data, &calib, Some(&progress))?,
            calib.label(),
        ),
    };
    let calibration_seconds = start.elapsed().as_secs_f64();
    let r = adaround_with(&m, &float, &data, &options, Some(&progress))?;
    r.version.save(&args.out)?;
    let before = evaluate(&m, &test, &EvalOptions::default())?;
    let after = evaluate(&r.version, &test, &EvalOptions::default())?;
    let text = if args.json {
        serde_json::to_string_pretty(&json!({
            "model": r.version.name(),
            "calibration": label,
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
            label,
            before.total(),
            100.0 * before.accuracy(),
            100.0 * after.accuracy(),
            args.out.display()
        )
    };
    super::print_out(&text)
}

/// `--model NAME` with every weight re-quantized to `--weight-bits` (`with_bits`), and what that
/// was; `--out` must have the model's format.
fn fewer_bits(name: &str, args: &AdaRoundArgs) -> Result<(QuantModel, String)> {
    if args.per_channel || args.equalize {
        bail!(
            "--per-channel and --equalize are for calibrating --float; --model `{name}` keeps its \
             weights' granularity and its float weights"
        );
    }
    let m = workbench(name)?;
    let (format, ext) = match m.framework() {
        Framework::Torch => ("TorchScript", "pt"),
        _ => ("QDQ ONNX", "onnx"),
    };
    if args.out.extension().and_then(|e| e.to_str()) != Some(ext) {
        bail!(
            "--out {}: `{name}` is {format}, so the rounded model is a .{ext} file",
            args.out.display()
        );
    }
    let weights: Vec<_> = m
        .quant_params()
        .rows
        .into_iter()
        .filter(|p| p.role == Role::Weight)
        .collect();
    let per_channel = weights.iter().any(|p| p.scales.len() > 1);
    let mut v = m.clone();
    for p in &weights {
        v = v.with_bits(&p.tensor, args.weight_bits)?;
    }
    let label = format!(
        "{name}, {}-bit weights (with_bits, {})",
        args.weight_bits,
        if per_channel {
            "per-channel"
        } else {
            "per-tensor"
        }
    );
    Ok((v, label))
}
