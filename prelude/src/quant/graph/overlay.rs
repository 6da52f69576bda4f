//! What a graph is coloured by: one figure per tensor — the SQNR of the per-layer error table
//! (`qdq_err` or `xmodel_err`, the same numbers), the scale's change against the original
//! model, the share of values clipped by the quantization grid, the accuracy a sensitivity sweep
//! lost with each weight lowered — and the colour of each value.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};

use crate::data::Dataset;
use crate::model::{Framework, Model};
use crate::quant::capture::Memo;
use crate::quant::{LayerErrors, QuantModel, Role, Sensitivity};

/// The figure an overlay shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// No colours.
    None,
    /// SQNR before vs after the QDQ pair, dB (higher is better).
    QdqErr,
    /// SQNR of the float model's tensor vs the quantized one, dB (higher is better).
    XmodelErr,
    /// The scale against the original model's, as a factor (1 = unchanged).
    ScaleChange,
    /// Values outside the quantization grid, % (lower is better).
    Saturation,
    /// Accuracy lost when that weight alone is lowered (a sensitivity sweep), percentage points
    /// (lower is better).
    SensitivityDrop,
}

impl Figure {
    /// Every figure, in the order a dropdown lists them.
    pub const ALL: [Figure; 6] = [
        Figure::None,
        Figure::XmodelErr,
        Figure::QdqErr,
        Figure::ScaleChange,
        Figure::Saturation,
        Figure::SensitivityDrop,
    ];

    /// The name a dropdown shows and [`Figure::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Figure::None => "none",
            Figure::QdqErr => "qdq_err",
            Figure::XmodelErr => "xmodel_err",
            Figure::ScaleChange => "scale change",
            Figure::Saturation => "saturation",
            Figure::SensitivityDrop => "sensitivity",
        }
    }

    /// The figure named `name` (an error naming the allowed values otherwise).
    pub fn parse(name: &str) -> Result<Figure> {
        Figure::ALL
            .into_iter()
            .find(|f| f.name() == name.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Figure::ALL.iter().map(|f| f.name()).collect();
                anyhow!(
                    "no overlay `{name}`; the overlays are: {}",
                    names.join(", ")
                )
            })
    }

    /// A value with its unit.
    pub fn format(self, v: f64) -> String {
        match self {
            Figure::None => String::new(),
            Figure::QdqErr | Figure::XmodelErr => format!("{v:.2} dB"),
            Figure::ScaleChange => format!("scale × {}", crate::quant::fmt_num(v)),
            Figure::Saturation => format!("{v:.2} % clipped"),
            Figure::SensitivityDrop => format!("{v:+.2} pp accuracy lost"),
        }
    }

    /// What the colour scale says.
    pub fn caption(self) -> &'static str {
        match self {
            Figure::None => "",
            Figure::QdqErr => "qdq_err: SQNR before vs after QDQ (dB, higher is better)",
            Figure::XmodelErr => "xmodel_err: SQNR against the float model (dB, higher is better)",
            Figure::ScaleChange => "scale against the original model (blue smaller, red larger)",
            Figure::Saturation => "saturation: % of values outside the grid (lower is better)",
            Figure::SensitivityDrop => {
                "sensitivity: accuracy lost with the weight alone lowered (pp, lower is better)"
            }
        }
    }
}

/// One figure per tensor, and a note on where the numbers come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// What the values are.
    pub figure: Figure,
    /// Tensor name → value (tensors without a value are drawn uncoloured).
    pub values: BTreeMap<String, f64>,
    /// Tensor name → a remark for its tooltip (a folded ReLU, a tensor kept in float).
    pub remarks: BTreeMap<String, String>,
    /// Where the numbers come from (shown under the legend).
    pub note: String,
    /// Why this figure cannot be computed for the version (then there are no values, and the
    /// legend says so in place of the colour scale).
    pub unavailable: Option<String>,
}

/// Why a TorchScript version has no SQNR.
const TORCH_NO_SQNR: &str =
    "not available for TorchScript: values before rounding exist only inside its fused kernels";
/// Why a TorchScript version has no saturation.
const TORCH_NO_SATURATION: &str =
    "not available for TorchScript: a capture gives the rounded values, not what was clipped";

/// SQNR shown on the colour scale at most: exact quantization (the input's integer pixels)
/// gives hundreds of dB, and above 40 dB an int8 tensor is as good as exact.
const SQNR_CAP: f64 = 40.0;

impl Overlay {
    /// No colours.
    pub fn none() -> Overlay {
        Overlay {
            figure: Figure::None,
            values: BTreeMap::new(),
            remarks: BTreeMap::new(),
            note: String::new(),
            unavailable: None,
        }
    }

    /// `figure`, which cannot be computed here, for the reason given: no colours, and the
    /// legend and the dropdown's entry say why.
    pub fn unavailable(figure: Figure, reason: &str) -> Overlay {
        Overlay {
            figure,
            unavailable: Some(reason.to_string()),
            ..Overlay::none()
        }
    }

    /// The figures version `v`'s format cannot give, each as an [`Overlay::unavailable`] with
    /// the reason (none for ONNX; SQNR and saturation for TorchScript).
    pub fn unavailable_for(v: &QuantModel) -> Vec<Overlay> {
        match v.framework() {
            Framework::Onnx => Vec::new(),
            Framework::Torch => vec![
                Overlay::unavailable(Figure::XmodelErr, TORCH_NO_SQNR),
                Overlay::unavailable(Figure::QdqErr, TORCH_NO_SQNR),
                Overlay::unavailable(Figure::Saturation, TORCH_NO_SATURATION),
            ],
        }
    }

    fn sqnr(figure: Figure, e: &LayerErrors) -> Overlay {
        let mut o = Overlay::none();
        o.figure = figure;
        o.note = format!(
            "{} against {} on {} images",
            e.quant_model, e.float_model, e.images
        );
        for r in &e.rows {
            let v = match figure {
                Figure::QdqErr => Some(r.qdq_err),
                _ => r.xmodel_err,
            };
            if let Some(v) = v {
                o.values.insert(r.tensor.clone(), v);
            }
            if r.relu_folded {
                o.remarks.insert(
                    r.tensor.clone(),
                    "ReLU folded into the grid: qdq_err counts the ReLU; read xmodel_err".into(),
                );
            }
        }
        o
    }

    /// `qdq_err` of each row of a per-layer error table.
    pub fn qdq_err(e: &LayerErrors) -> Overlay {
        Overlay::sqnr(Figure::QdqErr, e)
    }

    /// `xmodel_err` of each row of a per-layer error table.
    pub fn xmodel_err(e: &LayerErrors) -> Overlay {
        Overlay::sqnr(Figure::XmodelErr, e)
    }

    /// Each quantized tensor's scale divided by the original model's (per channel: the channel
    /// changed most, by |log k|); a tensor kept in float is remarked, not coloured.
    pub fn scale_change(v: &QuantModel) -> Overlay {
        let original = v.reset();
        let mut o = Overlay::none();
        o.figure = Figure::ScaleChange;
        o.note = format!("{} against {}", v.name(), original.name());
        for before in original.quant_params().rows {
            match v.param(&before.tensor) {
                Ok(now) if now.tensor == before.tensor => {
                    let k = now
                        .scales
                        .iter()
                        .zip(&before.scales)
                        .map(|(&a, &b)| a as f64 / b as f64)
                        .max_by(|a, b| a.ln().abs().total_cmp(&b.ln().abs()))
                        .unwrap_or(1.0);
                    o.values.insert(before.tensor, k);
                }
                _ => {
                    o.remarks.insert(before.tensor, "kept in float".into());
                }
            }
        }
        o
    }

    /// Each activation's share of values outside its grid, % (on images `indices` of `data`,
    /// captured before the QuantizeLinear). Where the grid starts at 0 — a ReLU folded into
    /// the range — values below 0 are the ReLU's work, not clipping, and are not counted (the
    /// tooltip says how many there were). Weights are stored on their grid: nothing to count.
    /// For a TorchScript version, which has no values before rounding, it is
    /// [`Overlay::unavailable`] with that reason.
    pub fn saturation(v: &QuantModel, data: &Dataset, indices: &[usize]) -> Result<Overlay> {
        if indices.is_empty() {
            bail!("saturation needs at least one image");
        }
        if v.framework() == Framework::Torch {
            return Ok(Overlay::unavailable(
                Figure::Saturation,
                TORCH_NO_SATURATION,
            ));
        }
        let acts: Vec<_> = v
            .quant_params()
            .rows
            .into_iter()
            .filter(|p| p.role == Role::Activation)
            .collect();
        let names: Vec<&str> = acts.iter().map(|p| p.tensor.as_str()).collect();
        // Per activation: values, above the grid, below it.
        let mut counts = vec![[0usize; 3]; acts.len()];
        for chunk in indices.chunks(crate::eval::DEFAULT_BATCH) {
            let batch = data.nhwc_batch(chunk);
            let t = v.captured(batch.view(), &names, Memo::Read)?;
            for (p, c) in acts.iter().zip(&mut counts) {
                let values = t
                    .get(&p.tensor)
                    .ok_or_else(|| anyhow!("`{}` was not captured from `{}`", p.tensor, v.name()))?
                    .view()?;
                let (lo, hi) = p.clip_ranges()[0];
                c[0] += values.len();
                for &x in values.iter() {
                    c[1] += usize::from(x > hi);
                    c[2] += usize::from(x < lo);
                }
            }
        }
        let mut o = Overlay::none();
        o.figure = Figure::Saturation;
        o.note = format!("{} on {} images", v.name(), indices.len());
        for (p, [n, above, below]) in acts.iter().zip(counts) {
            let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
            let relu = p.clip_ranges()[0].0 == 0.0;
            let clipped = if relu { above } else { above + below };
            o.values.insert(p.tensor.clone(), pct(clipped));
            o.remarks.insert(
                p.tensor.clone(),
                if relu {
                    format!(
                        "{:.2} % above the grid; grid starts at 0 (a folded ReLU): the {:.2} % \
                         below 0 are the ReLU, not counted",
                        pct(above),
                        pct(below)
                    )
                } else {
                    format!(
                        "{:.2} % above, {:.2} % below the grid",
                        pct(above),
                        pct(below)
                    )
                },
            );
        }
        Ok(o)
    }

    /// Each weight's accuracy drop in a sensitivity sweep (`sensitivity(&m, &data, n,
    /// Knob::Type(QDtype::Int4), ..)`: the accuracy lost when that weight alone goes to 4 bits),
    /// in percentage points; the weights' badges take the colours. A sweep of scales colours
    /// every tensor it changed.
    pub fn sensitivity(s: &Sensitivity) -> Overlay {
        let mut o = Overlay::none();
        o.figure = Figure::SensitivityDrop;
        o.note = format!(
            "{}: {}, one tensor at a time, on {} images (base {:.2} %)",
            s.model,
            s.knob,
            s.images,
            100.0 * s.base_accuracy
        );
        for r in &s.rows {
            o.values.insert(r.tensor.clone(), r.drop_pp);
            o.remarks.insert(
                r.tensor.clone(),
                format!(
                    "{}: {:.2} % (base {:.2} %)",
                    s.knob,
                    100.0 * r.accuracy,
                    100.0 * s.base_accuracy
                ),
            );
        }
        o
    }

    /// The value of `tensor`, if it has one.
    pub fn value(&self, tensor: &str) -> Option<f64> {
        self.values.get(tensor).copied()
    }

    /// The ends of the colour scale.
    pub fn range(&self) -> (f64, f64) {
        let (lo, hi) = crate::charts::span(self.values.values().copied());
        match self.figure {
            Figure::None => (0.0, 1.0),
            Figure::QdqErr | Figure::XmodelErr => {
                let hi = hi.min(SQNR_CAP);
                let lo = lo.min(hi);
                if hi - lo < 1.0 {
                    (hi - 1.0, hi)
                } else {
                    (lo, hi)
                }
            }
            Figure::ScaleChange => {
                let m = lo.log2().abs().max(hi.log2().abs()).max(1.0);
                (2f64.powf(-m), 2f64.powf(m))
            }
            Figure::Saturation | Figure::SensitivityDrop => (0.0, hi.max(1.0)),
        }
    }

    /// Where `v` lies on the colour scale, 0..1.
    fn position(&self, v: f64) -> f64 {
        let (lo, hi) = self.range();
        let t = match self.figure {
            Figure::None => 0.0,
            // Worse to the right: low SQNR.
            Figure::QdqErr | Figure::XmodelErr => (hi - v) / (hi - lo),
            Figure::ScaleChange => (v.log2() - lo.log2()) / (hi.log2() - lo.log2()),
            // A weight that gained accuracy when lowered is at the good end.
            Figure::Saturation | Figure::SensitivityDrop => v / hi,
        };
        if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The colour stops of the scale, left to right.
    pub fn stops(&self) -> &'static [&'static str] {
        match self.figure {
            // A diverging scale: smaller blue, unchanged white, larger red (ColorBrewer RdBu).
            Figure::ScaleChange => &["#2166ac", "#92c5de", "#f7f7f7", "#f4a582", "#b2182b"],
            // Good pale yellow, bad dark red (ColorBrewer YlOrRd).
            _ => &["#ffffcc", "#fed976", "#fd8d3c", "#e31a1c", "#800026"],
        }
    }

    /// The colour of value `v` (`#rrggbb`).
    pub fn colour(&self, v: f64) -> String {
        let stops: Vec<[f64; 3]> = self.stops().iter().map(|s| rgb(s)).collect();
        let t = self.position(v) * (stops.len() - 1) as f64;
        let k = (t.floor() as usize).min(stops.len() - 2);
        let f = t - k as f64;
        let c: Vec<u8> = (0..3)
            .map(|i| (stops[k][i] + f * (stops[k + 1][i] - stops[k][i])).round() as u8)
            .collect();
        format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
    }
}

/// `#rrggbb` as three numbers.
pub(super) fn rgb(hex: &str) -> [f64; 3] {
    let h = hex.trim_start_matches('#');
    let part = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).unwrap_or(0) as f64;
    [part(0), part(2), part(4)]
}
