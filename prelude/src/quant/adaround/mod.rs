//! AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
//! Quantization"): instead of rounding every weight to its nearest grid point, learn for each
//! one whether to round up or down so that each layer's output changes least.
//!
//! ```ignore
//! let train = Dataset::bundled(&root, Bundled::Train4000)?;
//! let float = workbench("resnet8_float")?;
//! let m = calibrate("resnet8_float", &train, &CalibOptions {
//!     weight_bits: 4, per_channel: true, ..Default::default() })?;
//! let a = adaround(&m, &float, &train, &AdaRoundOptions::default())?;   // a version of m
//! quick(&a, &test, 100)?;
//! ```
//!
//! Layer after layer in network order, each quantized Conv/Gemm weight `W` gets a continuous
//! variable `V` per element and the soft weights `W̃ = s·(clip(⌊W/s⌋ + h(V) + z, q_min, q_max) − z)`
//! on the version's own grid (scale `s`, zero point `z`, a `bits`-bit range), with the
//! rectified sigmoid `h`. Adam minimizes `‖W x − W̃ x‖²` (summed over output channels, averaged
//! over positions) on the layer's input `x` captured from the quantized model as rounded so far,
//! plus `λ Σ (1 − |2h(V) − 1|^β)`, which pushes every `h` to 0 or 1; β anneals from 20 to 2 after
//! a warm start without it. The learned integers are `⌊W/s⌋ + [V ≥ 0]`, written into the version
//! before the next layer's input is captured. `W` comes from `float`, the float model the
//! version was made from (the equalized one after [`equalize`](super::calibrate::equalize)).
//! Activation ranges, biases and every other parameter stay as they are.
//!
//! TorchScript models (quantized FX modules, e.g. `resnet8_int8_torch` after `with_bits`) are
//! rounded the same way: each packed conv/linear weight's input is captured as the root graph
//! passes it to the module, the float weights come from the float ONNX model the module was made
//! from (`resnet8_float`), matched by module name, and the learned integers are repacked with
//! the weight's scales and settings (see `torch.rs`).
//!
//! The error is computed through the Gram matrix of the layer's input patches (see `learn.rs`),
//! so every iteration sees every sampled image: the learning itself is deterministic, and
//! `seed` chooses which images of each class are sampled.

mod learn;
mod onnx;
mod torch;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use ndarray::{Array2, ArrayD, ArrayView2, IxDyn};
use serde::Serialize;

use super::calibrate::params::Grid;
use super::calibrate::Progress;
use super::capture::Memo;
use super::{QuantModel, QuantParam};
use crate::data::{Dataset, NUM_CLASSES};
use crate::display::{escape_html, MimeBundle, ProgressBar, Rich};
use crate::model::{Framework, Model};
use learn::{Gram, Op, Problem};

/// What [`adaround`] learns with. The defaults are the paper's and AIMET's: 10,000 iterations
/// per layer, λ = 0.01, β from 20 to 2 after a warm start of 20 %, Adam at 0.001; and 500
/// images (50 per class), at the low end of the 500–2,000 AdaRound is usually given (each
/// iteration uses all of them, and more images cost only capture time, not iteration time).
#[derive(Debug, Clone)]
pub struct AdaRoundOptions {
    /// The weights' grid width, 2 to 8 bits; `None`: per weight, the narrowest grid that holds
    /// its integers as they are (what `calibrate` with `weight_bits`, or `with_bits`, made).
    pub weight_bits: Option<u32>,
    /// Adam steps per layer (at least 1).
    pub iterations: usize,
    /// Images per class of `data` the layers' inputs are taken from (at least 1).
    pub per_class: usize,
    /// λ, the weight of the rounding regularizer (≥ 0).
    pub reg_weight: f64,
    /// β at the end of the warm start and at the last iteration (both > 0, start ≥ end).
    pub beta: (f64, f64),
    /// Fraction of the iterations before the regularizer starts (0 ≤ warm start < 1).
    pub warm_start: f64,
    /// Adam's learning rate (> 0).
    pub learning_rate: f64,
    /// Chooses which `per_class` images of each class are used.
    pub seed: u64,
    /// Show a progress bar per layer in the notebook.
    pub progress: bool,
}

impl Default for AdaRoundOptions {
    fn default() -> Self {
        AdaRoundOptions {
            weight_bits: None,
            iterations: 10_000,
            per_class: 50,
            reg_weight: 0.01,
            beta: (20.0, 2.0),
            warm_start: 0.2,
            learning_rate: 1e-3,
            seed: 0,
            progress: false,
        }
    }
}

impl AdaRoundOptions {
    /// Errors name the option and the values it allows.
    pub fn check(&self) -> Result<()> {
        if let Some(b) = self.weight_bits {
            if !(2..=8).contains(&b) {
                bail!("weight_bits = {b} is out of range: 2 to 8 bits (or None: as stored)");
            }
        }
        if self.iterations == 0 {
            bail!("iterations = 0 is out of range: at least 1 iteration per layer");
        }
        if self.per_class == 0 {
            bail!("per_class = 0 is out of range: at least 1 image per class");
        }
        if !(self.reg_weight.is_finite() && self.reg_weight >= 0.0) {
            bail!(
                "reg_weight = {} is out of range: a finite λ ≥ 0",
                self.reg_weight
            );
        }
        let (b0, b1) = self.beta;
        if !(b0.is_finite() && b1 > 0.0 && b0 >= b1) {
            bail!("beta = ({b0}, {b1}) is out of range: start ≥ end > 0");
        }
        if !(0.0..1.0).contains(&self.warm_start) {
            bail!(
                "warm_start = {} is out of range: 0 ≤ warm start < 1 (a fraction of the iterations)",
                self.warm_start
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            bail!(
                "learning_rate = {} is out of range: a finite rate > 0",
                self.learning_rate
            );
        }
        Ok(())
    }
}

/// What AdaRound did to one weight.
#[derive(Debug, Clone, Serialize)]
pub struct AdaRoundLayer {
    /// The weight (its parameter row).
    pub weight: String,
    /// The Conv/Gemm node reading it (TorchScript: the quantized conv/linear module).
    pub node: String,
    /// The grid's width.
    pub bits: u32,
    /// Elements of the weight.
    pub elements: usize,
    /// Elements rounded otherwise than to nearest.
    pub changed: usize,
    /// The layer's output error with nearest rounding, on its sampled input: squared error
    /// summed over output channels, averaged over positions.
    pub nearest_error: f64,
    /// The same with the learned rounding.
    pub learned_error: f64,
    /// Seconds capturing the layer's input and building its Gram matrix.
    pub capture_seconds: f64,
    /// Seconds learning.
    pub learn_seconds: f64,
}

/// The result of [`adaround_with`]: the rounded version and what happened per layer.
#[derive(Debug, Clone, Serialize)]
pub struct AdaRound {
    /// The model rounded.
    pub model: String,
    /// Images the layers' inputs were taken from.
    pub images: usize,
    /// Iterations per layer.
    pub iterations: usize,
    /// Seconds in all.
    pub seconds: f64,
    /// One row per weight, in network order.
    pub layers: Vec<AdaRoundLayer>,
    /// The rounded model: one version of the model given (one edit).
    #[serde(skip)]
    pub version: QuantModel,
}

/// A new version of `m` (a QDQ ONNX or quantized TorchScript model) whose weights are rounded by
/// AdaRound (see the module) instead of to nearest; `float` is the float ONNX model `m` was made
/// from (equalized when `m` was), `data` the images to learn on (training images, not the test
/// set). Bad options are errors naming the option; an interrupt stops it between iterations and
/// changes nothing.
pub fn adaround(
    m: &QuantModel,
    float: &QuantModel,
    data: &Dataset,
    options: &AdaRoundOptions,
) -> Result<QuantModel> {
    Ok(adaround_with(m, float, data, options, None)?.version)
}

/// [`adaround`], with what it did per layer and times; `progress` is called as iterations go
/// (`"adaround <weight>"`, done, total); without it, `options.progress` shows a notebook
/// progress bar per layer.
pub fn adaround_with(
    m: &QuantModel,
    float: &QuantModel,
    data: &Dataset,
    options: &AdaRoundOptions,
    progress: Option<Progress<'_>>,
) -> Result<AdaRound> {
    let start = Instant::now();
    let layers = prepare(m, float, options)?;
    let indices = sample(data, options.per_class, options.seed)?;
    let mut v = m.clone();
    let mut rows = Vec::new();
    for layer in &layers {
        let ints = v.weights(&layer.param.tensor)?.int;
        let (bits, lo, hi) = grid(&layer.param, ints.as_slice().unwrap_or(&[]), options)?;
        let t0 = Instant::now();
        let gram = layer.gram(&v, data, &indices)?;
        let capture_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let (values, learned) = layer.learn(lo, hi, gram.view(), options, progress)?;
        v = v.with_weight_int(&layer.param.tensor, &values)?;
        rows.push(AdaRoundLayer {
            weight: layer.param.tensor.clone(),
            node: layer.node.clone(),
            bits,
            elements: learned.ints.len(),
            changed: learned.changed,
            nearest_error: learned.nearest_error,
            learned_error: learned.learned_error,
            capture_seconds,
            learn_seconds: t1.elapsed().as_secs_f64(),
        });
    }
    let version = v.squashed_onto(
        m,
        format!(
            "AdaRound of {} weights ({} iterations, {} images)",
            rows.len(),
            options.iterations,
            indices.len()
        ),
    )?;
    Ok(AdaRound {
        model: m.name().to_string(),
        images: indices.len(),
        iterations: options.iterations,
        seconds: start.elapsed().as_secs_f64(),
        layers: rows,
        version,
    })
}

/// Each quantized Conv/Gemm weight of `base` rounded by AdaRound at each width of `bits`, on the
/// grid `base.with_bits(weight, b)` gives it, as integers in the weight's stored layout; every
/// weight learned on its input in `base` (the other weights as they are there). What
/// [`mixed_precision`](super::calibrate::mixed_precision) puts in place of nearest rounding
/// when it lowers a weight. `progress` as for [`adaround_with`].
pub(crate) fn rounded_at_bits(
    base: &QuantModel,
    float: &QuantModel,
    data: &Dataset,
    bits: &[u32],
    options: &AdaRoundOptions,
    progress: Option<Progress<'_>>,
) -> Result<BTreeMap<(String, u32), ArrayD<i32>>> {
    let layers = prepare(base, float, options)?;
    let indices = sample(data, options.per_class, options.seed)?;
    let mut out = BTreeMap::new();
    for layer in &layers {
        let tensor = &layer.param.tensor;
        let gram = layer.gram(base, data, &indices)?;
        for &b in bits {
            let narrow = base.with_bits(tensor, b)?;
            let param = narrow.param(tensor)?.clone();
            let ints = narrow.weights(tensor)?.int;
            let at = AdaRoundOptions {
                weight_bits: Some(b),
                ..options.clone()
            };
            let (_, lo, hi) = grid(&param, ints.as_slice().unwrap_or(&[]), &at)?;
            let layer = Layer {
                param,
                ..layer.clone()
            };
            let (values, _) = layer.learn(lo, hi, gram.view(), &at, progress)?;
            out.insert((tensor.clone(), b), values);
        }
    }
    Ok(out)
}

/// Checks the options and the two models; the layers of `m` to round, in network order.
fn prepare(m: &QuantModel, float: &QuantModel, options: &AdaRoundOptions) -> Result<Vec<Layer>> {
    options.check()?;
    crate::torch::init_runtime()?;
    if m.framework() == Framework::Torch {
        return torch::layers(m, float);
    }
    if float.framework() == Framework::Torch {
        bail!(
            "`{}` is TorchScript; the float reference of QDQ ONNX model `{}` is the float ONNX \
             model it was made from",
            float.name(),
            m.name()
        );
    }
    let proto = m.proto()?.clone();
    m.check_float_reference(float, &proto)?;
    onnx::layers(m, float.proto()?, &proto)
}

/// One quantized Conv/Gemm weight to round.
#[derive(Clone)]
struct Layer {
    node: String,
    param: QuantParam,
    /// The tensor the node reads (dequantized), captured as its input; TorchScript: the module
    /// whose input it is (see `torch.rs`).
    input: String,
    op: Op,
    /// The float weights, in the parameter's layout.
    float: Vec<f32>,
    /// Rows (output channels) and columns of the weight matrix.
    rows: usize,
    cols: usize,
    /// A Gemm weight stored `[K, O]`: the matrix is its transpose.
    transposed: bool,
}

impl Layer {
    /// The index in the stored layout of element `i` of the `[rows, cols]` matrix.
    fn stored(&self, i: usize) -> usize {
        if self.transposed {
            (i % self.cols) * self.rows + i / self.cols
        } else {
            i
        }
    }

    /// The weight matrix and its elements' grids.
    fn problem(&self, lo: i64, hi: i64) -> Problem {
        let n = self.rows * self.cols;
        let p = &self.param;
        let at = |i: usize| crate::quant::version::channel(self.stored(i), &p.shape, p.axis);
        Problem {
            rows: self.rows,
            cols: self.cols,
            w: (0..n).map(|i| self.float[self.stored(i)]).collect(),
            scale: (0..n).map(|i| p.scales[at(i)]).collect(),
            zero: (0..n).map(|i| p.zero_points[at(i)] as f32).collect(),
            lo: vec![lo as f32; n],
            hi: vec![hi as f32; n],
        }
    }

    /// `mean p pᵀ` over the patches of this layer's input in `v`, on images `indices` of `data`.
    fn gram(&self, v: &QuantModel, data: &Dataset, indices: &[usize]) -> Result<Array2<f32>> {
        let mut gram = Gram::new();
        let torch = (v.framework() == Framework::Torch)
            .then(|| torch::Inputs::of(v))
            .transpose()?;
        for chunk in indices.chunks(super::calibrate::stats::BATCH) {
            let batch = data.nhwc_batch(chunk);
            if let Some(inputs) = &torch {
                gram.add_tensor(&self.op, &inputs.input(batch.view(), &self.input)?)?;
                continue;
            }
            let captured = v.captured(batch.view(), &[self.input.as_str()], Memo::Read)?;
            let x = captured
                .get(&self.input)
                .ok_or_else(|| anyhow!("`{}` was not captured", self.input))?;
            gram.add(&self.op, x.view()?)?;
        }
        gram.mean()
    }

    /// The rounding learned on the grid `lo..=hi` for the input Gram matrix `gram`: the
    /// integers in the stored layout, and what learning gave. A progress bar (or `progress`)
    /// follows the iterations; an interrupt stops it.
    fn learn(
        &self,
        lo: i64,
        hi: i64,
        gram: ArrayView2<'_, f32>,
        options: &AdaRoundOptions,
        progress: Option<Progress<'_>>,
    ) -> Result<(ArrayD<i32>, learn::Learned)> {
        let what = format!("adaround {}", self.param.tensor);
        let bar = (progress.is_none() && options.progress)
            .then(|| ProgressBar::new(&what, options.iterations));
        let total = options.iterations;
        let mut tick = |it: usize| -> Result<()> {
            crate::runtime::interrupt::check()?;
            if it.is_multiple_of(50) {
                if let Some(bar) = &bar {
                    bar.set(it);
                }
                if let Some(p) = progress {
                    p(&what, it, total);
                }
            }
            Ok(())
        };
        let threads = crate::onnx::thread_count();
        let problem = self.problem(lo, hi);
        let learned = learn::learn(&problem, gram, options, threads, &mut tick)?;
        if let Some(bar) = &bar {
            bar.set(total);
        }
        if let Some(p) = progress {
            p(&what, total, total);
        }
        let values =
            ArrayD::from_shape_vec(IxDyn(&self.param.shape), self.unpermute(&learned.ints))?;
        Ok((values, learned))
    }

    /// Matrix-ordered values back in the stored layout.
    fn unpermute(&self, values: &[i32]) -> Vec<i32> {
        let mut out = vec![0; values.len()];
        for (i, &x) in values.iter().enumerate() {
            out[self.stored(i)] = x;
        }
        out
    }
}

/// The grid (bits, lowest and highest integer) of weight `p` holding `ints`: `options`' width
/// (which must fit `p`'s stored type), or the narrowest that holds them. Symmetric (a signed
/// type with zero points 0) grids drop the most negative value, as `with_bits` and `calibrate`
/// make them.
fn grid(p: &QuantParam, ints: &[i32], options: &AdaRoundOptions) -> Result<(u32, i64, i64)> {
    let symmetric = p.dtype.signed() && p.zero_points.iter().all(|&z| z == 0);
    let range = |bits: u32| {
        Grid {
            dtype: p.dtype,
            bits,
            symmetric,
        }
        .qrange()
    };
    let holds = |(lo, hi): (i64, i64)| ints.iter().all(|&q| (lo..=hi).contains(&(q as i64)));
    match options.weight_bits {
        Some(bits) => {
            p.dtype
                .check_bits(&format!("weight_bits for `{}`", p.tensor), bits)?;
            let (lo, hi) = range(bits);
            if !holds((lo, hi)) {
                bail!(
                    "`{}` holds integers outside the {bits}-bit grid {lo}..={hi}: re-quantize it \
                     to {bits} bits first (`with_bits`, or `calibrate` with weight_bits = {bits}), \
                     or leave weight_bits = None",
                    p.tensor
                );
            }
            Ok((bits, lo, hi))
        }
        None => Ok(p
            .dtype
            .bit_widths()
            .map(|b| (b, range(b)))
            .find(|&(_, r)| holds(r))
            .map(|(b, (lo, hi))| (b, lo, hi))
            .unwrap_or_else(|| {
                let (lo, hi) = p.dtype.range();
                (p.dtype.bits(), lo, hi)
            })),
    }
}

/// `per_class` images of each class of `data`, chosen by `seed` (sorted).
fn sample(data: &Dataset, per_class: usize, seed: u64) -> Result<Vec<usize>> {
    data.stratified(per_class)?; // names a class with too few images
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = Vec::with_capacity(per_class * NUM_CLASSES);
    for class in 0..NUM_CLASSES as u8 {
        let mut of: Vec<usize> = (0..data.len())
            .filter(|&i| data.label(i) == class)
            .collect();
        for k in 0..per_class {
            let j = k + (next() % (of.len() - k) as u64) as usize;
            of.swap(k, j);
        }
        out.extend_from_slice(&of[..per_class]);
    }
    out.sort_unstable();
    Ok(out)
}

impl AdaRound {
    /// As JSON (what `qplay adaround --json` reports per layer).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl AdaRound {
    fn headline(&self) -> String {
        format!(
            "AdaRound of {} weights, {} iterations each, on {} images, in {:.1} s",
            self.layers.len(),
            self.iterations,
            self.images,
            self.seconds
        )
    }
}

impl AdaRoundLayer {
    /// weight, bits, changed, output error nearest and learned, capture and learn seconds.
    fn cells(&self) -> [String; 7] {
        [
            self.weight.clone(),
            self.bits.to_string(),
            format!("{}/{}", self.changed, self.elements),
            format!("{:.4e}", self.nearest_error),
            format!("{:.4e}", self.learned_error),
            format!("{:.1}", self.capture_seconds),
            format!("{:.1}", self.learn_seconds),
        ]
    }
}

impl fmt::Display for AdaRound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.model, self.headline())?;
        for l in &self.layers {
            let [w, bits, changed, near, learned, cap, learn] = l.cells();
            writeln!(
                f,
                "  {w:<20} {bits} bits  {changed:>13} changed  output error {near} → {learned}  \
                 ({cap} s + {learn} s)"
            )?;
        }
        Ok(())
    }
}

impl Rich for AdaRound {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-adaround\"><p><b>{}</b>: {}</p><table><thead><tr><th>weight</th>\
             <th>bits</th><th>changed</th><th>output error, nearest</th><th>learned</th>\
             <th>capture s</th><th>learn s</th></tr></thead><tbody><tr>",
            escape_html(&self.model),
            self.headline()
        );
        let rows: Vec<String> = self
            .layers
            .iter()
            .map(|l| {
                l.cells()
                    .iter()
                    .map(|c| format!("<td>{}</td>", escape_html(c)))
                    .collect()
            })
            .collect();
        html += &rows.join("</tr><tr>");
        html += "</tr></tbody></table></div>";
        let mut b = MimeBundle::new();
        b.insert("text/html".into(), html.into());
        b.insert("text/plain".into(), self.to_string().into());
        b
    }
}

crate::evcxr_display_via_rich!(AdaRound);
