//! `qplay bench adaround`: learned rounding against the other ways to low-bit weights, in one
//! run on the same calibration. For each weight width and granularity it calibrates the float
//! model (8-bit activations) and measures on the test set (none of it used to learn):
//! nearest rounding; cross-layer equalization + bias correction (what notebook 04 does without
//! AdaRound); AdaRound; CLE + AdaRound. The bundled int8 model of the same granularity is the
//! reference; AdaRound's seconds are the time goal's (ResNet-8, 4-bit, ≤ 60 s on 2 cores).

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use qplay::eval::{evaluate, EvalOptions};
use qplay::model::Model;
use qplay::quant::adaround::{adaround_with, AdaRoundOptions};
use qplay::quant::calibrate::{calibrate_version, equalize, CalibOptions};
use qplay::quant::{workbench, QDtype, QuantModel};
use serde_json::json;

use super::quant::open_data;

/// Arguments of `qplay bench adaround`.
#[derive(Args)]
pub struct AdaRoundBench {
    /// The float model: bundled name or .onnx path.
    #[arg(long = "float", default_value = "resnet8_float")]
    float_model: String,
    /// Weight widths to measure (up to 4 bits stored as int4, above as int8).
    #[arg(long, value_delimiter = ',', default_value = "4,3")]
    bits: Vec<u32>,
    /// Granularities: per-tensor, per-channel.
    #[arg(long, value_delimiter = ',', default_value = "per-tensor,per-channel")]
    weights: Vec<String>,
    /// Adam steps per layer.
    #[arg(long, default_value_t = AdaRoundOptions::default().iterations)]
    iterations: usize,
    /// Calibration and learning images (train4000, or a .bin file, directory, .tar.gz, URL).
    #[arg(long, default_value = "train4000")]
    data: String,
    /// Images the accuracies are measured on (test: the 10,000-image test set).
    #[arg(long, default_value = "test")]
    test: String,
    /// Bundled int8 references, per tensor and per channel.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "resnet8_int8,resnet8_int8_perchannel"
    )]
    references: Vec<String>,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    json: bool,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One row: a width and granularity, four ways to round.
struct Row {
    bits: u32,
    per_channel: bool,
    reference: f64,
    nearest: f64,
    cle_bc: f64,
    cle_bc_seconds: f64,
    adaround: f64,
    adaround_seconds: f64,
    cle_adaround: f64,
    cle_adaround_seconds: f64,
}

/// Runs the benchmark and prints a Markdown table (or JSON).
pub fn run(args: AdaRoundBench) -> Result<()> {
    let options = AdaRoundOptions {
        iterations: args.iterations,
        ..Default::default()
    };
    options.check()?;
    let mut granularities = Vec::new();
    for w in &args.weights {
        granularities.push(match w.as_str() {
            "per-tensor" => false,
            "per-channel" => true,
            other => anyhow::bail!("--weights {other}: per-tensor or per-channel"),
        });
    }
    let data = open_data(&args.data)?;
    let test = open_data(&args.test)?;
    let float = workbench(&args.float_model)?;
    let (equalized, _) = equalize(&float)?;
    let accuracy = |m: &QuantModel| -> Result<f64> {
        Ok(evaluate(m, &test, &EvalOptions::default())?.accuracy())
    };
    let timed = |f: &mut dyn FnMut() -> Result<QuantModel>| -> Result<(QuantModel, f64)> {
        let t = Instant::now();
        let m = f()?;
        Ok((m, t.elapsed().as_secs_f64()))
    };
    let float_accuracy = accuracy(&float)?;
    let mut rows = Vec::new();
    for &bits in &args.bits {
        for &per_channel in &granularities {
            let reference = args
                .references
                .get(usize::from(per_channel))
                .map(|r| workbench(r).and_then(|m| accuracy(&m)))
                .transpose()?
                .unwrap_or(f64::NAN);
            let calib = CalibOptions {
                per_channel,
                ..Default::default()
            }
            .with_weight_type(if bits <= QDtype::Int4.bits() {
                QDtype::Int4
            } else {
                QDtype::Int8
            });
            let calib = CalibOptions {
                weight_bits: bits,
                ..calib
            };
            let round = AdaRoundOptions {
                weight_bits: Some(bits),
                ..options.clone()
            };
            let nearest = calibrate_version(&float, &data, &calib, None)?;
            let cle = calibrate_version(&equalized, &data, &calib, None)?;
            let (cle_bc, cle_bc_seconds) =
                timed(&mut || cle.bias_corrected(&equalized, &data, 20))?;
            let (ada, adaround_seconds) =
                timed(&mut || Ok(adaround_with(&nearest, &float, &data, &round, None)?.version))?;
            let (cle_ada, cle_adaround_seconds) =
                timed(&mut || Ok(adaround_with(&cle, &equalized, &data, &round, None)?.version))?;
            let row = Row {
                bits,
                per_channel,
                reference,
                nearest: accuracy(&nearest)?,
                cle_bc: accuracy(&cle_bc)?,
                cle_bc_seconds,
                adaround: accuracy(&ada)?,
                adaround_seconds,
                cle_adaround: accuracy(&cle_ada)?,
                cle_adaround_seconds,
            };
            eprintln!(
                "W{bits}A8 {}: AdaRound {:.2} % in {:.1} s",
                granularity(per_channel),
                100.0 * row.adaround,
                row.adaround_seconds
            );
            rows.push(row);
        }
    }
    let threads = qplay::onnx::thread_count();
    let text = if args.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "weight_bits": r.bits, "per_channel": r.per_channel,
                    "reference": r.reference, "nearest": r.nearest,
                    "cle_bias_correction": r.cle_bc, "cle_bias_correction_seconds": r.cle_bc_seconds,
                    "adaround": r.adaround, "adaround_seconds": r.adaround_seconds,
                    "cle_adaround": r.cle_adaround, "cle_adaround_seconds": r.cle_adaround_seconds,
                })
            })
            .collect();
        serde_json::to_string_pretty(&json!({
            "float": float.name(), "float_accuracy": float_accuracy,
            "test": test.description(), "learned_on": data.description(),
            "iterations": args.iterations, "threads": threads, "load_average": load_average(),
            "rows": rows,
        }))? + "\n"
    } else {
        let pct = |x: f64| format!("{:.2} %", 100.0 * x);
        let mut t = format!(
            "{} ({} on {}), AdaRound {} iterations per layer learned on {}; {} threads, load \
             average {}\n\n| weights (8-bit activations) | bundled int8 | nearest | CLE + bias \
             correction | AdaRound | CLE + AdaRound | AdaRound s | CLE + AdaRound s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
            float.name(),
            pct(float_accuracy),
            test.description(),
            args.iterations,
            data.description(),
            threads,
            load_average()
        );
        for r in &rows {
            t += &format!(
                "| {}-bit {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |\n",
                r.bits,
                granularity(r.per_channel),
                pct(r.reference),
                pct(r.nearest),
                pct(r.cle_bc),
                pct(r.adaround),
                pct(r.cle_adaround),
                r.adaround_seconds,
                r.cle_adaround_seconds
            );
        }
        t
    };
    super::print_out(&text)
}

fn granularity(per_channel: bool) -> &'static str {
    if per_channel {
        "per channel"
    } else {
        "per tensor"
    }
}
