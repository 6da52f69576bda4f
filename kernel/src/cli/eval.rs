//! `qplay eval`: evaluate one model on a CIFAR-10 selection, with a progress bar on a terminal,
//! a JSON summary for scripts, and the predictions written out for comparison.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use qplay::data::Dataset;
use qplay::eval::{evaluate_indices, EvalOptions};

/// Arguments of `qplay eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Bundled model name (e.g. resnet8_int8) or path to an .onnx / .pt file.
    #[arg(long)]
    model: String,
    /// test (JPEG-q75 copy, 10k) | lossless249 | train4000 | a .bin file, directory, .tar.gz or URL.
    #[arg(long, default_value = "test")]
    data: String,
    /// Evaluate only the first N images.
    #[arg(long, conflicts_with = "per_class")]
    limit: Option<usize>,
    /// Evaluate a stratified sample: the first N images of each class.
    #[arg(long)]
    per_class: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Write one predicted label per line, in data order.
    #[arg(long)]
    save_predictions: Option<PathBuf>,
    /// Images per model call.
    #[arg(long, default_value_t = qplay::eval::DEFAULT_BATCH)]
    batch_size: usize,
}

/// Runs `qplay eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let data = Dataset::open(
        &args.data,
        &qplay::paths::root(),
        &qplay::paths::cache_dir(),
    )?;
    let model = qplay::registry::load(&args.model)?;
    let (indices, sampled) = match (args.limit, args.per_class) {
        (_, Some(n)) => (data.stratified(n)?, true),
        (Some(n), None) => ((0..n.min(data.len())).collect(), n < data.len()),
        (None, None) => ((0..data.len()).collect(), false),
    };
    let bar = ProgressBar::new(indices.len() as u64).with_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} images ({percent} %), eta {eta}")
            .expect("valid template"),
    );
    bar.set_message(model.name().to_string());
    let progress = |done: usize, _total: usize| bar.set_position(done as u64);
    let options = EvalOptions {
        batch_size: args.batch_size,
        progress: Some(&progress),
    };
    let result = evaluate_indices(model.as_ref(), &data, &indices, sampled, &options)?;
    bar.finish_and_clear();

    if let Some(path) = &args.save_predictions {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write predictions to {}", path.display()))?,
        );
        for p in &result.predictions {
            writeln!(out, "{p}")?;
        }
        out.flush()?;
    }
    let mut text = if args.json {
        serde_json::to_string_pretty(&result.to_json())?
    } else {
        let mut text = result.to_string();
        for c in result.per_class() {
            text += &format!(
                "\n  {:>10}: {:>4}/{:<4} {:6.2} %",
                c.name,
                c.correct,
                c.total,
                100.0 * c.accuracy
            );
        }
        text
    };
    text.push('\n');
    super::print_out(&text)
}
