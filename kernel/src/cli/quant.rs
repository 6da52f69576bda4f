//! `qplay inspect`, `qplay sqnr`, `qplay edit` and `qplay repair`: the quantization workbench
//! for scripts and CI (see `qplay::quant`).

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use qplay::data::Dataset;
use qplay::quant::{sqnr::layer_errors, workbench, QuantModel};

/// Arguments of `qplay inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Bundled model name (e.g. resnet8_int8) or path to an .onnx file.
    #[arg(long)]
    model: String,
    /// Print the rows as a JSON list instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `qplay inspect`.
pub fn inspect(args: InspectArgs) -> Result<()> {
    let params = workbench(&args.model)?.quant_params();
    let text = if args.json {
        serde_json::to_string_pretty(&params.to_json())? + "\n"
    } else {
        params.to_string()
    };
    super::print_out(&text)
}

/// Arguments of `qplay sqnr`.
#[derive(Args)]
pub struct SqnrArgs {
    /// The float model (bundled name or .onnx path).
    #[arg(long = "float")]
    float_model: String,
    /// The quantized QDQ model (bundled name or .onnx path).
    #[arg(long = "quant")]
    quant_model: String,
    /// test (JPEG-q75 copy, 10k) | lossless249 | train4000 | a .bin file, directory, .tar.gz or URL.
    #[arg(long, default_value = "test")]
    data: String,
    /// Use only the first N images.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print a JSON list of {"tensor", "qdq_err", "xmodel_err", "relu_folded"}.
    #[arg(long)]
    json: bool,
}

/// Runs `qplay sqnr`.
pub fn sqnr(args: SqnrArgs) -> Result<()> {
    let data = open_data(&args.data)?;
    let float = workbench(&args.float_model)?;
    let quant = workbench(&args.quant_model)?;
    let indices: Vec<usize> = (0..args.limit.min(data.len())).collect();
    let errors = layer_errors(&float, &quant, &data, &indices)?;
    let text = if args.json {
        serde_json::to_string_pretty(&errors.to_json())? + "\n"
    } else {
        errors.to_string()
    };
    super::print_out(&text)
}

/// The data set `spec` names (bundled name, file, directory, archive or URL).
pub(crate) fn open_data(spec: &str) -> Result<Dataset> {
    Ok(Dataset::open(
        spec,
        &qplay::paths::root(),
        &qplay::paths::cache_dir(),
    )?)
}

/// Arguments of `qplay edit`.
#[derive(Args)]
pub struct EditArgs {
    /// Bundled model name or path to an .onnx file.
    #[arg(long)]
    model: String,
    /// Where to write the edited model.
    #[arg(long)]
    out: PathBuf,
    /// TENSOR=SCALE, or TENSOR=S1,S2,… for every channel.
    #[arg(long = "scale")]
    scales: Vec<String>,
    /// TENSOR=ZERO_POINT, or TENSOR=Z1,Z2,… for every channel.
    #[arg(long = "zero-point")]
    zero_points: Vec<String>,
    /// TENSOR=BITS: re-quantize a weight to 2..8 bits.
    #[arg(long = "bits")]
    bits: Vec<String>,
    /// TENSOR=TYPE: store a weight as int4, uint4, int8, uint8, int16 or uint16 (re-quantized
    /// on the type's full width; 4- and 16-bit types make an opset-21 model).
    #[arg(long = "type")]
    types: Vec<String>,
    /// TENSOR: remove its quantization (QuantizeLinear/DequantizeLinear pair); repeatable.
    #[arg(long = "keep-float")]
    keep_float: Vec<String>,
    /// The float model whose weights a weight kept in float takes (bundled name or .onnx
    /// path); without it, the dequantized values.
    #[arg(long = "float")]
    float_model: Option<String>,
}

fn split(arg: &str) -> Result<(&str, &str)> {
    arg.rsplit_once('=')
        .ok_or_else(|| anyhow!("`{arg}` is not TENSOR=VALUE"))
}

fn numbers<T: std::str::FromStr>(text: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .with_context(|| format!("`{v}` is not a number"))
        })
        .collect()
}

/// Runs `qplay edit`: applies the edits in order (scales, zero points, types, bits, tensors kept
/// in float), saves the result and prints the diff against the original as JSON.
pub fn edit(args: EditArgs) -> Result<()> {
    let mut v: QuantModel = workbench(&args.model)?;
    for arg in &args.scales {
        let (t, value) = split(arg)?;
        v = v.with_scales(t, &numbers::<f32>(value)?)?;
    }
    for arg in &args.zero_points {
        let (t, value) = split(arg)?;
        v = v.with_zero_points(t, &numbers::<i32>(value)?)?;
    }
    for arg in &args.types {
        let (t, value) = split(arg)?;
        v = v.with_type(t, value.parse::<qplay::quant::QDtype>()?)?;
    }
    for arg in &args.bits {
        let (t, value) = split(arg)?;
        let bits = value
            .parse()
            .with_context(|| format!("`{value}` is not a bit count"))?;
        v = v.with_bits(t, bits)?;
    }
    let float = args.float_model.as_deref().map(workbench).transpose()?;
    for t in &args.keep_float {
        v = match &float {
            Some(f) => v.keep_float_from(t, f)?,
            None => v.keep_float(t)?,
        };
    }
    v.save(&args.out)?;
    super::print_out(&(serde_json::to_string_pretty(&v.diff().to_json())? + "\n"))
}

/// Arguments of `qplay repair`.
#[derive(Args)]
pub struct RepairArgs {
    /// The quantized ONNX model to repair: bundled name or .onnx path.
    #[arg(long)]
    model: String,
    /// The float model it was quantized from (its weights replace the kept weights).
    #[arg(long = "float", default_value = "resnet8_float")]
    float_model: String,
    /// How far below the float model's accuracy the result may stay, in percentage points
    /// (0 to 100).
    #[arg(long, default_value_t = 0.5)]
    budget: f64,
    /// Evaluation images: test (default) | lossless249 | train4000 | a .bin file, directory,
    /// .tar.gz or URL.
    #[arg(long, default_value = "test")]
    data: String,
    /// Images per class that rank the tensors (the first of each class).
    #[arg(long, default_value_t = 100)]
    calib_per_class: usize,
    /// Images per class held out to check the result (the next of each class).
    #[arg(long, default_value_t = 100)]
    holdout_per_class: usize,
    /// At most this many tensors kept in float.
    #[arg(long)]
    max_float: Option<usize>,
    /// Store a weight's step in this wider type (int16 or uint16) instead of float, where the
    /// model allows it.
    #[arg(long)]
    wider: Option<String>,
    /// Also write the repaired model here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result as JSON (ranking, tensors kept, every step's accuracy).
    #[arg(long)]
    json: bool,
}

/// Runs `qplay repair`: ranks the quantized tensors by the accuracy each costs and keeps the
/// worst in float until the model is within the budget of the float model.
pub fn repair(args: RepairArgs) -> Result<()> {
    use qplay::quant::repair::{repair_with, RepairOptions};
    let data = open_data(&args.data)?;
    let m = workbench(&args.model)?;
    let float = workbench(&args.float_model)?;
    let options = RepairOptions {
        budget_pp: args.budget,
        calib_per_class: args.calib_per_class,
        holdout_per_class: args.holdout_per_class,
        max_float: args.max_float,
        wider: args.wider.as_deref().map(str::parse).transpose()?,
        progress: false,
    };
    let progress = |what: &str, done: usize, total: usize| {
        super::stderr_progress(&format!("repair: {what}"), done, total)
    };
    let r = repair_with(&m, &float, &data, &options, Some(&progress))?;
    super::save_and_print(
        &r.version,
        args.out.as_deref(),
        args.json.then(|| r.to_json()),
        &r,
    )
}
