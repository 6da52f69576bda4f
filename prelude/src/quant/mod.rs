//! The quantization workbench: inspect a quantized model's parameters, edit them copy-on-write
//! into new model versions, capture intermediate tensors and measure per-layer error.
//!
//! ```ignore
//! let m = workbench("resnet8_int8")?;          // version 0: the file as it is
//! m.quant_params()                             // one row per quantized tensor (HTML table)
//! let v = m.with_scale("activation_3", 2.0 * m.param("activation_3")?.scales[0])?;
//! quick(&v, &test, 10)?;                       // a version is a Model like any other
//! v.diff()                                     // what changed against the file
//! v.save("edited.onnx")?;                      // loads in Python onnxruntime
//! ```
//!
//! Versions are values: each edit returns a new [`QuantModel`] that shares the original with
//! its parent and owns its own ONNX Runtime session, created on first use from the edited
//! protobuf. The registry's model of the same file is never touched.

pub mod adaround;
pub mod analysis;
pub mod cache;
pub mod calibrate;
pub mod capture;
pub mod dtype;
pub mod graph;
pub mod onnx_graph;
pub mod repair;
pub mod sqnr;
pub mod torch_script;
pub mod version;

use std::fmt;

use serde::Serialize;
use serde_json::json;

use crate::display::{escape_html, MimeBundle, Rich};

pub use adaround::{adaround, adaround_with, AdaRound, AdaRoundLayer, AdaRoundOptions};
pub use analysis::{
    agreement, compare_models, sensitivity, sweep, Agreement, Comparison, Knob, ParamSweep,
    Sensitivity,
};
pub use calibrate::{calibrate, CalibOptions, Method};
pub use capture::Capture;
pub use dtype::{NoCpuKernel, QDtype};
pub use graph::{graph, Figure, Graph, Overlay};
pub use repair::{repair, repair_chart, Repair, RepairOptions};
pub use sqnr::{sqnr_db, LayerError, LayerErrors};
pub use version::{workbench, Diff, DiffRow, QuantModel, Weights};

/// What a quantization parameter quantizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A tensor computed at run time (quantized by a QuantizeLinear node).
    Activation,
    /// A constant weight tensor.
    Weight,
    /// A constant bias (int32 in ONNX QDQ).
    Bias,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Activation => "activation",
            Role::Weight => "weight",
            Role::Bias => "bias",
        })
    }
}

/// One quantization parameter set: the scale(s) and zero point(s) of one quantized tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantParam {
    /// The name to edit it by: the float tensor an activation quantizes (as in the float
    /// graph), or the weight/bias name (its quantized initializer without `_quantized`).
    pub tensor: String,
    /// Activation, weight or bias.
    pub role: Role,
    /// Integer type.
    pub dtype: QDtype,
    /// One scale (per tensor) or one per channel.
    pub scales: Vec<f32>,
    /// As many zero points as scales.
    pub zero_points: Vec<i32>,
    /// The channel axis of a per-channel parameter.
    pub axis: Option<i64>,
    /// Shape of a weight or bias (empty for activations).
    pub shape: Vec<usize>,
    /// The node computing an activation.
    pub producer: Option<String>,
    /// The nodes reading the dequantized tensor.
    pub consumers: Vec<String>,
    /// The QuantizeLinear node of an activation.
    pub quantize_node: Option<String>,
    /// The DequantizeLinear node(s).
    pub dequantize_nodes: Vec<String>,
    /// Initializer holding the scale(s).
    pub scale_initializer: String,
    /// Initializer holding the zero point(s) (empty when absent).
    pub zero_point_initializer: String,
    /// Initializer holding a weight's or bias's integer values.
    pub quantized_initializer: Option<String>,
    /// The tensor the (first) DequantizeLinear produces.
    pub dequantized_output: Option<String>,
}

impl QuantParam {
    /// Whether it has one scale per channel.
    pub fn per_channel(&self) -> bool {
        self.axis.is_some()
    }
    /// The float range the integer grid covers, per channel: `[(q_min - z)·s, (q_max - z)·s]`.
    pub fn clip_ranges(&self) -> Vec<(f32, f32)> {
        let (lo, hi) = self.dtype.range();
        self.scales
            .iter()
            .zip(&self.zero_points)
            .map(|(&s, &z)| ((lo - z as i64) as f32 * s, (hi - z as i64) as f32 * s))
            .collect()
    }
}

/// Formats a number compactly: fixed for ordinary magnitudes, scientific otherwise.
pub fn fmt_num(x: f64) -> String {
    if x == 0.0 || (1e-3..1e5).contains(&x.abs()) {
        let s = format!("{x:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{x:.4e}")
    }
}

fn list_summary<T: Copy + Into<f64>>(values: &[T]) -> String {
    match values {
        [] => "—".into(),
        [one] => fmt_num((*one).into()),
        many => {
            let min = many.iter().map(|&v| v.into()).fold(f64::INFINITY, f64::min);
            let max = many
                .iter()
                .map(|&v| v.into())
                .fold(f64::NEG_INFINITY, f64::max);
            format!("{} × [{} … {}]", many.len(), fmt_num(min), fmt_num(max))
        }
    }
}

/// Every quantization parameter of a model, as [`QuantModel::quant_params`] returns them.
#[derive(Debug, Clone)]
pub struct QuantParams {
    /// Model (version) name.
    pub model: String,
    /// One row per quantized tensor.
    pub rows: Vec<QuantParam>,
    /// QuantizeLinear nodes in the graph.
    pub quantize_nodes: usize,
    /// DequantizeLinear nodes in the graph.
    pub dequantize_nodes: usize,
    /// The model's framework.
    pub framework: crate::model::Framework,
}

impl QuantParams {
    /// How many rows have `role`.
    pub fn count(&self, role: Role) -> usize {
        self.rows.iter().filter(|r| r.role == role).count()
    }
    /// The rows as a JSON list (what `qplay inspect --json` prints).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.rows).unwrap_or_else(|_| json!([]))
    }
    /// The rows whose tensor, producer or consumers contain `text` (case-insensitive); all
    /// rows for an empty `text`.
    pub fn filter(&self, text: &str) -> QuantParams {
        let needle = text.trim().to_lowercase();
        let hit = |s: &str| s.to_lowercase().contains(&needle);
        QuantParams {
            rows: self
                .rows
                .iter()
                .filter(|r| {
                    needle.is_empty()
                        || hit(&r.tensor)
                        || r.producer.as_deref().is_some_and(hit)
                        || r.consumers.iter().any(|c| hit(c))
                })
                .cloned()
                .collect(),
            ..self.clone()
        }
    }
    fn headline(&self) -> String {
        if self.framework == crate::model::Framework::Torch {
            return format!(
                "{} (TorchScript): {} quantize operand pairs (graph constants or attributes); \
                 {} activations, {} packed weights (biases stay float in PyTorch)",
                self.model,
                self.quantize_nodes,
                self.count(Role::Activation),
                self.count(Role::Weight)
            );
        }
        format!(
            "{}: {} QuantizeLinear, {} DequantizeLinear nodes; {} activations, {} weights, {} biases",
            self.model,
            self.quantize_nodes,
            self.dequantize_nodes,
            self.count(Role::Activation),
            self.count(Role::Weight),
            self.count(Role::Bias)
        )
    }
}

impl fmt::Display for QuantParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<28} {:<10} {:<5} scale {:<32} zero point {}{}",
                r.tensor,
                r.role.to_string(),
                r.dtype.to_string(),
                list_summary(&r.scales),
                list_summary(&r.zero_points),
                r.axis.map(|a| format!(" axis {a}")).unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

impl Rich for QuantParams {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-quant\"><p>{}</p><table><thead><tr><th>tensor</th><th>role</th>\
             <th>dtype</th><th>scale</th><th>zero point</th><th>axis</th><th>shape</th>\
             <th>float range</th><th>producer</th><th>consumers</th><th>Q / DQ nodes</th>\
             </tr></thead><tbody>",
            escape_html(&self.headline())
        );
        for r in &self.rows {
            let ranges = r.clip_ranges();
            let range = match ranges.as_slice() {
                [(lo, hi)] => format!("[{}, {}]", fmt_num(*lo as f64), fmt_num(*hi as f64)),
                _ => format!("{} channels", ranges.len()),
            };
            let nodes: Vec<String> = r
                .quantize_node
                .iter()
                .chain(&r.dequantize_nodes)
                .cloned()
                .collect();
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&r.tensor),
                r.role,
                r.dtype,
                list_summary(&r.scales),
                list_summary(&r.zero_points),
                r.axis.map(|a| a.to_string()).unwrap_or_default(),
                if r.shape.is_empty() {
                    String::new()
                } else {
                    format!("{:?}", r.shape)
                },
                range,
                escape_html(r.producer.as_deref().unwrap_or("")),
                escape_html(&r.consumers.join(", ")),
                escape_html(&nodes.join(", "))
            );
        }
        html += "</tbody></table></div>";
        let mut b = MimeBundle::new();
        b.insert("text/html".into(), html.into());
        b.insert("text/plain".into(), self.to_string().into());
        b
    }
}

crate::evcxr_display_via_rich!(QuantParams);
