//! Per-layer quantization error, defined exactly as onnxruntime's
//! `onnxruntime.quantization.qdq_loss_debug` defines it.
//!
//! - Tensors are paired by name as `create_activation_matching` pairs them: in the quantized
//!   model, `X` (before QDQ) with `X_DequantizeLinear_Output` (or `…_Output_1`) after it, and
//!   `X_QuantizeLinear_Input` with `X`; the float model's tensor `X` joins the pair.
//! - SQNR(x, y) = 20·log10(max(‖x‖, ε) / max(‖x − y‖, ε)) dB over all images at once, ε the
//!   float64 machine epsilon (`compute_signal_to_quantization_noice_ratio`).
//! - `qdq_err` = SQNR(before QDQ, after QDQ) in the quantized model; `xmodel_err` =
//!   SQNR(float model's tensor, quantized model's tensor after QDQ).
//!
//! Reading the numbers: onnxruntime's quantizer folds a ReLU into the quantization range of
//! the Conv/Add before it, and the quantized tensor then carries the ReLU's name. So for a
//! ReLU output, "before QDQ" is the *un-ReLU'd* Conv/Add output while "after QDQ" is clipped
//! at zero: `qdq_err` counts the ReLU itself as error and comes out low (0.5–5 dB on
//! ResNet-8), while `xmodel_err` against the float model's ReLU output is the meaningful
//! number (about 18–28 dB). [`LayerError::relu_folded`] flags these rows.

use std::fmt;

use anyhow::{anyhow, bail, Result};
use ndarray::ArrayViewD;
use serde::Serialize;

pub use super::capture::matching_pairs;
use super::capture::Memo;
use super::{onnx_graph, QuantModel};
use crate::data::Dataset;
use crate::display::{escape_html, MimeBundle, Rich};
use crate::model::Model;

/// SQNR of `y` against the reference `x`, in dB, from the sums Σx² and Σ(x−y)².
pub fn sqnr_from_sums(signal_sq: f64, noise_sq: f64) -> f64 {
    let eps = f64::EPSILON;
    20.0 * (signal_sq.sqrt().max(eps) / noise_sq.sqrt().max(eps)).log10()
}

/// SQNR of `y` against the reference `x`, in dB (onnxruntime's definition).
pub fn sqnr_db(x: &[f32], y: &[f32]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (&a, &b) in x.iter().zip(y) {
        s += a as f64 * a as f64;
        let d = (a - b) as f64;
        n += d * d;
    }
    sqnr_from_sums(s, n)
}

/// The error of one quantized tensor.
#[derive(Debug, Clone, Serialize)]
pub struct LayerError {
    /// The tensor's name (as in the float graph).
    pub tensor: String,
    /// SQNR before vs after its QDQ pair in the quantized model, dB.
    pub qdq_err: f64,
    /// SQNR of the float model's tensor vs the quantized model's (after QDQ), dB; absent
    /// when the float model has no tensor of that name.
    pub xmodel_err: Option<f64>,
    /// The float model computes this tensor with a Relu, the quantized model without (the
    /// ReLU is folded into the quantization range; see the module docs).
    pub relu_folded: bool,
}

/// Per-layer errors of a quantized model against its float model.
#[derive(Debug, Clone, Serialize)]
pub struct LayerErrors {
    /// Float model name.
    pub float_model: String,
    /// Quantized model name.
    pub quant_model: String,
    /// Images compared.
    pub images: usize,
    /// One row per paired tensor, in graph order.
    pub rows: Vec<LayerError>,
}

/// Per-layer SQNR of `quant` against `float` on the images `indices` of `data`, in batches of
/// 100, accumulated in f64 in the order of the elements (the pairs are summed on all cores,
/// each pair by one thread, so the sums do not depend on the thread count). Both models are
/// captured through their memos: the float model's tensors of a batch are captured once and
/// kept with it, and a quantized version's histogram on the same batch shares its run.
pub fn layer_errors(
    float: &QuantModel,
    quant: &QuantModel,
    data: &Dataset,
    indices: &[usize],
) -> Result<LayerErrors> {
    if indices.is_empty() {
        bail!("layer_errors needs at least one image");
    }
    let (fp, qp) = (float.proto()?, quant.proto()?);
    let names = quant.capturable();
    let pairs = matching_pairs(&names);
    let float_names = float.capturable();
    let quant_wanted: Vec<&str> = pairs
        .iter()
        .flat_map(|(_, pre, post)| [pre.as_str(), post.as_str()])
        .collect();
    let float_wanted: Vec<&str> = pairs
        .iter()
        .map(|(name, _, _)| name.as_str())
        .filter(|name| float_names.iter().any(|f| f == name))
        .collect();
    // Sums per pair: Σpre², Σ(pre−post)², Σfloat², Σ(float−post)².
    let mut sums = vec![[0f64; 4]; pairs.len()];
    for chunk in indices.chunks(crate::eval::DEFAULT_BATCH) {
        crate::runtime::interrupt::check()?;
        let batch = data.nhwc_batch(chunk);
        let q = quant.captured(batch.view(), &quant_wanted, Memo::Take)?;
        let f = float.captured(batch.view(), &float_wanted, Memo::Keep)?;
        let mut work = Vec::with_capacity(pairs.len());
        for (name, pre, post) in &pairs {
            let get = |t: &str| {
                q.get(t)
                    .ok_or_else(|| anyhow!("`{t}` was not captured from `{}`", quant.name()))
            };
            let (pre, post) = (get(pre)?.view()?, get(post)?.view()?);
            if pre.len() != post.len() {
                bail!("`{name}`: tensors before and after QDQ differ in size");
            }
            let fl = f.get(name).map(|fl| fl.view()).transpose()?;
            if fl.as_ref().is_some_and(|fl| fl.len() != post.len()) {
                bail!("`{name}`: float and quantized tensors differ in size");
            }
            work.push((pre, post, fl));
        }
        sums = pair_sums_all(&work, &sums);
    }
    let rows = pairs
        .iter()
        .zip(&sums)
        .map(|((name, _, _), s)| {
            let in_float = float_names.contains(name);
            LayerError {
                tensor: name.clone(),
                qdq_err: sqnr_from_sums(s[0], s[1]),
                xmodel_err: in_float.then(|| sqnr_from_sums(s[2], s[3])),
                relu_folded: in_float
                    && onnx_graph::producer_op(fp, name).as_deref() == Some("Relu")
                    && onnx_graph::producer_op(qp, name).as_deref() != Some("Relu"),
            }
        })
        .collect();
    Ok(LayerErrors {
        float_model: float.name().to_string(),
        quant_model: quant.name().to_string(),
        images: indices.len(),
        rows,
    })
}

/// One pair's tensors of one batch: before QDQ, after QDQ, the float model's.
type PairTensors<'a> = (
    ArrayViewD<'a, f32>,
    ArrayViewD<'a, f32>,
    Option<ArrayViewD<'a, f32>>,
);

/// [`pair_sums`] of every pair, going on from `sums`, the pairs spread over the prelude's
/// threads (the largest first, each to the thread with the fewest elements so far).
fn pair_sums_all(work: &[PairTensors<'_>], sums: &[[f64; 4]]) -> Vec<[f64; 4]> {
    let threads = crate::onnx::thread_count().clamp(1, work.len().max(1));
    if threads == 1 {
        return work
            .iter()
            .zip(sums)
            .map(|(w, s)| pair_sums(w, *s))
            .collect();
    }
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(work[k].1.len()));
    let mut parts: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); threads];
    for k in order {
        if let Some(part) = parts.iter_mut().min_by_key(|p| p.0) {
            part.0 += work[k].1.len();
            part.1.push(k);
        }
    }
    let mut out = sums.to_vec();
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|(_, ks)| {
                scope.spawn(move || {
                    ks.into_iter()
                        .map(|k| (k, pair_sums(&work[k], sums[k])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (k, s) in h.join().expect("a summing thread panicked") {
                out[k] = s;
            }
        }
    });
    out
}

/// One pair's Σpre², Σ(pre−post)², Σfloat², Σ(float−post)², going on from `s` with one more
/// batch: each sum adds the batch's terms in f64, one by one in the elements' logical order
/// (what `ArrayD::iter` visits), as a single-threaded loop over the batches would. (One pass
/// for all four: independent sums, so interleaving them changes no result.)
fn pair_sums((pre, post, float): &PairTensors<'_>, mut s: [f64; 4]) -> [f64; 4] {
    let (pre, post) = (pre.as_standard_layout(), post.as_standard_layout());
    let (pre, post) = (
        pre.as_slice().unwrap_or(&[]),
        post.as_slice().unwrap_or(&[]),
    );
    let float = float.as_ref().map(|f| f.as_standard_layout());
    match float.as_ref().and_then(|f| f.as_slice()) {
        Some(float) => {
            for ((&a, &b), &f) in pre.iter().zip(post).zip(float) {
                s[0] += a as f64 * a as f64;
                let d = (a - b) as f64;
                s[1] += d * d;
                s[2] += f as f64 * f as f64;
                let d = (f - b) as f64;
                s[3] += d * d;
            }
        }
        None => {
            for (&a, &b) in pre.iter().zip(post) {
                s[0] += a as f64 * a as f64;
                let d = (a - b) as f64;
                s[1] += d * d;
            }
        }
    }
    s
}

impl LayerErrors {
    /// The rows as a JSON list of `{"tensor", "qdq_err", "xmodel_err", "relu_folded"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.rows).unwrap_or_default()
    }
}

impl fmt::Display for LayerErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "SQNR of {} against {} on {} images (dB)",
            self.quant_model, self.float_model, self.images
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<24} qdq_err {:>7.2}  xmodel_err {:>7}{}",
                r.tensor,
                r.qdq_err,
                r.xmodel_err.map_or("—".into(), |x| format!("{x:.2}")),
                if r.relu_folded { "  (ReLU folded)" } else { "" }
            )?;
        }
        Ok(())
    }
}

impl Rich for LayerErrors {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-sqnr\"><p>SQNR of <b>{}</b> against <b>{}</b> on {} images, as \
             onnxruntime's <code>qdq_loss_debug</code> computes it (higher is better).</p><table>\
             <thead><tr><th>tensor</th><th>qdq_err (dB)</th><th>xmodel_err (dB)</th><th></th>\
             </tr></thead><tbody>",
            escape_html(&self.quant_model),
            escape_html(&self.float_model),
            self.images
        );
        for r in &self.rows {
            html += &format!(
                "<tr><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&r.tensor),
                r.qdq_err,
                r.xmodel_err.map_or("—".into(), |x| format!("{x:.2}")),
                if r.relu_folded { "ReLU folded ¹" } else { "" }
            );
        }
        html += "</tbody></table><p><small>¹ The quantizer folds this ReLU into the \
                 quantization range of the Conv/Add before it: <i>before QDQ</i> is the \
                 un-ReLU'd tensor, <i>after QDQ</i> is clipped at 0, so qdq_err counts the ReLU \
                 itself as error. Read xmodel_err (against the float model's ReLU output) for \
                 these rows.</small></p></div>";
        let mut b = MimeBundle::new();
        b.insert("text/html".into(), html.into());
        b.insert("text/plain".into(), self.to_string().into());
        b
    }
}

crate::evcxr_display_via_rich!(LayerErrors);
