//! Automatic repair: find the quantized tensors that cost accuracy and keep them in float.
//!
//! The data is split by class: the first `calib_per_class` images of each class (the
//! *calibration split*) rank the tensors and choose the steps; the next `holdout_per_class` of
//! each class (*held-out*) are seen only at the end, to check the result on images the search
//! did not choose by. Ranking: each quantized tensor is kept in float on its own
//! ([`QuantModel::keep_float_from`], so weights get the float model's values) and the accuracy
//! it gains over the quantized model is measured. Then, following the ranking, tensors are kept
//! in float one more at a time until the accuracy is within `budget_pp` points of the float
//! model's on the calibration split (or no tensor is left). The result is one version of the
//! model (one edit in its history, so `undo` goes back to the start).
//!
//! With [`RepairOptions::wider`] (say `QDtype::Int16`), a weight's step stores the float
//! model's weight in that wider type ([`QuantModel::with_type_from`]) instead of keeping it in
//! float — still quantized, as a deployment wants it — where the model allows it (an ONNX model
//! whose other types onnxruntime's CPU provider runs beside it); activations, and weights it
//! cannot widen, are kept in float.
//!
//! ```ignore
//! let r = repair(&m, &workbench("resnet8_float")?, &test, &RepairOptions::default())?;
//! r.kept          // the tensors kept in float, worst first
//! r.version       // the repaired version: quick, diff, save as every version
//! ```

use std::fmt;

use anyhow::{bail, Result};
use plotters::prelude::*;
use serde::Serialize;

use super::cache::{evaluate_cached, Store};
use super::calibrate::{NotebookProgress, Progress};
use super::{QDtype, QuantModel, Role};
use crate::charts::{draw_legend, err, render, span, FONT, H, PALETTE, W};
use crate::data::Dataset;
use crate::display::{escape_html, MimeBundle, Rich, Svg};
use crate::eval::EvalOptions;
use crate::model::Model;

/// What a repair may do.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// How far below the float model's accuracy the result may stay, in percentage points
    /// (0 to 100).
    pub budget_pp: f64,
    /// Images per class that rank the tensors and choose the steps (the first of each class).
    pub calib_per_class: usize,
    /// Images per class held out to check the result (the next ones of each class).
    pub holdout_per_class: usize,
    /// At most this many tensors kept in float or widened (None: as many as it takes).
    pub max_float: Option<usize>,
    /// A weight's step stores it in this type (wider than 8 bits: int16 or uint16) instead of
    /// keeping it in float, where the model allows it; None: every step keeps it in float.
    pub wider: Option<QDtype>,
    /// Show progress bars in the notebook.
    pub progress: bool,
}

impl Default for RepairOptions {
    fn default() -> Self {
        RepairOptions {
            budget_pp: 0.5,
            calib_per_class: 100,
            holdout_per_class: 100,
            max_float: None,
            wider: None,
            progress: false,
        }
    }
}

/// One tensor of the ranking.
#[derive(Debug, Clone, Serialize)]
pub struct RankRow {
    /// The quantized tensor.
    pub tensor: String,
    /// Its role.
    pub role: Role,
    /// Calibration-split accuracy with this tensor alone kept in float (0..1).
    pub accuracy: f64,
    /// That accuracy − the quantized model's, in percentage points: what quantizing it costs.
    pub gain_pp: f64,
}

/// One step of the greedy search.
#[derive(Debug, Clone, Serialize)]
pub struct RepairStep {
    /// Tensors in float after this step (0: the model as given).
    pub floats: usize,
    /// The tensor this step kept in float or widened (empty for step 0).
    pub tensor: String,
    /// What the step did to it: "float", or the wider type's name (empty for step 0).
    pub form: String,
    /// Why a weight was kept in float although [`RepairOptions::wider`] was set: the wider
    /// type's edit refused it, and this is its error (empty otherwise).
    pub note: String,
    /// Accuracy on the calibration split (0..1).
    pub accuracy: f64,
    /// Accuracy on the held-out images (0..1), which chose nothing.
    pub holdout_accuracy: f64,
}

/// What [`repair`] found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// The model repaired.
    pub model: String,
    /// The float reference.
    pub float: String,
    /// Budget, in percentage points below the float model.
    pub budget_pp: f64,
    /// Images of the calibration split (ranking and steps).
    pub calib_images: usize,
    /// Held-out images (seen only to check the steps).
    pub holdout_images: usize,
    /// The float model's accuracy on the calibration split.
    pub float_accuracy: f64,
    /// The float model's accuracy on the held-out images.
    pub float_holdout_accuracy: f64,
    /// Every quantized tensor, the one whose quantization costs most first.
    pub ranking: Vec<RankRow>,
    /// The tensors kept in float, in the order kept.
    pub kept: Vec<String>,
    /// The weights stored in the wider type instead ([`RepairOptions::wider`]), in order.
    pub widened: Vec<String>,
    /// Step 0 (the model as given), then one per tensor kept.
    pub steps: Vec<RepairStep>,
    /// Whether the result is within the budget on the calibration split.
    pub within_budget: bool,
    /// Whether it is within the budget on the held-out images too.
    pub holdout_within_budget: bool,
    /// The repaired version (one edit on top of the model).
    #[serde(skip)]
    pub version: QuantModel,
}

/// Ranks `m`'s quantized tensors by the accuracy each costs and keeps the worst in float until
/// `m` is within `options.budget_pp` of `float` (see the module). `float` is the float ONNX
/// model `m` was quantized from; its weights replace the kept weights. With `options.progress`,
/// progress bars are shown; an interrupt stops it between evaluations.
pub fn repair(
    m: &QuantModel,
    float: &QuantModel,
    data: &Dataset,
    options: &RepairOptions,
) -> Result<Repair> {
    repair_with(m, float, data, options, None)
}

/// [`repair`], reporting after each evaluation (what, done, total); without `progress`,
/// `options.progress` shows notebook progress bars.
pub fn repair_with(
    m: &QuantModel,
    float: &QuantModel,
    data: &Dataset,
    options: &RepairOptions,
    progress: Option<Progress<'_>>,
) -> Result<Repair> {
    if !(0.0..=100.0).contains(&options.budget_pp) {
        bail!(
            "budget {} is out of range: 0 to 100 percentage points below the float model",
            options.budget_pp
        );
    }
    if let Some(t) = options.wider {
        t.check_storage("wider")?;
        if t.bits() <= 8 {
            bail!("wider = {t} is not wider than 8 bits: int16 or uint16");
        }
    }
    if options.calib_per_class == 0 || options.holdout_per_class == 0 {
        bail!(
            "repair needs images in both splits: calib_per_class = {}, holdout_per_class = {} \
             (each at least 1)",
            options.calib_per_class,
            options.holdout_per_class
        );
    }
    let calib = data.stratified(options.calib_per_class)?;
    let holdout: Vec<usize> = data
        .stratified(options.calib_per_class + options.holdout_per_class)?
        .into_iter()
        .filter(|i| calib.binary_search(i).is_err())
        .collect();
    let rows = m.quant_params().rows;
    if rows.is_empty() {
        bail!("`{}` has no quantized tensors to keep in float", m.name());
    }
    let accuracy = |v: &QuantModel, indices: &[usize]| -> Result<f64> {
        let key = v.cache_key()?;
        let (e, _) = evaluate_cached(
            v,
            &key,
            data,
            indices,
            true,
            &EvalOptions::default(),
            Store::Memory,
        )?;
        Ok(e.accuracy())
    };
    let bars =
        (options.progress && progress.is_none()).then(|| NotebookProgress::labelled("repair"));
    let report = |what: &str, done: usize, total: usize| {
        if let Some(bars) = &bars {
            bars.set(what, done, total);
        }
        if let Some(p) = progress {
            p(what, done, total);
        }
    };

    let float_accuracy = accuracy(float, &calib)?;
    let float_holdout_accuracy = accuracy(float, &holdout)?;
    let base = accuracy(m, &calib)?;
    let floor = float_accuracy - options.budget_pp / 100.0;

    let mut ranking = Vec::with_capacity(rows.len());
    for (i, p) in rows.iter().enumerate() {
        crate::runtime::interrupt::check()?;
        let a = accuracy(&m.keep_float_from(&p.tensor, float)?, &calib)?;
        ranking.push(RankRow {
            tensor: p.tensor.clone(),
            role: p.role,
            accuracy: a,
            gain_pp: 100.0 * (a - base),
        });
        report("ranking", i + 1, rows.len());
    }
    // Stable: equal gains keep the graph's order.
    ranking.sort_by(|a, b| b.gain_pp.total_cmp(&a.gain_pp));

    let mut steps = vec![RepairStep {
        floats: 0,
        tensor: String::new(),
        form: String::new(),
        note: String::new(),
        accuracy: base,
        holdout_accuracy: accuracy(m, &holdout)?,
    }];
    let most = options
        .max_float
        .unwrap_or(ranking.len())
        .min(ranking.len());
    let mut current = m.clone();
    let mut kept = Vec::new();
    let mut widened = Vec::new();
    for r in ranking.iter().take(most) {
        if steps.last().is_some_and(|s| s.accuracy >= floor) {
            break;
        }
        crate::runtime::interrupt::check()?;
        let (wide, note) = widen(&current, r, options.wider, float)?;
        let form = match wide {
            Some((v, t)) => {
                current = v;
                widened.push(r.tensor.clone());
                t.name().to_string()
            }
            None => {
                current = current.keep_float_from(&r.tensor, float)?;
                kept.push(r.tensor.clone());
                "float".to_string()
            }
        };
        steps.push(RepairStep {
            floats: kept.len() + widened.len(),
            tensor: r.tensor.clone(),
            form,
            note,
            accuracy: accuracy(&current, &calib)?,
            holdout_accuracy: accuracy(&current, &holdout)?,
        });
        report("keeping in float", steps.len() - 1, most);
    }
    report("keeping in float", most, most);
    let last = steps.last().cloned().expect("step 0 is there");
    let version = if kept.is_empty() && widened.is_empty() {
        current
    } else {
        let mut what = Vec::new();
        if !kept.is_empty() {
            what.push(format!("{} kept in float", kept.join(", ")));
        }
        if let (false, Some(t)) = (widened.is_empty(), options.wider) {
            what.push(format!("{} stored as {t}", widened.join(", ")));
        }
        current.squashed_onto(
            m,
            format!(
                "repair: {} (budget {} pp)",
                what.join("; "),
                options.budget_pp
            ),
        )?
    };
    Ok(Repair {
        model: m.name().to_string(),
        float: float.name().to_string(),
        budget_pp: options.budget_pp,
        calib_images: calib.len(),
        holdout_images: holdout.len(),
        float_accuracy,
        float_holdout_accuracy,
        ranking,
        kept,
        widened,
        within_budget: last.accuracy >= floor,
        holdout_within_budget: last.holdout_accuracy
            >= float_holdout_accuracy - options.budget_pp / 100.0,
        steps,
        version,
    })
}

/// A step's first try: weight `r` stored in the wider type, where the model allows it (a weight
/// of an ONNX model whose other types the CPU provider runs beside it: `with_type` refuses the
/// rest by name). `None` with the refusal (`"int16 not possible: …"`) when it was refused, with
/// an empty note when no wider type was asked for or `r` is no weight. An interrupt is an error.
fn widen(
    current: &QuantModel,
    r: &RankRow,
    wider: Option<QDtype>,
    float: &QuantModel,
) -> Result<(Option<(QuantModel, QDtype)>, String)> {
    let Some(t) = wider.filter(|_| r.role == Role::Weight) else {
        return Ok((None, String::new()));
    };
    match current.with_type_from(&r.tensor, t, float) {
        Ok(v) => Ok((Some((v, t)), String::new())),
        Err(e) if crate::runtime::interrupt::is_interrupted(&e) => Err(e),
        Err(e) => Ok((None, format!("{t} not possible: {e:#}"))),
    }
}

impl Repair {
    /// The result as JSON (what `qplay repair --json` prints).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The accuracy of the model as given and of the result, on the held-out images.
    pub fn holdout(&self) -> (f64, f64) {
        let first = self.steps.first().map_or(0.0, |s| s.holdout_accuracy);
        let last = self.steps.last().map_or(0.0, |s| s.holdout_accuracy);
        (first, last)
    }

    fn headline(&self) -> String {
        let (first, last) = (&self.steps[0], self.steps.last().unwrap_or(&self.steps[0]));
        format!(
            "{}: {} tensor(s) kept in float{}; calibration split ({} images): {:.2} % → {:.2} % \
             (float {:.2} %, budget {} pp: {}); held-out images the ranking did not see ({}): \
             {:.2} % → {:.2} % (float {:.2} %: {})",
            self.model,
            self.kept.len(),
            if self.widened.is_empty() {
                String::new()
            } else {
                format!(", {} weight(s) widened", self.widened.len())
            },
            self.calib_images,
            100.0 * first.accuracy,
            100.0 * last.accuracy,
            100.0 * self.float_accuracy,
            self.budget_pp,
            if self.within_budget {
                "within"
            } else {
                "not within"
            },
            self.holdout_images,
            100.0 * first.holdout_accuracy,
            100.0 * last.holdout_accuracy,
            100.0 * self.float_holdout_accuracy,
            if self.holdout_within_budget {
                "within budget"
            } else {
                "not within budget"
            }
        )
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        writeln!(
            f,
            "ranking (accuracy gained by keeping each tensor alone in float):"
        )?;
        for r in &self.ranking {
            writeln!(
                f,
                "  {:<28} {:<10} {:6.2} %  {:+6.2} pp",
                r.tensor,
                r.role.to_string(),
                100.0 * r.accuracy,
                r.gain_pp
            )?;
        }
        writeln!(f, "steps (calibration split / held-out):")?;
        for s in &self.steps {
            writeln!(
                f,
                "  {:>2} {:<5} {:<28} {:6.2} % / {:6.2} %{}",
                s.floats,
                s.form,
                s.tensor,
                100.0 * s.accuracy,
                100.0 * s.holdout_accuracy,
                if s.note.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", s.note)
                }
            )?;
        }
        Ok(())
    }
}

impl Rich for Repair {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-repair\"><p>{}</p><table><thead><tr><th>step</th>\
             <th>tensor</th><th>to</th><th>calibration split</th><th>held-out (unseen)</th></tr>\
             </thead><tbody>",
            escape_html(&self.headline())
        );
        for s in &self.steps {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}{}</td><td>{:.2} %</td><td>{:.2} %</td></tr>",
                s.floats,
                escape_html(&s.tensor),
                escape_html(&s.form),
                if s.note.is_empty() {
                    String::new()
                } else {
                    format!("<br><small>{}</small>", escape_html(&s.note))
                },
                100.0 * s.accuracy,
                100.0 * s.holdout_accuracy
            );
        }
        html += "</tbody></table>";
        if let Ok(svg) = repair_chart(self) {
            html += &svg.0;
        }
        html += "<details><summary>ranking: accuracy gained by keeping each tensor alone in \
                 float</summary><table><thead><tr><th>tensor</th><th>role</th><th>accuracy</th>\
                 <th>gain (pp)</th></tr></thead><tbody>";
        for r in &self.ranking {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{:.2} %</td><td>{:+.2}</td></tr>",
                escape_html(&r.tensor),
                r.role,
                100.0 * r.accuracy,
                r.gain_pp
            );
        }
        html += "</tbody></table></details></div>";
        let mut b = MimeBundle::new();
        b.insert("text/html".into(), html.into());
        b.insert("text/plain".into(), self.to_string().into());
        b
    }
}

crate::evcxr_display_via_rich!(Repair);

/// Accuracy against the number of tensors kept in float, on the calibration split and on the
/// held-out images, with the float model's accuracy less the budget as a dashed line.
pub fn repair_chart(r: &Repair) -> Result<Svg> {
    if r.steps.is_empty() {
        bail!("repair_chart: the repair has no steps");
    }
    let calib: Vec<(f64, f64)> = r
        .steps
        .iter()
        .map(|s| (s.floats as f64, 100.0 * s.accuracy))
        .collect();
    let held: Vec<(f64, f64)> = r
        .steps
        .iter()
        .map(|s| (s.floats as f64, 100.0 * s.holdout_accuracy))
        .collect();
    let floor = 100.0 * r.float_accuracy - r.budget_pp;
    let (y0, y1) = span(
        calib
            .iter()
            .chain(&held)
            .map(|p| p.1)
            .chain([floor, 100.0 * r.float_accuracy]),
    );
    let ypad = ((y1 - y0) * 0.08).max(0.5);
    let x1 = (r.steps.len() - 1).max(1) as f64;
    let changed = if r.widened.is_empty() {
        "tensors kept in float"
    } else {
        "tensors kept in float or widened"
    };
    render(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{}: accuracy against {changed} (budget {} pp)",
                    r.model, r.budget_pp
                ),
                (FONT, 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(76)
            .build_cartesian_2d(-0.2..x1 + 0.2, (y0 - ypad)..(y1 + ypad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(changed)
            .y_desc("accuracy (%)")
            .x_labels(r.steps.len().min(12))
            .x_label_formatter(&|x| {
                if x.fract() == 0.0 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .label_style((FONT, 15))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(-0.2, floor), (x1 + 0.2, floor)],
                6,
                4,
                PALETTE[5].stroke_width(1),
            ))
            .map_err(err)?
            .label("float − budget (calibration split)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], PALETTE[5]));
        for (points, colour, label) in [
            (
                &calib,
                PALETTE[0],
                format!("calibration split ({} images)", r.calib_images),
            ),
            (
                &held,
                PALETTE[1],
                format!("held-out, unseen ({} images)", r.holdout_images),
            ),
        ] {
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(err)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

#[cfg(test)]
mod tests;
