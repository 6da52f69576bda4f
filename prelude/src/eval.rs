//! Evaluating a model on CIFAR-10: full runs, quick stratified samples with a 95 % Wilson
//! interval, per-class accuracy and the confusion matrix.
//!
//! Batches go through the model one after another; each backend spreads a batch over all cores.
//! A progress callback hears after every batch how many images are done. Before each batch an
//! evaluation checks for a user interrupt ([`crate::runtime::interrupt`]) and stops with
//! [`crate::runtime::interrupt::Interrupted`].

use std::fmt;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;

use crate::data::{Dataset, CLASS_NAMES};
use crate::display::{escape_html, MimeBundle, Rich};
use crate::model::{argmax_rows, Framework, Model};

/// Number of classes in CIFAR-10.
pub const CLASSES: usize = CLASS_NAMES.len();

/// Images per model call unless told otherwise: measured fastest on these 2-core machines for
/// both backends (64–200 beat 500 by 10–30 %, see BENCHMARKS.md).
pub const DEFAULT_BATCH: usize = 100;

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// How to run an evaluation.
pub struct EvalOptions<'a> {
    /// Images per model call.
    pub batch_size: usize,
    /// Called after each batch with (images done, images in total).
    pub progress: Option<&'a dyn Fn(usize, usize)>,
}

impl Default for EvalOptions<'_> {
    fn default() -> Self {
        EvalOptions {
            batch_size: DEFAULT_BATCH,
            progress: None,
        }
    }
}

/// The outcome of evaluating one model on a selection of images.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Model name.
    pub model: String,
    /// Model runtime.
    pub framework: Framework,
    /// What data set the images came from, honestly named.
    pub dataset: String,
    /// Indices into the data set of the evaluated images, in evaluation order.
    pub indices: Vec<usize>,
    /// True labels, one per evaluated image.
    pub labels: Vec<u8>,
    /// Predicted labels (top-1), one per evaluated image.
    pub predictions: Vec<u8>,
    /// Whether the images are a sample of the data set (then [`Evaluation::ci95`] matters).
    pub sampled: bool,
    /// Wall-clock seconds spent, data preparation included.
    pub seconds: f64,
}

/// Accuracy on one class.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassAccuracy {
    /// Class index 0..9.
    pub class: usize,
    /// Class name.
    pub name: &'static str,
    /// Images of this class evaluated.
    pub total: usize,
    /// Of which predicted correctly.
    pub correct: usize,
    /// correct / total (0 when total is 0).
    pub accuracy: f64,
}

/// The Wilson score interval for `correct` successes out of `total`, at 95 %.
pub fn wilson(correct: usize, total: usize) -> (f64, f64) {
    if total == 0 {
        return (0.0, 1.0);
    }
    let n = total as f64;
    let p = correct as f64 / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

impl Evaluation {
    /// The evaluation of `model` that predicted `predictions` for the images `indices` of
    /// `data`, in `seconds`.
    pub(crate) fn of(
        model: &dyn Model,
        data: &Dataset,
        indices: &[usize],
        predictions: Vec<u8>,
        sampled: bool,
        seconds: f64,
    ) -> Evaluation {
        Evaluation {
            model: model.name().to_string(),
            framework: model.framework(),
            dataset: data.description().to_string(),
            indices: indices.to_vec(),
            labels: indices.iter().map(|&i| data.label(i)).collect(),
            predictions,
            sampled,
            seconds,
        }
    }

    /// Images evaluated.
    pub fn total(&self) -> usize {
        self.labels.len()
    }
    /// Images predicted correctly.
    pub fn correct(&self) -> usize {
        self.labels
            .iter()
            .zip(&self.predictions)
            .filter(|(l, p)| l == p)
            .count()
    }
    /// Top-1 accuracy in 0..1.
    pub fn accuracy(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.correct() as f64 / self.total() as f64
        }
    }
    /// 95 % Wilson interval of the accuracy.
    pub fn ci95(&self) -> (f64, f64) {
        wilson(self.correct(), self.total())
    }
    /// Accuracy per true class.
    pub fn per_class(&self) -> Vec<ClassAccuracy> {
        let confusion = self.confusion();
        (0..CLASSES)
            .map(|c| {
                let total: usize = confusion[c].iter().sum();
                let correct = confusion[c][c];
                ClassAccuracy {
                    class: c,
                    name: CLASS_NAMES[c],
                    total,
                    correct,
                    accuracy: if total == 0 {
                        0.0
                    } else {
                        correct as f64 / total as f64
                    },
                }
            })
            .collect()
    }
    /// `m[true][predicted]` counts.
    pub fn confusion(&self) -> [[usize; CLASSES]; CLASSES] {
        let mut m = [[0; CLASSES]; CLASSES];
        for (&l, &p) in self.labels.iter().zip(&self.predictions) {
            m[l as usize][p as usize] += 1;
        }
        m
    }
    /// The summary as JSON: model, framework, dataset, total, correct, accuracy, ci95 (when
    /// sampled), per_class, seconds.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "model": self.model,
            "framework": self.framework,
            "dataset": self.dataset,
            "total": self.total(),
            "correct": self.correct(),
            "accuracy": self.accuracy(),
            "per_class": self.per_class(),
            "seconds": self.seconds,
        });
        if self.sampled {
            let (lo, hi) = self.ci95();
            v["ci95"] = json!([lo, hi]);
        }
        v
    }
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) on {}: {}/{} = {:.2} %",
            self.model,
            self.framework,
            self.dataset,
            self.correct(),
            self.total(),
            100.0 * self.accuracy()
        )?;
        if self.sampled {
            let (lo, hi) = self.ci95();
            write!(f, " (95 % CI {:.2}–{:.2} %)", 100.0 * lo, 100.0 * hi)?;
        }
        write!(f, " in {:.2} s", self.seconds)
    }
}

/// Evaluates `model` on the images `indices` of `data`, in that order.
pub fn evaluate_indices(
    model: &dyn Model,
    data: &Dataset,
    indices: &[usize],
    sampled: bool,
    options: &EvalOptions<'_>,
) -> Result<Evaluation> {
    if options.batch_size == 0 {
        bail!("batch_size must be at least 1, got 0");
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        bail!(
            "image index {bad} is out of range for {} ({} images, indices 0..{})",
            data.description(),
            data.len(),
            data.len()
        );
    }
    let start = Instant::now();
    let mut predictions = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(options.batch_size) {
        crate::runtime::interrupt::check()?;
        let batch = data.nhwc_batch(chunk);
        let scores = model.run(batch.view())?;
        if scores.nrows() != chunk.len() || scores.ncols() < CLASSES {
            bail!(
                "model `{}` returned {:?} scores for {} images; expected [{}, {CLASSES}]",
                model.name(),
                scores.shape(),
                chunk.len(),
                chunk.len()
            );
        }
        predictions.extend(argmax_rows(&scores));
        if let Some(progress) = options.progress {
            progress(predictions.len(), indices.len());
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Evaluation::of(
        model,
        data,
        indices,
        predictions,
        sampled,
        seconds,
    ))
}

/// Evaluates `model` on every image of `data`.
pub fn evaluate(
    model: &dyn Model,
    data: &Dataset,
    options: &EvalOptions<'_>,
) -> Result<Evaluation> {
    let all: Vec<usize> = (0..data.len()).collect();
    evaluate_indices(model, data, &all, false, options)
}

/// A quick estimate: the first `per_class` images of each class (stratified, deterministic), with
/// a 95 % Wilson interval.
pub fn quick(model: &dyn Model, data: &Dataset, per_class: usize) -> Result<Evaluation> {
    if per_class == 0 {
        bail!("per_class must be at least 1, got 0");
    }
    let indices = data.stratified(per_class)?;
    evaluate_indices(model, data, &indices, true, &EvalOptions::default())
}

impl Rich for Evaluation {
    /// A headline (accuracy, interval when sampled, data set, time) over a per-class table.
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-eval\"><p><b>{}</b> ({}) on {}: <b>{:.2} %</b> ({}/{})",
            escape_html(&self.model),
            self.framework,
            escape_html(&self.dataset),
            100.0 * self.accuracy(),
            self.correct(),
            self.total()
        );
        if self.sampled {
            let (lo, hi) = self.ci95();
            html += &format!(", 95 % CI {:.2}–{:.2} %", 100.0 * lo, 100.0 * hi);
        }
        html += &format!(
            ", {:.2} s</p><table><thead><tr><th>class</th><th>correct</th><th>total</th>\
             <th>accuracy</th></tr></thead><tbody>",
            self.seconds
        );
        for c in self.per_class() {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2} %</td></tr>",
                c.name,
                c.correct,
                c.total,
                100.0 * c.accuracy
            );
        }
        html += "</tbody></table></div>";
        let mut bundle = MimeBundle::new();
        bundle.insert("text/html".into(), html.into());
        bundle.insert("text/plain".into(), self.to_string().into());
        bundle
    }
}

crate::evcxr_display_via_rich!(Evaluation);
