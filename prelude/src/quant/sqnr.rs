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

use anyhow::{bail, Result};
use serde::Serialize;

use super::{onnx_graph, QuantModel};
use crate::data::Dataset;
use crate::display::{escape_html, MimeBundle, Rich};
use crate::model::Model;

const DQ_SUFFIX: &str = "_DequantizeLinear_Output";
const DQ_SUFFIX_1: &str = "_DequantizeLinear_Output_1";
const Q_INPUT_SUFFIX: &str = "_QuantizeLinear_Input";

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

/// The pairs (name, before QDQ, after QDQ) onnxruntime's matching finds among `names`.
pub fn matching_pairs(names: &[String]) -> Vec<(String, String, String)> {
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    for name in names {
        let pair = if let Some(stem) = name.strip_suffix(Q_INPUT_SUFFIX) {
            has(stem).then(|| (stem.to_string(), name.clone(), stem.to_string()))
        } else if let Some(stem) = name.strip_suffix(DQ_SUFFIX) {
            has(stem).then(|| (stem.to_string(), stem.to_string(), name.clone()))
        } else if let Some(stem) = name.strip_suffix(DQ_SUFFIX_1) {
            has(stem).then(|| (stem.to_string(), stem.to_string(), name.clone()))
        } else {
            None
        };
        if let Some(p) = pair {
            // Later matches replace earlier ones, as the dict assignment does.
            pairs.retain(|q| q.0 != p.0);
            pairs.push(p);
        }
    }
    pairs
}

/// Per-layer SQNR of `quant` against `float` on the images `indices` of `data`, in batches of
/// 100, accumulated in f64.
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
    // Sums per pair: Σpre², Σ(pre−post)², Σfloat², Σ(float−post)².
    let mut sums = vec![[0f64; 4]; pairs.len()];
    for chunk in indices.chunks(crate::eval::DEFAULT_BATCH) {
        let batch = data.nhwc_batch(chunk);
        let q = quant.capture(batch.view(), &[])?;
        let f = float.capture(batch.view(), &[])?;
        for (k, (name, pre, post)) in pairs.iter().enumerate() {
            let pre = q.get(pre)?;
            let post = q.get(post)?;
            if pre.len() != post.len() {
                bail!("`{name}`: tensors before and after QDQ differ in size");
            }
            for (&a, &b) in pre.iter().zip(post.iter()) {
                sums[k][0] += a as f64 * a as f64;
                let d = (a - b) as f64;
                sums[k][1] += d * d;
            }
            if let Some(fl) = f.tensors.get(name) {
                if fl.len() != post.len() {
                    bail!("`{name}`: float and quantized tensors differ in size");
                }
                for (&a, &b) in fl.iter().zip(post.iter()) {
                    sums[k][2] += a as f64 * a as f64;
                    let d = (a - b) as f64;
                    sums[k][3] += d * d;
                }
            }
        }
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
