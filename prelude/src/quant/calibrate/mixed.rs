//! Mixed precision: which weights can go to fewer bits within an accuracy budget. A greedy
//! search from an 8-bit model: each round tries every weight one step lower (8 → 6 → 4 by
//! default) on the quick evaluation, keeps the step that loses the least accuracy while staying
//! within `budget` points of the starting model (ties: the one saving more bytes), and stops
//! when no step fits. Every point it tried is kept for the size–accuracy chart.
//!
//! A lowered weight is rounded to nearest on its narrower grid (`with_bits`), or, with
//! [`MixedOptions::adaround`], by AdaRound: every weight is learned once per lower width before
//! the search (on its input in the starting model, from training images), and each trial puts
//! the learned integers in place of the nearest ones.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use serde::Serialize;

use plotters::prelude::*;

use crate::charts::{draw_legend, err, render, span, FONT, H, PALETTE, W};
use crate::data::Dataset;
use crate::display::{escape_html, MimeBundle, ProgressBar, Rich, Svg};
use crate::model::Model;
use crate::quant::adaround::{rounded_at_bits, AdaRoundOptions};
use crate::quant::{QuantModel, Role};

/// What the search may do.
#[derive(Debug, Clone)]
pub struct MixedOptions {
    /// Accuracy the result may lose against the starting model, in percentage points.
    pub budget_pp: f64,
    /// The bit widths weights may take, highest first (8, 6, 4).
    pub bits: Vec<u32>,
    /// Images per class of the quick evaluation.
    pub per_class: usize,
    /// Show a progress bar in the notebook.
    pub progress: bool,
    /// Round lowered weights by AdaRound instead of to nearest (`None`).
    pub adaround: Option<LearnedRounding>,
}

impl Default for MixedOptions {
    fn default() -> Self {
        MixedOptions {
            budget_pp: 0.5,
            bits: vec![8, 6, 4],
            per_class: 100,
            progress: false,
            adaround: None,
        }
    }
}

/// What [`MixedOptions::adaround`] learns from.
#[derive(Clone)]
pub struct LearnedRounding {
    /// The float model the starting model was made from (its reference, as for `adaround`).
    pub float: QuantModel,
    /// The images AdaRound learns on: training images, not those the search evaluates on.
    pub data: Dataset,
    /// AdaRound's options (the search sets `weight_bits` to each width it tries).
    pub options: AdaRoundOptions,
}

impl fmt::Debug for LearnedRounding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LearnedRounding")
            .field("float", &self.float.name())
            .field("data", &self.data.description())
            .field("options", &self.options)
            .finish()
    }
}

impl LearnedRounding {
    fn label(&self) -> String {
        format!(
            "AdaRound, {} iterations per weight",
            self.options.iterations
        )
    }
}

/// One assignment the search evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct MixedPoint {
    /// Round of the search (0: the starting model).
    pub round: usize,
    /// The step tried: `weight → bits` (empty for the start).
    pub step: String,
    /// Bits of every weight.
    pub bits: BTreeMap<String, u32>,
    /// Weights and biases in bytes at these bits.
    pub bytes: usize,
    /// Quick-evaluation accuracy (0..1).
    pub accuracy: f64,
    /// Its 95 % interval.
    pub ci95: (f64, f64),
    /// Whether the search kept this step.
    pub kept: bool,
}

/// The result of a search.
#[derive(Debug, Clone, Serialize)]
pub struct MixedPrecision {
    /// The starting model.
    pub model: String,
    /// Budget, in percentage points below the start.
    pub budget_pp: f64,
    /// Images of the quick evaluation.
    pub images: usize,
    /// The start's accuracy.
    pub base_accuracy: f64,
    /// The start's size in bytes.
    pub base_bytes: usize,
    /// How lowered weights were rounded: "nearest" or "AdaRound, N iterations per weight".
    pub rounding: String,
    /// The chosen bits per weight.
    pub bits: BTreeMap<String, u32>,
    /// The chosen model's size in bytes.
    pub bytes: usize,
    /// Its accuracy.
    pub accuracy: f64,
    /// Its 95 % interval.
    pub ci95: (f64, f64),
    /// Every point tried, in order.
    pub points: Vec<MixedPoint>,
    /// The chosen model (a version of the start).
    #[serde(skip)]
    pub version: QuantModel,
}

/// Weights (int8 storage: 1 byte per element at 8 bits) and biases (4 bytes) in bytes.
fn bytes_at(sizes: &BTreeMap<String, (usize, Role)>, bits: &BTreeMap<String, u32>) -> usize {
    let bits_total: usize = sizes
        .iter()
        .map(|(t, (n, role))| match role {
            Role::Weight => n * bits.get(t).copied().unwrap_or(8) as usize,
            _ => n * 32,
        })
        .sum();
    bits_total.div_ceil(8)
}

/// Integers learned per weight and width (empty: nearest rounding).
type Learned = BTreeMap<(String, u32), ndarray::ArrayD<i32>>;

/// The version of `base` with these bits, its lowered weights' integers the `learned` ones where
/// there are some.
fn apply(base: &QuantModel, bits: &BTreeMap<String, u32>, learned: &Learned) -> Result<QuantModel> {
    let mut v = base.clone();
    for (t, &b) in bits {
        if b != 8 {
            v = v.with_bits(t, b)?;
            if let Some(ints) = learned.get(&(t.clone(), b)) {
                v = v.with_weight_int(t, ints)?;
            }
        }
    }
    Ok(v)
}

/// Searches the bits of `base`'s weights within `options.budget_pp` of its quick accuracy on
/// `data` (see the module). The chosen model is one version of `base`.
pub fn mixed_precision(
    base: &QuantModel,
    data: &Dataset,
    options: &MixedOptions,
) -> Result<MixedPrecision> {
    mixed_precision_with(base, data, options, None)
}

/// [`mixed_precision`], reporting after each round (rounds done, most rounds possible); without
/// `progress`, `options.progress` shows a notebook progress bar.
pub fn mixed_precision_with(
    base: &QuantModel,
    data: &Dataset,
    options: &MixedOptions,
    progress: Option<super::Progress<'_>>,
) -> Result<MixedPrecision> {
    if !(0.0..=100.0).contains(&options.budget_pp) {
        bail!(
            "budget {} is out of range: 0 to 100 percentage points",
            options.budget_pp
        );
    }
    let mut ladder = options.bits.clone();
    ladder.sort_unstable_by(|a, b| b.cmp(a));
    ladder.dedup();
    if ladder.first() != Some(&8) || ladder.iter().any(|b| !(2..=8).contains(b)) {
        bail!(
            "bits {:?} are not allowed: 8 first, then lower widths from 2 to 8",
            options.bits
        );
    }
    let rows = base.quant_params().rows;
    let sizes: BTreeMap<String, (usize, Role)> = rows
        .iter()
        .filter(|p| p.role != Role::Activation)
        .map(|p| (p.tensor.clone(), (p.shape.iter().product(), p.role)))
        .collect();
    let weights: Vec<String> = rows
        .iter()
        .filter(|p| p.role == Role::Weight)
        .map(|p| p.tensor.clone())
        .collect();
    if weights.is_empty() {
        bail!("`{}` has no quantized weights", base.name());
    }
    let learned: Learned = match &options.adaround {
        Some(a) => rounded_at_bits(base, &a.float, &a.data, &ladder[1..], &a.options, progress)?,
        None => Learned::new(),
    };
    let start = base.quick(data, options.per_class)?;
    let images = start.total();
    let floor = start.accuracy() - options.budget_pp / 100.0;
    let mut bits: BTreeMap<String, u32> = weights.iter().map(|w| (w.clone(), 8)).collect();
    let base_bytes = bytes_at(&sizes, &bits);
    let mut points = vec![MixedPoint {
        round: 0,
        step: String::new(),
        bits: bits.clone(),
        bytes: base_bytes,
        accuracy: start.accuracy(),
        ci95: start.ci95(),
        kept: true,
    }];
    let steps_in_all = weights.len() * (ladder.len() - 1);
    let bar = (progress.is_none() && options.progress)
        .then(|| ProgressBar::new("mixed precision: rounds", steps_in_all));
    let report = |round: usize| {
        if let Some(bar) = &bar {
            bar.set(round);
        }
        if let Some(p) = progress {
            p("mixed precision: rounds", round, steps_in_all);
        }
    };
    let mut chosen = (base.clone(), start);
    for round in 1..=steps_in_all {
        crate::runtime::interrupt::check()?;
        let mut best: Option<(usize, QuantModel, crate::eval::Evaluation)> = None;
        for w in &weights {
            let now = bits[w];
            let Some(&next) = ladder.iter().find(|&&b| b < now) else {
                continue;
            };
            let mut trial = bits.clone();
            trial.insert(w.clone(), next);
            let v = apply(base, &trial, &learned)?;
            let e = v.quick(data, options.per_class)?;
            points.push(MixedPoint {
                round,
                step: format!("{w} → {next}"),
                bytes: bytes_at(&sizes, &trial),
                bits: trial,
                accuracy: e.accuracy(),
                ci95: e.ci95(),
                kept: false,
            });
            let i = points.len() - 1;
            let better = match &best {
                None => true,
                Some((j, _, _)) => {
                    let (a, b) = (&points[i], &points[*j]);
                    a.accuracy > b.accuracy || (a.accuracy == b.accuracy && a.bytes < b.bytes)
                }
            };
            if e.accuracy() >= floor && better {
                best = Some((i, v, e));
            }
        }
        let Some((i, v, e)) = best else { break };
        points[i].kept = true;
        bits = points[i].bits.clone();
        chosen = (v, e);
        report(round);
    }
    report(steps_in_all);
    let (version, e) = chosen;
    let rounding = options
        .adaround
        .as_ref()
        .map_or("nearest".to_string(), LearnedRounding::label);
    let lowered = bits.values().filter(|&&b| b != 8).count();
    let version = if lowered == 0 {
        version
    } else {
        version.squashed_onto(
            base,
            format!(
                "mixed precision: {lowered} weights below 8 bits (budget {} pp, {})",
                options.budget_pp, rounding
            ),
        )?
    };
    Ok(MixedPrecision {
        model: base.name().to_string(),
        budget_pp: options.budget_pp,
        images,
        base_accuracy: points[0].accuracy,
        base_bytes,
        rounding,
        bytes: bytes_at(&sizes, &bits),
        bits,
        accuracy: e.accuracy(),
        ci95: e.ci95(),
        points,
        version,
    })
}

impl MixedPrecision {
    /// The result as JSON (what `qplay mixed-precision --json` prints).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for MixedPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {:.2} % → {:.2} % [{:.2}, {:.2}] ({} images, budget {} pp, rounding: {}), {} → {} bytes ({} points tried)",
            self.model,
            100.0 * self.base_accuracy,
            100.0 * self.accuracy,
            100.0 * self.ci95.0,
            100.0 * self.ci95.1,
            self.images,
            self.budget_pp,
            self.rounding,
            self.base_bytes,
            self.bytes,
            self.points.len()
        )?;
        for (t, b) in &self.bits {
            writeln!(f, "  {t:<24} {b} bits")?;
        }
        Ok(())
    }
}

impl Rich for MixedPrecision {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-mixed\"><p><b>{}</b>, mixed precision within {} pp on {} images \
             (rounding: {}): \
             <b>{:.2} %</b> [{:.2}, {:.2}] against {:.2} %, weights and biases {:.1} KB \
             against {:.1} KB ({} points tried)</p><table><thead><tr><th>weight</th>\
             <th>bits</th></tr></thead><tbody>",
            escape_html(&self.model),
            self.budget_pp,
            self.images,
            escape_html(&self.rounding),
            100.0 * self.accuracy,
            100.0 * self.ci95.0,
            100.0 * self.ci95.1,
            100.0 * self.base_accuracy,
            self.bytes as f64 / 1024.0,
            self.base_bytes as f64 / 1024.0,
            self.points.len()
        );
        for (t, b) in &self.bits {
            html += &format!("<tr><td>{}</td><td>{b}</td></tr>", escape_html(t));
        }
        html += "</tbody></table>";
        if let Ok(svg) = mixed_precision_chart(self) {
            html += &svg.0;
        }
        html += "</div>";
        let mut b = MimeBundle::new();
        b.insert("text/html".into(), html.into());
        b.insert("text/plain".into(), self.to_string().into());
        b
    }
}
crate::evcxr_display_via_rich!(MixedPrecision);

/// Size against accuracy for every assignment a mixed-precision search tried: the steps it
/// kept joined by a line, the others as open circles, the budget as a dashed line.
pub fn mixed_precision_chart(m: &MixedPrecision) -> Result<Svg> {
    if m.points.is_empty() {
        bail!("mixed_precision_chart: the search has no points");
    }
    let kb = |b: usize| b as f64 / 1024.0;
    let xs: Vec<f64> = m.points.iter().map(|p| kb(p.bytes)).collect();
    let ys: Vec<f64> = m.points.iter().map(|p| 100.0 * p.accuracy).collect();
    let (x0, x1) = span(xs.iter().copied());
    let floor = 100.0 * m.base_accuracy - m.budget_pp;
    let (y0, y1) = span(ys.iter().copied().chain([floor]));
    let (xpad, ypad) = (((x1 - x0) * 0.05).max(0.5), ((y1 - y0) * 0.08).max(0.5));
    let kept: Vec<(f64, f64)> = m
        .points
        .iter()
        .zip(xs.iter().zip(&ys))
        .filter(|(p, _)| p.kept)
        .map(|(_, (&x, &y))| (x, y))
        .collect();
    render(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{}: accuracy against size ({} images, budget {} pp)",
                    m.model, m.images, m.budget_pp
                ),
                (FONT, 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(76)
            .build_cartesian_2d((x0 - xpad)..(x1 + xpad), (y0 - ypad)..(y1 + ypad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("weights and biases (KB)")
            .y_desc("accuracy (%)")
            .label_style((FONT, 15))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x0 - xpad, floor), (x1 + xpad, floor)],
                6,
                4,
                PALETTE[5].stroke_width(1),
            ))
            .map_err(err)?
            .label("budget")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], PALETTE[5]));
        chart
            .draw_series(
                xs.iter()
                    .zip(&ys)
                    .map(|(&x, &y)| Circle::new((x, y), 3, PALETTE[4].stroke_width(1))),
            )
            .map_err(err)?
            .label("tried")
            .legend(|(x, y)| Circle::new((x + 8, y), 3, PALETTE[4].stroke_width(1)));
        chart
            .draw_series(LineSeries::new(kept.clone(), PALETTE[0].stroke_width(2)))
            .map_err(err)?
            .label("kept")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], PALETTE[0]));
        chart
            .draw_series(kept.iter().map(|&p| Circle::new(p, 4, PALETTE[0].filled())))
            .map_err(err)?;
        draw_legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}
