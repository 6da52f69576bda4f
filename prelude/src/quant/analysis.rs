//! Analyses built on versions and the evaluation cache: per-tensor sensitivity sweeps, a
//! parameter sweep, cross-framework agreement and a comparison table of models.
//!
//! Every evaluation goes through the persistent cache ([`super::cache`]), so repeating a sweep
//! (or part of one) costs lookups, not model runs. Each loop checks for a user interrupt
//! between its evaluations (and each evaluation between its batches).

use std::fmt;

use anyhow::{bail, Result};
use serde::Serialize;

use super::cache::{evaluate_cached, file_hash, Store};
use super::{fmt_num, QDtype, QuantModel, Role};
use crate::data::Dataset;
use crate::display::{escape_html, MimeBundle, ProgressBar, Rich};
use crate::eval::{EvalOptions, Evaluation};
use crate::model::Model;

/// What a sweep changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    /// Every scale of the tensor multiplied by this factor.
    ScaleTimes(f32),
    /// A weight re-quantized to this many bits inside its stored type (`with_bits`).
    Bits(u32),
    /// A weight re-quantized into this stored type, on its full width (`with_type`).
    Type(QDtype),
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Knob::ScaleTimes(k) => write!(f, "scale × {}", fmt_num(*k as f64)),
            Knob::Bits(n) => write!(f, "{n} bits"),
            Knob::Type(t) => write!(f, "{t}"),
        }
    }
}

impl QuantModel {
    /// A new version with `knob` applied to `tensor`.
    pub fn with_knob(&self, tensor: &str, knob: Knob) -> Result<QuantModel> {
        match knob {
            Knob::ScaleTimes(k) => {
                let scales: Vec<f32> = self.param(tensor)?.scales.iter().map(|s| s * k).collect();
                self.with_scales(tensor, &scales)
            }
            Knob::Bits(n) => self.with_bits(tensor, n),
            Knob::Type(t) => self.with_type(tensor, t),
        }
    }
}

/// One row of a sensitivity sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SensitivityRow {
    /// The tensor changed.
    pub tensor: String,
    /// Its role.
    pub role: Role,
    /// Accuracy with the change (0..1).
    pub accuracy: f64,
    /// Base accuracy − this accuracy, in percentage points (positive: worse).
    pub drop_pp: f64,
    /// Whether the result came from the evaluation cache.
    pub cached: bool,
}

/// A per-tensor sensitivity sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Sensitivity {
    /// The model.
    pub model: String,
    /// What was changed, one tensor at a time.
    pub knob: Knob,
    /// Images per evaluation.
    pub images: usize,
    /// Accuracy of the unchanged model.
    pub base_accuracy: f64,
    /// One row per tensor, most sensitive first.
    pub rows: Vec<SensitivityRow>,
}

/// A quick evaluation for a sweep: kept on disk, since a sweep is worth keeping.
fn quick_cached(m: &QuantModel, data: &Dataset, indices: &[usize]) -> Result<(Evaluation, bool)> {
    evaluate_cached(
        m,
        &m.cache_key()?,
        data,
        indices,
        true,
        &EvalOptions::default(),
        Store::Disk,
    )
}

/// Applies `knob` to each quantized tensor it fits (weights for `Bits`; every tensor for
/// `ScaleTimes`), one at a time, and measures the accuracy drop on the first `per_class` images
/// of each class. With `progress`, a progress bar is shown in the notebook.
pub fn sensitivity(
    m: &QuantModel,
    data: &Dataset,
    per_class: usize,
    knob: Knob,
    progress: bool,
) -> Result<Sensitivity> {
    let indices = data.stratified(per_class)?;
    let base = quick_cached(m, data, &indices)?.0.accuracy();
    let targets: Vec<_> = m
        .quant_params()
        .rows
        .into_iter()
        .filter(|p| match knob {
            Knob::Bits(_) | Knob::Type(_) => p.role == Role::Weight,
            Knob::ScaleTimes(_) => true,
        })
        .collect();
    let bar = progress.then(|| ProgressBar::new(&format!("sensitivity: {knob}"), targets.len()));
    let mut rows = Vec::new();
    for (i, p) in targets.iter().enumerate() {
        crate::runtime::interrupt::check()?;
        let v = m.with_knob(&p.tensor, knob)?;
        let (e, cached) = quick_cached(&v, data, &indices)?;
        rows.push(SensitivityRow {
            tensor: p.tensor.clone(),
            role: p.role,
            accuracy: e.accuracy(),
            drop_pp: 100.0 * (base - e.accuracy()),
            cached,
        });
        if let Some(bar) = &bar {
            bar.set(i + 1);
        }
    }
    rows.sort_by(|a, b| b.drop_pp.total_cmp(&a.drop_pp));
    Ok(Sensitivity {
        model: m.name().to_string(),
        knob,
        images: indices.len(),
        base_accuracy: base,
        rows,
    })
}

impl Sensitivity {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} on one tensor at a time, {} images, base {:.2} %",
            self.model,
            self.knob,
            self.images,
            100.0 * self.base_accuracy
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<28} {:<10} {:6.2} %  drop {:+6.2} pp",
                r.tensor,
                r.role.to_string(),
                100.0 * r.accuracy,
                r.drop_pp
            )?;
        }
        Ok(())
    }
}

impl Rich for Sensitivity {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-sensitivity\"><p><b>{}</b>: {} on one tensor at a time, {} \
             images, base accuracy {:.2} %</p><table><thead><tr><th>tensor</th><th>role</th>\
             <th>accuracy</th><th>drop (pp)</th><th>cached</th></tr></thead><tbody>",
            escape_html(&self.model),
            self.knob,
            self.images,
            100.0 * self.base_accuracy
        );
        for r in &self.rows {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{:.2} %</td><td>{:+.2}</td><td>{}</td></tr>",
                escape_html(&r.tensor),
                r.role,
                100.0 * r.accuracy,
                r.drop_pp,
                if r.cached { "yes" } else { "" }
            );
        }
        html += "</tbody></table></div>";
        bundle(html, self.to_string())
    }
}

/// Accuracy against one swept parameter of one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSweep {
    /// The model.
    pub model: String,
    /// The tensor.
    pub tensor: String,
    /// (setting, accuracy 0..1) in the order given.
    pub points: Vec<(Knob, f64)>,
    /// Images per evaluation.
    pub images: usize,
}

/// Evaluates `tensor` at each of `knobs` (cached quick evaluations).
pub fn sweep(
    m: &QuantModel,
    tensor: &str,
    knobs: &[Knob],
    data: &Dataset,
    per_class: usize,
) -> Result<ParamSweep> {
    let indices = data.stratified(per_class)?;
    let mut points = Vec::new();
    for &k in knobs {
        crate::runtime::interrupt::check()?;
        let v = m.with_knob(tensor, k)?;
        points.push((k, quick_cached(&v, data, &indices)?.0.accuracy()));
    }
    Ok(ParamSweep {
        model: m.name().to_string(),
        tensor: m.param(tensor)?.tensor.clone(),
        points,
        images: indices.len(),
    })
}

/// How often two models predict the same class on the same images.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// First model.
    pub a: String,
    /// Second model.
    pub b: String,
    /// Images compared.
    pub images: usize,
    /// Same prediction.
    pub agree: usize,
    /// Both correct.
    pub both_correct: usize,
    /// Only the first correct.
    pub only_a_correct: usize,
    /// Only the second correct.
    pub only_b_correct: usize,
    /// Indices of images where they disagree (first 50).
    pub disagreements: Vec<usize>,
}

/// Compares the predictions of two models (e.g. ONNX int8 and PyTorch int8) on `indices`.
pub fn agreement(
    a: &dyn Model,
    b: &dyn Model,
    data: &Dataset,
    indices: &[usize],
) -> Result<Agreement> {
    if indices.is_empty() {
        bail!("agreement needs at least one image");
    }
    crate::runtime::interrupt::check()?;
    let ea = crate::eval::evaluate_indices(a, data, indices, true, &EvalOptions::default())?;
    let eb = crate::eval::evaluate_indices(b, data, indices, true, &EvalOptions::default())?;
    let mut out = Agreement {
        a: a.name().to_string(),
        b: b.name().to_string(),
        images: indices.len(),
        agree: 0,
        both_correct: 0,
        only_a_correct: 0,
        only_b_correct: 0,
        disagreements: Vec::new(),
    };
    for (k, &index) in indices.iter().enumerate() {
        let (pa, pb, l) = (ea.predictions[k], eb.predictions[k], ea.labels[k]);
        if pa == pb {
            out.agree += 1;
        } else if out.disagreements.len() < 50 {
            out.disagreements.push(index);
        }
        match (pa == l, pb == l) {
            (true, true) => out.both_correct += 1,
            (true, false) => out.only_a_correct += 1,
            (false, true) => out.only_b_correct += 1,
            _ => {}
        }
    }
    Ok(out)
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} vs {}: same prediction on {}/{} images ({:.2} %); both correct {}, only {} {}, \
             only {} {}",
            self.a,
            self.b,
            self.agree,
            self.images,
            100.0 * self.agree as f64 / self.images as f64,
            self.both_correct,
            self.a,
            self.only_a_correct,
            self.b,
            self.only_b_correct
        )
    }
}

impl Rich for Agreement {
    fn mime_bundle(&self) -> MimeBundle {
        let html = format!(
            "<div class=\"qplay-agreement\"><table><thead><tr><th></th><th>images</th></tr>\
             </thead><tbody><tr><td>same prediction</td><td>{} / {} ({:.2} %)</td></tr>\
             <tr><td>both correct</td><td>{}</td></tr><tr><td>only {} correct</td><td>{}</td>\
             </tr><tr><td>only {} correct</td><td>{}</td></tr></tbody></table></div>",
            self.agree,
            self.images,
            100.0 * self.agree as f64 / self.images as f64,
            self.both_correct,
            escape_html(&self.a),
            self.only_a_correct,
            escape_html(&self.b),
            self.only_b_correct
        );
        bundle(html, self.to_string())
    }
}

/// One row of a model comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ComparisonRow {
    /// Model name.
    pub model: String,
    /// Runtime.
    pub framework: crate::model::Framework,
    /// Accuracy (0..1).
    pub accuracy: f64,
    /// Accuracy − the float model's, in percentage points.
    pub delta_pp: f64,
    /// File size in bytes.
    pub bytes: u64,
}

/// Accuracy, Δ vs float and size of several models on the same images.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The reference float model.
    pub float: String,
    /// What data.
    pub dataset: String,
    /// Images per model.
    pub images: usize,
    /// One row per model, the float model first.
    pub rows: Vec<ComparisonRow>,
    /// The evaluations behind the rows (same order), for charts.
    #[serde(skip)]
    pub evaluations: Vec<Evaluation>,
}

/// Compares registry models (names or paths) against `float` on the first `per_class` images of
/// each class (`None`: all images). Evaluations are cached by file content.
pub fn compare_models(
    float: &str,
    others: &[&str],
    data: &Dataset,
    per_class: Option<usize>,
) -> Result<Comparison> {
    let (indices, sampled) = match per_class {
        Some(n) => (data.stratified(n)?, true),
        None => ((0..data.len()).collect(), false),
    };
    let mut rows = Vec::new();
    let mut evaluations = Vec::new();
    for name in std::iter::once(&float).chain(others) {
        crate::runtime::interrupt::check()?;
        let model = crate::registry::load(name)?;
        let hash = file_hash(model.path())?;
        let (e, _) = evaluate_cached(
            model.as_ref(),
            &hash,
            data,
            &indices,
            sampled,
            &EvalOptions::default(),
            Store::Disk,
        )?;
        rows.push(ComparisonRow {
            model: model.name().to_string(),
            framework: model.framework(),
            accuracy: e.accuracy(),
            delta_pp: 0.0,
            bytes: std::fs::metadata(model.path())?.len(),
        });
        evaluations.push(e);
    }
    let base = rows[0].accuracy;
    for r in &mut rows {
        r.delta_pp = 100.0 * (r.accuracy - base);
    }
    Ok(Comparison {
        float: rows[0].model.clone(),
        dataset: data.description().to_string(),
        images: indices.len(),
        rows,
        evaluations,
    })
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} images of {}", self.images, self.dataset)?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<26} {:<6} {:6.2} %  Δ {:+6.2} pp  {:8.1} KiB",
                r.model,
                r.framework.to_string(),
                100.0 * r.accuracy,
                r.delta_pp,
                r.bytes as f64 / 1024.0
            )?;
        }
        Ok(())
    }
}

impl Rich for Comparison {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-compare\"><p>{} images of {}; Δ against <b>{}</b></p><table>\
             <thead><tr><th>model</th><th>framework</th><th>accuracy</th><th>Δ vs float (pp)\
             </th><th>size</th></tr></thead><tbody>",
            self.images,
            escape_html(&self.dataset),
            escape_html(&self.float)
        );
        for r in &self.rows {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{:.2} %</td><td>{:+.2}</td><td>{:.1} KiB</td></tr>",
                escape_html(&r.model),
                r.framework,
                100.0 * r.accuracy,
                r.delta_pp,
                r.bytes as f64 / 1024.0
            );
        }
        html += "</tbody></table></div>";
        bundle(html, self.to_string())
    }
}

fn bundle(html: String, text: String) -> MimeBundle {
    let mut b = MimeBundle::new();
    b.insert("text/html".into(), html.into());
    b.insert("text/plain".into(), text.into());
    b
}

crate::evcxr_display_via_rich!(Sensitivity, Agreement, Comparison);
