//! Charts for the quantization workbench, drawn with plotters' SVG backend and shown as
//! [`Svg`]: a tensor's histogram with its quantization grid, clip range and saturation; per-layer
//! SQNR bars; per-class accuracy of several models; a confusion-matrix heat map; accuracy
//! against a swept parameter; per-tensor sensitivity.

use anyhow::{anyhow, bail, Result};
use ndarray::ArrayView4;
use plotters::prelude::*;

use crate::data::CLASS_NAMES;
use crate::display::Svg;
use crate::eval::Evaluation;
use crate::model::Model;
use crate::quant::{
    capture::Memo, fmt_num, Knob, LayerErrors, ParamSweep, QuantModel, QuantParam, Role,
    Sensitivity,
};

pub(crate) const W: u32 = 760;
pub(crate) const H: u32 = 400;
pub(crate) const FONT: &str = "sans-serif";

/// Series colours (colour-blind safe, Okabe–Ito).
pub(crate) const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
];

pub(crate) fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("chart: {e}")
}

/// The smallest and the largest of `values` (infinities when there are none).
pub(crate) fn span(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
}

/// The legend of a line chart, at `position`, boxed on a light background.
pub(crate) fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 14))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;
    Ok(())
}

pub(crate) fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<Svg> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(Svg(out))
}

/// A histogram of `values` with the quantization grid of `param` (channel `channel` when per
/// channel): the clip range `[(q_min − z)·s, (q_max − z)·s]` as red lines, the grid levels as
/// thin lines when there are few enough to see, and the share of values outside the range
/// (saturated) in the title.
pub fn histogram(title: &str, values: &[f32], param: &QuantParam, channel: usize) -> Result<Svg> {
    if values.is_empty() {
        bail!("histogram of `{title}`: no values");
    }
    let c = channel.min(param.scales.len() - 1);
    let (s, z) = (param.scales[c] as f64, param.zero_points[c] as i64);
    let (qmin, qmax) = param.dtype.range();
    let (lo, hi) = ((qmin - z) as f64 * s, (qmax - z) as f64 * s);
    let vmin = values.iter().fold(f32::INFINITY, |a, &b| a.min(b)) as f64;
    let vmax = values.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    // Show the data and the clip range, but not a huge empty range beyond the data.
    let x0 = vmin.min(lo.max(vmin - 0.1 * (vmax - vmin)));
    let x1 = vmax.max(hi.min(vmax + 0.1 * (vmax - vmin)));
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 1.0, x1 + 1.0)
    };
    let bins = 80usize;
    let width = (x1 - x0) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values {
        let b = (((v as f64 - x0) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let saturated = values
        .iter()
        .filter(|&&v| (v as f64) < lo || (v as f64) > hi)
        .count();
    let pct = 100.0 * saturated as f64 / values.len() as f64;
    let ymax = *counts.iter().max().unwrap_or(&1) as f64 * 1.1;
    let levels_visible = ((x1 - x0) / s) as usize;
    let caption = format!(
        "{title}: {} values, clip [{}, {}], {:.2} % saturated",
        values.len(),
        fmt_num(lo),
        fmt_num(hi),
        pct
    );
    render(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(76)
            .build_cartesian_2d(x0..x1, 0.0..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(format!(
                "value (grid step s = {}, zero point {z}, {})",
                fmt_num(s),
                param.dtype
            ))
            .y_desc("count")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 15))
            .draw()
            .map_err(err)?;
        if levels_visible <= 64 {
            for q in qmin..=qmax {
                let x = (q - z) as f64 * s;
                if x >= x0 && x <= x1 {
                    chart
                        .draw_series(LineSeries::new(
                            [(x, 0.0), (x, ymax)],
                            RGBColor(200, 200, 200).stroke_width(1),
                        ))
                        .map_err(err)?;
                }
            }
        }
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &n)| {
                let a = x0 + i as f64 * width;
                Rectangle::new([(a, 0.0), (a + width, n as f64)], PALETTE[0].filled())
            }))
            .map_err(err)?;
        for x in [lo, hi] {
            if x >= x0 && x <= x1 {
                chart
                    .draw_series(LineSeries::new([(x, 0.0), (x, ymax)], RED.stroke_width(2)))
                    .map_err(err)?;
            }
        }
        Ok(())
    })
}

/// The histogram of a model tensor: a weight's dequantized values (channel `channel` when per
/// channel, else all), or an activation's values *before* its QuantizeLinear, captured on
/// `batch` (ONNX).
pub fn tensor_histogram(
    m: &QuantModel,
    tensor: &str,
    batch: Option<ArrayView4<'_, f32>>,
    channel: usize,
) -> Result<Svg> {
    let p = m.param(tensor)?.clone();
    let (captured, view);
    let values: Vec<f32>;
    let values: &[f32] = if p.role == Role::Activation {
        let batch = batch.ok_or_else(|| {
            anyhow!("`{tensor}` is an activation: give a batch of images to capture it on")
        })?;
        // Through the version's memo: the per-layer SQNR of the same batch reuses this run.
        captured = m.captured(batch, &[&p.tensor], Memo::ForSqnr)?;
        view = captured
            .get(&p.tensor)
            .ok_or_else(|| anyhow!("`{}` was not captured from `{}`", p.tensor, m.name()))?
            .view()?;
        match view.as_slice() {
            Some(v) => v,
            None => {
                values = view.iter().copied().collect();
                &values
            }
        }
    } else {
        let w = m.weights(tensor)?;
        values = match p.axis {
            Some(axis) if p.scales.len() > 1 => w
                .dequantized
                .index_axis(
                    ndarray::Axis(axis as usize),
                    channel.min(p.scales.len() - 1),
                )
                .iter()
                .copied()
                .collect(),
            _ => w.dequantized.iter().copied().collect(),
        };
        &values
    };
    let title = if p.per_channel() {
        format!("{} (channel {channel})", p.tensor)
    } else {
        p.tensor.clone()
    };
    histogram(&title, values, &p, channel)
}

fn bar_chart(
    caption: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    y_desc: &str,
    y_range: (f64, f64),
) -> Result<Svg> {
    let n = categories.len().max(1);
    let k = series.len().max(1);
    // 44 px per group keeps the 16 activations of ResNet-8 (824 px) inside JupyterLab's output
    // area at common window widths; labels are vertical, so groups can be narrow.
    let width = W.max(44 * n as u32 + 120);
    let longest = categories.iter().map(|c| c.len()).max().unwrap_or(4) as u32;
    render(width, H + 8 * longest.min(28), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(20 + 8 * longest.min(28))
            .y_label_area_size(76)
            .build_cartesian_2d(0.0..n as f64, y_range.0..y_range.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_desc)
            .label_style((FONT, 15))
            .draw()
            .map_err(err)?;
        // Category names under their bars, drawn at the bars' pixel positions (tick labels
        // would land on plotters' own "nice" positions, not on the categories).
        for (i, label) in categories.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, y_range.0));
            root.draw(&Text::new(
                label.clone(),
                (px - 7, py + 6),
                (FONT, 14)
                    .into_font()
                    .transform(FontTransform::Rotate90)
                    .color(&BLACK),
            ))
            .map_err(err)?;
        }
        let bar = 0.8 / k as f64;
        for (j, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let a = i as f64 + 0.1 + j as f64 * bar;
                    Rectangle::new(
                        [(a, y_range.0.max(0.0).min(v)), (a + bar, v)],
                        color.filled(),
                    )
                }))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 15))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Per-layer SQNR bars: `qdq_err` and `xmodel_err` for each tensor (higher is better).
pub fn sqnr_chart(e: &LayerErrors) -> Result<Svg> {
    // Exact quantization (a scale-1 input) gives SQNR in the hundreds of dB: cap the axis.
    let cap = 60.0;
    let cats: Vec<String> = e
        .rows
        .iter()
        .map(|r| {
            if r.relu_folded {
                format!("{} (ReLU folded)", r.tensor)
            } else {
                r.tensor.clone()
            }
        })
        .collect();
    let qdq: Vec<f64> = e.rows.iter().map(|r| r.qdq_err.min(cap)).collect();
    let x: Vec<f64> = e
        .rows
        .iter()
        .map(|r| r.xmodel_err.unwrap_or(0.0).min(cap))
        .collect();
    bar_chart(
        &format!(
            "SQNR of {} vs {} ({} images; capped at {cap} dB)",
            e.quant_model, e.float_model, e.images
        ),
        &cats,
        &[("qdq_err".into(), qdq), ("xmodel_err".into(), x)],
        "dB",
        (0.0, cap),
    )
}

/// Per-class accuracy of several evaluations side by side.
pub fn per_class_chart(evals: &[&Evaluation]) -> Result<Svg> {
    if evals.is_empty() {
        bail!("per_class_chart needs at least one evaluation");
    }
    let cats: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    let series: Vec<(String, Vec<f64>)> = evals
        .iter()
        .map(|e| {
            (
                format!("{} ({:.1} %)", e.model, 100.0 * e.accuracy()),
                e.per_class().iter().map(|c| 100.0 * c.accuracy).collect(),
            )
        })
        .collect();
    bar_chart(
        &format!("Per-class accuracy on {}", evals[0].dataset),
        &cats,
        &series,
        "accuracy (%)",
        // Headroom above 100 % for the legend.
        (0.0, 100.0 + 12.0 * evals.len() as f64),
    )
}

/// Accuracy drop per tensor of a sensitivity sweep.
pub fn sensitivity_chart(s: &Sensitivity) -> Result<Svg> {
    let cats: Vec<String> = s.rows.iter().map(|r| r.tensor.clone()).collect();
    let drops: Vec<f64> = s.rows.iter().map(|r| r.drop_pp).collect();
    let lo = drops.iter().fold(0.0f64, |a, &b| a.min(b)) - 1.0;
    let hi = drops.iter().fold(1.0f64, |a, &b| a.max(b)) * 1.1;
    bar_chart(
        &format!(
            "{}: accuracy drop with {} on one tensor ({} images, base {:.1} %)",
            s.model,
            s.knob,
            s.images,
            100.0 * s.base_accuracy
        ),
        &cats,
        &[("drop".into(), drops)],
        "accuracy drop (pp)",
        (lo, hi),
    )
}

/// The confusion matrix as a heat map (rows: true class, columns: predicted; colour: share of
/// the row; numbers: counts).
pub fn confusion_chart(e: &Evaluation) -> Result<Svg> {
    let m = e.confusion();
    let n = CLASS_NAMES.len();
    render(640, 600, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("{}: confusion ({} images)", e.model, e.total()),
                (FONT, 20),
            )
            .margin(12)
            .x_label_area_size(80)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..n as f64, 0.0..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("predicted")
            .y_desc("true")
            .label_style((FONT, 15))
            .draw()
            .map_err(err)?;
        let font = (FONT, 14).into_font().color(&BLACK);
        for (i, class) in CLASS_NAMES.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                class.to_string(),
                (px - 7, py + 6),
                font.clone().transform(FontTransform::Rotate90),
            ))
            .map_err(err)?;
            let (px, py) = chart.backend_coord(&(0.0, (n - 1 - i) as f64 + 0.5));
            root.draw(&Text::new(
                class.to_string(),
                (px - 8, py),
                font.clone().pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Right,
                    plotters::style::text_anchor::VPos::Center,
                )),
            ))
            .map_err(err)?;
        }
        for (t, row) in m.iter().enumerate() {
            let total: usize = row.iter().sum::<usize>().max(1);
            for (p, &count) in row.iter().enumerate() {
                let share = count as f64 / total as f64;
                let y = (n - 1 - t) as f64;
                let shade = (255.0 * (1.0 - share)) as u8;
                let color = RGBColor(shade, shade, 255);
                chart
                    .draw_series([Rectangle::new(
                        [(p as f64, y), (p as f64 + 1.0, y + 1.0)],
                        color.filled(),
                    )])
                    .map_err(err)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                chart
                    .draw_series([Text::new(
                        count.to_string(),
                        (p as f64 + 0.35, y + 0.62),
                        (FONT, 15).into_font().color(&ink),
                    )])
                    .map_err(err)?;
            }
        }
        Ok(())
    })
}

/// Accuracy against a swept parameter.
pub fn sweep_chart(s: &ParamSweep) -> Result<Svg> {
    if s.points.is_empty() {
        bail!("sweep_chart: the sweep has no points");
    }
    let xs: Vec<f64> = s
        .points
        .iter()
        .map(|(k, _)| match k {
            Knob::ScaleTimes(f) => *f as f64,
            Knob::Bits(n) => *n as f64,
            Knob::Type(t) => t.bits() as f64,
        })
        .collect();
    let bits = matches!(s.points[0].0, Knob::Bits(_) | Knob::Type(_));
    let x0 = xs.iter().fold(f64::INFINITY, |a, &b| a.min(b));
    let x1 = xs.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let pad = ((x1 - x0) * 0.05).max(0.05);
    let points: Vec<(f64, f64)> = xs
        .iter()
        .zip(&s.points)
        .map(|(&x, (_, a))| (x, 100.0 * a))
        .collect();
    render(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{}: accuracy against {} of {} ({} images)",
                    s.model,
                    if bits { "bits" } else { "scale factor" },
                    s.tensor,
                    s.images
                ),
                (FONT, 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(76)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), 0.0..100.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(if bits { "bits" } else { "scale × k" })
            .y_desc("accuracy (%)")
            .label_style((FONT, 15))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(points.clone(), PALETTE[0].stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 4, PALETTE[0].filled())),
            )
            .map_err(err)?;
        Ok(())
    })
}

impl QuantModel {
    /// [`tensor_histogram`] of a weight (all channels; use [`tensor_histogram`] for one).
    pub fn histogram(&self, tensor: &str) -> Result<Svg> {
        tensor_histogram(self, tensor, None, 0)
    }
}
