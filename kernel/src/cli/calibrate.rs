//! `qplay calibrate`: the calibration lab for scripts and CI (see `qplay::quant::calibrate`).

use super::{save_and_print, stderr_progress};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use qplay::data::Dataset;
use qplay::model::Model;
use qplay::quant::calibrate::{calibrate_with, CalibOptions, Method};
use qplay::quant::QDtype;
use serde_json::json;

/// The options of a calibration, as flags (shared by `qplay calibrate` and
/// `qplay bench calibrate`).
#[derive(Args, Clone)]
pub struct CalibFlags {
    /// minmax | percentile:P (0 < P <= 100) | entropy | entropy:BINS:LEVELS | mse.
    #[arg(long, default_value = "minmax")]
    pub method: String,
    /// Weights per output channel (symmetric), else per tensor.
    #[arg(long)]
    pub per_channel: bool,
    /// Symmetric activations.
    #[arg(long)]
    pub symmetric: bool,
    /// Activation type: int4 | uint4 | int8 | uint8 | int16 | uint16.
    #[arg(long, default_value = "int8")]
    pub activation_type: String,
    /// Weight type: int4 | uint4 | int8 | uint8 | int16 | uint16 (4-bit weights are stored
    /// packed, two per byte).
    #[arg(long, default_value = "int8")]
    pub weight_type: String,
    /// Activation bits, 2 to the activation type's width (default: its width).
    #[arg(long)]
    pub activation_bits: Option<u32>,
    /// Weight bits, 2 to the weight type's width (default: its width).
    #[arg(long)]
    pub weight_bits: Option<u32>,
    /// Calibration images per class (the first of each class in file order).
    #[arg(long, default_value_t = 100)]
    pub per_class: usize,
}

impl CalibFlags {
    /// The prelude's options.
    pub fn options(&self) -> Result<CalibOptions> {
        let activation_type = QDtype::storage("--activation-type", &self.activation_type)?;
        let weight_type = QDtype::storage("--weight-type", &self.weight_type)?;
        Ok(CalibOptions {
            method: self.method.parse::<Method>()?,
            per_channel: self.per_channel,
            symmetric: self.symmetric,
            activation_type,
            weight_type,
            activation_bits: self.activation_bits.unwrap_or(activation_type.bits()),
            weight_bits: self.weight_bits.unwrap_or(weight_type.bits()),
            per_class: self.per_class,
            ..Default::default()
        })
    }
}

/// Arguments of `qplay calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    /// The float model: bundled name or .onnx path.
    #[arg(long = "float", default_value = "resnet8_float")]
    float_model: String,
    /// Where to write the QDQ model (.onnx; loads in Python onnxruntime).
    #[arg(long)]
    out: PathBuf,
    /// Calibration images: train4000 (default) | test | lossless249 | a .bin file, directory,
    /// .tar.gz or URL.
    #[arg(long, default_value = "train4000")]
    data: String,
    #[command(flatten)]
    flags: CalibFlags,
    /// Print a JSON summary (model, options, seconds, every parameter) instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `qplay calibrate`.
pub fn calibrate(args: CalibrateArgs) -> Result<()> {
    let options = args.flags.options()?;
    let data = Dataset::open(
        &args.data,
        &qplay::paths::root(),
        &qplay::paths::cache_dir(),
    )?;
    let progress = |what: &str, done: usize, total: usize| {
        stderr_progress(&format!("{what} (images)"), done, total)
    };
    let start = Instant::now();
    let model = calibrate_with(&args.float_model, &data, &options, Some(&progress))?;
    let seconds = start.elapsed().as_secs_f64();
    model.save(&args.out)?;
    let params = model.quant_params();
    let text = if args.json {
        serde_json::to_string_pretty(&json!({
            "model": model.info().name,
            "options": options.label(),
            "images": 10 * options.per_class,
            "seconds": seconds,
            "out": args.out,
            "params": params.to_json(),
        }))? + "\n"
    } else {
        format!(
            "{} calibrated on {} images of {} in {seconds:.2} s: {} activations, {} weights, \
             {} biases → {}\n",
            model.info().name,
            10 * options.per_class,
            data.description(),
            params.count(qplay::quant::Role::Activation),
            params.count(qplay::quant::Role::Weight),
            params.count(qplay::quant::Role::Bias),
            args.out.display()
        )
    };
    super::print_out(&text)
}

/// Arguments of `qplay mixed-precision`.
#[derive(Args)]
pub struct MixedArgs {
    /// The 8-bit model to start from: bundled name or .onnx/.pt path.
    #[arg(long, default_value = "resnet8_int8_perchannel")]
    model: String,
    /// Accuracy the result may lose against the start, in percentage points (0 to 100).
    #[arg(long, default_value_t = 0.5)]
    budget: f64,
    /// Bit widths weights may take, highest first.
    #[arg(long, value_delimiter = ',', default_value = "8,6,4")]
    bits: Vec<u32>,
    /// Evaluation images: test (default) | lossless249 | train4000 | a .bin file, directory,
    /// .tar.gz or URL.
    #[arg(long, default_value = "test")]
    data: String,
    /// Images per class of the quick evaluation.
    #[arg(long, default_value_t = 100)]
    per_class: usize,
    /// Also write the chosen model here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result as JSON (chosen bits, size, accuracy, every point tried).
    #[arg(long)]
    json: bool,
    /// Round lowered weights by AdaRound (learned once per weight and width before the search)
    /// instead of to nearest.
    #[arg(long)]
    adaround: bool,
    /// With --adaround: the float model the start was made from.
    #[arg(long = "float", default_value = "resnet8_float")]
    float_model: String,
    /// With --adaround: the images it learns on (train4000, or a .bin file, directory, .tar.gz
    /// or URL), never the evaluation images.
    #[arg(long, default_value = "train4000")]
    learn_data: String,
    /// With --adaround: Adam steps per weight and width.
    #[arg(long, default_value_t = qplay::quant::AdaRoundOptions::default().iterations)]
    iterations: usize,
}

/// Runs `qplay mixed-precision`.
pub fn mixed_precision(args: MixedArgs) -> Result<()> {
    use super::quant::open_data;
    use qplay::quant::calibrate::{mixed_precision_with, LearnedRounding, MixedOptions};
    let data = open_data(&args.data)?;
    let base = qplay::quant::workbench(&args.model)?;
    let adaround = if args.adaround {
        Some(LearnedRounding {
            float: qplay::quant::workbench(&args.float_model)?,
            data: open_data(&args.learn_data)?,
            options: qplay::quant::AdaRoundOptions {
                iterations: args.iterations,
                ..Default::default()
            },
        })
    } else {
        None
    };
    let options = MixedOptions {
        budget_pp: args.budget,
        bits: args.bits,
        per_class: args.per_class,
        progress: false,
        adaround,
    };
    let r = mixed_precision_with(&base, &data, &options, Some(&stderr_progress))?;
    save_and_print(
        &r.version,
        args.out.as_deref(),
        args.json.then(|| r.to_json()),
        &r,
    )
}
