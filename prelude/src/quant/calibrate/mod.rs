//! The calibration lab: a float ONNX model made into a QDQ model in Rust, with any of
//! onnxruntime's calibration methods (and MSE), per-tensor or per-channel weights, symmetric or
//! asymmetric activations, int8 or uint8, 2 to 8 bits.
//!
//! ```ignore
//! let train = Dataset::bundled(&root, Bundled::Train)?;
//! let m = calibrate("resnet8_float", &train, &CalibOptions::default())?;   // = resnet8_int8
//! let p = calibrate("resnet8_float", &train, &CalibOptions {
//!     method: Method::Percentile(99.99), per_channel: true, ..Default::default() })?;
//! quick(&p, &test, 100)?;
//! ```
//!
//! Steps, each in its own module: [`qdq`] places the quantizers as onnxruntime's QDQ quantizer
//! does; [`stats`] measures the tensors that need ranges on the calibration images
//! ([`extremes`] finds exact ranges screening on the optimized graph; [`cache`] keeps the
//! statistics by content, in memory and on disk); [`ranges`] turns statistics into ranges;
//! [`params`] turns ranges into scales, zero points and integers with onnxruntime's arithmetic.
//! The result is a workbench version: inspect, edit, undo, diff, save, SQNR all work on it.

pub mod cache;
pub mod extremes;
pub mod mixed;
pub mod params;
pub mod qdq;
pub mod ranges;
pub mod refine;
pub mod stats;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};

use super::onnx_graph;
use super::{QDtype, QuantModel};
use crate::data::Dataset;
use crate::model::Model;
pub use mixed::{
    mixed_precision, mixed_precision_chart, mixed_precision_with, LearnedRounding, MixedOptions,
    MixedPrecision,
};
use params::Grid;
use ranges::Counted;
pub use refine::equalize;
pub use stats::Progress;

/// How activation ranges are found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Smallest and largest value seen (onnxruntime's default).
    MinMax,
    /// The range holding this percentage of the values (onnxruntime's Percentile: magnitudes
    /// with symmetric activations, else both tails), 2,048 bins.
    Percentile(f64),
    /// The threshold of least KL divergence (onnxruntime's Entropy, default 128 bins and 128
    /// quantized bins). With as many quantized bins as bins there is one candidate, the whole
    /// range: onnxruntime's defaults give MinMax's ranges; `entropy:2048:128` searches.
    Entropy {
        /// Histogram bins.
        bins: usize,
        /// Levels of the quantized distribution compared against.
        quantized_bins: usize,
    },
    /// The clip range whose quantize–dequantize error is smallest (2,048-bin histogram).
    Mse,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::MinMax => f.write_str("minmax"),
            Method::Percentile(p) => write!(f, "percentile:{p}"),
            Method::Entropy {
                bins,
                quantized_bins,
            } if *bins == 128 && *quantized_bins == 128 => f.write_str("entropy"),
            Method::Entropy {
                bins,
                quantized_bins,
            } => write!(f, "entropy:{bins}:{quantized_bins}"),
            Method::Mse => f.write_str("mse"),
        }
    }
}

/// The forms `Method::from_str` accepts.
pub const METHOD_FORMS: &str =
    "minmax, percentile:P (0 < P <= 100, e.g. percentile:99.99), entropy, entropy:BINS:LEVELS, mse";

impl FromStr for Method {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Method> {
        let lower = s.trim().to_lowercase();
        let mut parts = lower.split(':');
        let head = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        let bad = || anyhow!("calibration method `{s}` is not one of: {METHOD_FORMS}");
        let method = match (head, rest.as_slice()) {
            ("minmax", []) => Method::MinMax,
            ("mse", []) => Method::Mse,
            ("percentile", []) => Method::Percentile(99.999),
            ("percentile", [p]) => Method::Percentile(p.parse().map_err(|_| bad())?),
            ("entropy", []) => Method::Entropy {
                bins: 128,
                quantized_bins: 128,
            },
            ("entropy", [b, q]) => Method::Entropy {
                bins: b.parse().map_err(|_| bad())?,
                quantized_bins: q.parse().map_err(|_| bad())?,
            },
            _ => return Err(bad()),
        };
        method.check()?;
        Ok(method)
    }
}

impl Method {
    /// The histogram the method reads: what it counts and how many bins. quantize_static's
    /// Percentile calibrator counts magnitudes (its CalibSymmetric defaults to true, whatever
    /// the activations' symmetry); Entropy counts values.
    pub(crate) fn histogram(&self) -> Option<(Counted, usize)> {
        match *self {
            Method::MinMax => None,
            Method::Percentile(_) => Some((Counted::Magnitudes, 2048)),
            Method::Entropy { bins, .. } => Some((Counted::Values, bins)),
            Method::Mse => Some((Counted::Values, 2048)),
        }
    }

    fn check(&self) -> Result<()> {
        match *self {
            Method::Percentile(p) if !(p > 0.0 && p <= 100.0) => {
                bail!("percentile {p} is out of range: 0 < percentile <= 100")
            }
            Method::Entropy {
                bins,
                quantized_bins,
            } if quantized_bins < 2 || bins < quantized_bins => bail!(
                "entropy with {bins} bins and {quantized_bins} quantized bins: \
                 2 <= quantized bins <= bins"
            ),
            _ => Ok(()),
        }
    }
}

/// Everything that decides a calibration. The defaults are models/build.py's settings (and
/// onnxruntime's): MinMax, per-tensor weights, asymmetric activations, int8, 8 bits, 100
/// training images per class, Softmax left in float.
#[derive(Debug, Clone)]
pub struct CalibOptions {
    /// How activation ranges are found.
    pub method: Method,
    /// Weights per output channel (symmetric), else per tensor.
    pub per_channel: bool,
    /// Symmetric activations (zero point in the middle; ReLUs then stay in the graph).
    pub symmetric: bool,
    /// Activation storage type, one of [`QDtype::STORAGE`] (int4/uint4 and int16/uint16 make an
    /// opset-21 model).
    pub activation_type: QDtype,
    /// Weight storage type, one of [`QDtype::STORAGE`] (int4/uint4 weights are stored packed,
    /// two per byte).
    pub weight_type: QDtype,
    /// Activation bits, 2 to the type's width. Below it the grid is narrower than its container
    /// and starts at its bottom: values below the calibrated range saturate at the grid's lower
    /// edge (so folded ReLUs still clip), values above it at the container's top, not the grid's.
    /// [`CalibOptions::with_activation_type`] sets type and width together.
    pub activation_bits: u32,
    /// Weight bits, 2 to the type's width (weights are clipped to a narrower grid).
    /// [`CalibOptions::with_weight_type`] sets type and width together.
    pub weight_bits: u32,
    /// Weight bits for particular weights (by initializer name), overriding `weight_bits`.
    pub layer_bits: BTreeMap<String, u32>,
    /// Calibration images per class (stratified: the first of each class in file order).
    pub per_class: usize,
    /// Node names kept in float; `None`: every Softmax node (as models/build.py does).
    pub exclude: Option<Vec<String>>,
    /// Show progress bars in the notebook.
    pub progress: bool,
}

impl Default for CalibOptions {
    fn default() -> Self {
        CalibOptions {
            method: Method::MinMax,
            per_channel: false,
            symmetric: false,
            activation_type: QDtype::Int8,
            weight_type: QDtype::Int8,
            activation_bits: 8,
            weight_bits: 8,
            layer_bits: BTreeMap::new(),
            per_class: 100,
            exclude: None,
            progress: false,
        }
    }
}

impl CalibOptions {
    /// These options with weights stored as `dtype`, on its full width.
    pub fn with_weight_type(mut self, dtype: QDtype) -> CalibOptions {
        self.weight_type = dtype;
        self.weight_bits = dtype.bits();
        self
    }

    /// These options with activations stored as `dtype`, on its full width.
    pub fn with_activation_type(mut self, dtype: QDtype) -> CalibOptions {
        self.activation_type = dtype;
        self.activation_bits = dtype.bits();
        self
    }

    /// A short description (also the calibrated model's name suffix).
    pub fn label(&self) -> String {
        let mut parts = vec![self.method.to_string()];
        parts.push(
            if self.per_channel {
                "per-channel"
            } else {
                "per-tensor"
            }
            .into(),
        );
        if self.symmetric {
            parts.push("symmetric".into());
        }
        let t = |d: QDtype, bits: u32| {
            let short = format!("{}{}", if d.signed() { "i" } else { "u" }, d.bits());
            if bits == d.bits() {
                short
            } else {
                format!("{short}/{bits}b")
            }
        };
        parts.push(format!(
            "a{} w{}",
            t(self.activation_type, self.activation_bits),
            t(self.weight_type, self.weight_bits),
        ));
        if !self.layer_bits.is_empty() {
            parts.push(format!("{} layers re-bitted", self.layer_bits.len()));
        }
        parts.join(", ")
    }

    pub(crate) fn check(&self) -> Result<()> {
        self.method.check()?;
        self.activation_type.check_storage("activation_type")?;
        self.weight_type.check_storage("weight_type")?;
        self.activation_type
            .check_bits("activation_bits", self.activation_bits)?;
        self.weight_type
            .check_bits("weight_bits", self.weight_bits)?;
        for (k, &b) in &self.layer_bits {
            self.weight_type
                .check_bits(&format!("layer_bits[{k}]"), b)?;
        }
        super::dtype::cpu_kernel(self.weight_type, self.activation_type)?;
        if self.per_class == 0 {
            bail!("per_class = 0 is out of range: at least 1 calibration image per class");
        }
        Ok(())
    }
}

/// The default calibration pool: the 4,000 lossless training images bundled with qplay.
pub fn default_pool() -> Result<Dataset> {
    Ok(Dataset::bundled(
        &crate::paths::root(),
        crate::data::Bundled::Train4000,
    )?)
}

/// Calibrates the float ONNX model `float` (bundled name or path) on `data` into a QDQ model:
/// version 0 of a new workbench model named `<float> [<options>]`.
pub fn calibrate(float: &str, data: &Dataset, options: &CalibOptions) -> Result<QuantModel> {
    calibrate_with(float, data, options, None)
}

/// [`calibrate`], reporting progress after each batch.
pub fn calibrate_with(
    float: &str,
    data: &Dataset,
    options: &CalibOptions,
    progress: Option<Progress<'_>>,
) -> Result<QuantModel> {
    calibrate_version(&super::workbench(float)?, data, options, progress)
}

/// Calibrates a float model already open in the workbench (an [`equalize`]d one, say): version 0
/// of a new model named `<float> [<options>]`. With `options.progress` and no `progress`, a
/// progress bar is shown in the notebook.
pub fn calibrate_version(
    float: &QuantModel,
    data: &Dataset,
    options: &CalibOptions,
    progress: Option<Progress<'_>>,
) -> Result<QuantModel> {
    let bar = NotebookProgress::default();
    let bar_fn = |what: &str, done: usize, total: usize| bar.set(what, done, total);
    let progress = progress.or(options.progress.then_some(&bar_fn as Progress<'_>));
    let proto = calibrate_proto(float.proto()?, data, options, progress)?;
    QuantModel::from_bytes(
        &format!("{} [{}]", float.name(), options.label()),
        &float.info().path,
        &onnx_graph::encode(&proto),
    )
}

/// One notebook progress bar per phase ("ranges", "histograms"), labelled `calibration: …`
/// (or with another prefix, see [`NotebookProgress::labelled`]).
#[derive(Default)]
pub(crate) struct NotebookProgress {
    prefix: Option<&'static str>,
    bars: std::sync::Mutex<Vec<(String, crate::display::ProgressBar)>>,
}

impl NotebookProgress {
    /// Bars labelled `<prefix>: <phase>`.
    pub(crate) fn labelled(prefix: &'static str) -> NotebookProgress {
        NotebookProgress {
            prefix: Some(prefix),
            bars: Default::default(),
        }
    }

    pub(crate) fn set(&self, what: &str, done: usize, total: usize) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if !bars.iter().any(|(w, _)| w == what) {
            let label = format!("{}: {what}", self.prefix.unwrap_or("calibration"));
            bars.push((
                what.to_string(),
                crate::display::ProgressBar::new(&label, total),
            ));
        }
        if let Some((_, bar)) = bars.iter().find(|(w, _)| w == what) {
            bar.set(done);
        }
    }
}

/// The Softmax nodes of a graph.
fn softmax_nodes(model: &onnx_graph::proto::ModelProto) -> Vec<String> {
    model
        .graph
        .iter()
        .flat_map(|g| g.node.iter())
        .filter(|n| n.op_type() == "Softmax")
        .map(|n| n.name().to_string())
        .collect()
}

/// The QDQ model of float `model`, calibrated on `data` as `options` say.
pub fn calibrate_proto(
    model: &onnx_graph::proto::ModelProto,
    data: &Dataset,
    options: &CalibOptions,
    progress: Option<Progress<'_>>,
) -> Result<onnx_graph::proto::ModelProto> {
    options.check()?;
    if onnx_graph::qdq_counts(model) != (0, 0) {
        bail!(
            "the model already has QuantizeLinear/DequantizeLinear nodes: calibrate a float \
             model (re-calibrate a quantized one with `recalibrate`)"
        );
    }
    let placement = qdq::Placement {
        per_channel: options.per_channel,
        symmetric_activations: options.symmetric,
        exclude: options
            .exclude
            .clone()
            .unwrap_or_else(|| softmax_nodes(model)),
    };
    let plan = qdq::Plan::new(model, &placement)?;
    let indices = data.stratified(options.per_class)?;
    let tensors = plan.measured(model);
    let src = stats::Source {
        model,
        tensors: &tensors,
        data,
        indices: &indices,
    };
    let activation = Grid {
        dtype: options.activation_type,
        bits: options.activation_bits,
        symmetric: options.symmetric,
    };
    let (stats, hists) = cache::collect(&src, options.method.histogram(), progress)?;
    let ranges = activation_ranges(&stats.seen, hists.as_deref(), options, activation)?;
    let weights: BTreeMap<String, Grid> = plan
        .weights()
        .into_iter()
        .map(|(w, axis)| {
            let bits = options
                .layer_bits
                .get(&w)
                .copied()
                .unwrap_or(options.weight_bits);
            let grid = Grid {
                dtype: options.weight_type,
                bits,
                symmetric: axis.is_some() || options.weight_type.signed(),
            };
            (w, grid)
        })
        .collect();
    if let Some(unknown) = options
        .layer_bits
        .keys()
        .find(|k| !weights.contains_key(*k))
    {
        bail!(
            "layer_bits names `{unknown}`, which is not a quantized weight; weights: {}",
            weights.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let numbers = qdq::Numbers {
        ranges: &ranges,
        activation,
        weights: &weights,
    };
    qdq::write(model, &plan, &numbers)
}

/// Each measured tensor's range by `options.method`, from what was seen and the method's
/// histograms.
pub(crate) fn activation_ranges(
    seen: &BTreeMap<String, ranges::MinMax>,
    hists: Option<&BTreeMap<String, ranges::Histogram>>,
    options: &CalibOptions,
    grid: Grid,
) -> Result<BTreeMap<String, (f32, f32)>> {
    let from_hist = |f: &dyn Fn(&ranges::Histogram, ranges::MinMax) -> (f32, f32)| {
        let hists = hists.ok_or_else(|| anyhow!("{} needs histograms", options.method))?;
        Ok::<_, anyhow::Error>(
            hists
                .iter()
                .map(|(t, h)| (t.clone(), f(h, seen[t])))
                .collect(),
        )
    };
    match options.method {
        Method::MinMax => Ok(seen
            .iter()
            .map(|(t, m)| {
                let r = if options.symmetric {
                    (-m.absmax(), m.absmax())
                } else {
                    (m.min, m.max)
                };
                (t.clone(), r)
            })
            .collect()),
        Method::Percentile(p) => from_hist(&|h, m| ranges::percentile(h, m, p)),
        Method::Entropy { quantized_bins, .. } => {
            from_hist(&|h, m| ranges::entropy(h, m, quantized_bins))
        }
        Method::Mse => from_hist(&|h, m| ranges::mse(h, m, grid)),
    }
}
