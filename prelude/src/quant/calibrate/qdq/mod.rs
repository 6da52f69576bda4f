//! Where QuantizeLinear/DequantizeLinear go in a float graph, and writing them there — the
//! placement of onnxruntime's QDQ quantizer (`qdq_quantizer.py` and its operator classes), so
//! that a calibrated model has the structure, names and numbers `quantize_static` gives:
//!
//! - Conv/Gemm/MatMul: the data input and the output are activations; the weight is quantized
//!   (per channel on axis 0 for Conv, on the output axis for Gemm/MatMul) and stored as integers
//!   behind a DequantizeLinear; the bias becomes int32 with scale `input × weight` (× Gemm's beta).
//! - Relu/Clip: with asymmetric activations, removed: the producer writes the Relu's output,
//!   whose range (≥ 0) makes the clipping implicit.
//! - Transpose/Reshape/Flatten/AveragePool/MaxPool/…: the output shares the input's scale and
//!   zero point, when the input is quantized.
//! - Add/Mul/Softmax/Concat/…: every float input and the output are activations (a Softmax
//!   output's range is 0..1).
//! - Nodes excluded by name, and ops outside this list, stay float.
//!
//! Names follow onnxruntime: `{t}_QuantizeLinear`, `{t}_DequantizeLinear_Output`, `{t}_scale`,
//! `{t}_zero_point`, `{w}_quantized`, `{b}_quantized_scale`, …

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use super::super::onnx_graph::proto::{
    self, tensor_proto::DataType, AttributeProto, ModelProto, NodeProto,
};

mod write;

pub use write::{write, Numbers};

/// Op types onnxruntime's static quantization considers by default.
const QUANTIZED_OPS: &[&str] = &[
    "Add",
    "ArgMax",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Conv",
    "ConvTranspose",
    "CumSum",
    "EmbedLayerNormalization",
    "Flatten",
    "Gather",
    "GatherElements",
    "Gemm",
    "GlobalAveragePool",
    "InstanceNormalization",
    "LayerNormalization",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "Relu",
    "Reshape",
    "Resize",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Squeeze",
    "TopK",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Ops whose output shares its input's quantization.
const SHARING_OPS: &[&str] = &[
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "AveragePool",
    "MaxPool",
    "Slice",
    "TopK",
];

/// Ops that quantize every input and output as activations.
const PLAIN_OPS: &[&str] = &[
    "Add",
    "Mul",
    "Softmax",
    "Concat",
    "GlobalAveragePool",
    "Sigmoid",
    "LeakyRelu",
    "Where",
];

/// Ops in [`QUANTIZED_OPS`] whose special placement is not reproduced here.
const UNSUPPORTED: &[&str] = &[
    "ArgMax",
    "BatchNormalization",
    "CumSum",
    "EmbedLayerNormalization",
    "Gather",
    "GatherElements",
    "InstanceNormalization",
    "LayerNormalization",
    "Pad",
    "Resize",
    "Split",
];

/// What decides the placement.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Weights per channel.
    pub per_channel: bool,
    /// Symmetric activations (then ReLUs stay, quantized on both sides).
    pub symmetric_activations: bool,
    /// Nodes left in float, by name.
    pub exclude: Vec<String>,
}

/// A tensor marked for quantization.
#[derive(Debug, Clone, PartialEq)]
enum Mark {
    /// Its own range.
    Activation,
    /// The quantization of the input of node `node`'s input `from`.
    Shared { from: String },
    /// A weight, per channel on `axis`.
    Weight { axis: Option<i64> },
}

/// A bias to store as int32.
#[derive(Debug, Clone)]
struct Bias {
    name: String,
    input: String,
    weight: String,
    beta: f32,
}

/// The placement of a model's quantizers (before any range is known).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Tensors to quantize, in the order they were marked.
    marks: Vec<(String, Mark)>,
    biases: Vec<Bias>,
    /// Producers' outputs renamed (a removed ReLU's input → its output).
    renames: Vec<(String, String)>,
    /// Nodes removed (by index in the float graph).
    removed: BTreeSet<usize>,
    /// Ranges replaced: a tensor takes the range of another (a ReLU's input its output's).
    range_of: BTreeMap<String, String>,
    /// Softmax outputs: range 0..1.
    unit_range: BTreeSet<String>,
}

fn attribute<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

/// The float tensors of a graph: float initializers, typed inputs/outputs/value infos, and
/// node outputs without a declared type (shape inference would call them float here).
fn float_tensors(g: &proto::GraphProto) -> BTreeSet<String> {
    let float = DataType::Float as i32;
    let mut out = BTreeSet::new();
    let typed = g.input.iter().chain(&g.output).chain(&g.value_info);
    let mut declared = BTreeSet::new();
    for vi in typed {
        declared.insert(vi.name().to_string());
        let elem = vi
            .r#type
            .as_ref()
            .and_then(|t| match &t.value {
                Some(proto::type_proto::Value::TensorType(t)) => t.elem_type,
                _ => None,
            })
            .unwrap_or(0);
        if elem == float {
            out.insert(vi.name().to_string());
        }
    }
    for t in &g.initializer {
        if t.data_type == Some(float) {
            out.insert(t.name().to_string());
        }
    }
    for n in &g.node {
        for o in &n.output {
            if !declared.contains(o) {
                out.insert(o.clone());
            }
        }
    }
    out
}

impl Plan {
    /// Places the quantizers of `model` as onnxruntime's QDQ quantizer does.
    pub fn new(model: &ModelProto, how: &Placement) -> Result<Plan> {
        let g = model
            .graph
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("ONNX model has no graph"))?;
        let floats = float_tensors(g);
        let initializers: BTreeSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
        let graph_io: BTreeSet<&str> = g.input.iter().chain(&g.output).map(|v| v.name()).collect();
        let mut readers: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &g.node {
            for i in &n.input {
                *readers.entry(i.as_str()).or_default() += 1;
            }
        }
        let mut plan = Plan {
            marks: Vec::new(),
            biases: Vec::new(),
            renames: Vec::new(),
            removed: BTreeSet::new(),
            range_of: BTreeMap::new(),
            unit_range: BTreeSet::new(),
        };
        for (index, node) in g.node.iter().enumerate() {
            let op = node.op_type();
            if !QUANTIZED_OPS.contains(&op) || how.exclude.iter().any(|e| e == node.name()) {
                continue;
            }
            if UNSUPPORTED.contains(&op) {
                bail!(
                    "node `{}` is a {op}, which qplay's calibrator does not place quantizers \
                     for yet; exclude it (CalibOptions::exclude) to keep it in float",
                    node.name()
                );
            }
            let input = |k: usize| node.input.get(k).map(String::as_str).unwrap_or("");
            let output = node.output.first().map(String::as_str).unwrap_or("");
            match op {
                "Conv" | "ConvTranspose" | "Gemm" => {
                    plan.activation(input(0), &floats);
                    plan.activation(output, &floats);
                    let axis = if op == "Gemm" {
                        let trans_b = attribute(node, "transB").and_then(|a| a.i).unwrap_or(0);
                        if trans_b != 0 {
                            0
                        } else {
                            1
                        }
                    } else if op == "Conv" {
                        0
                    } else {
                        1
                    };
                    plan.weight(input(1), how.per_channel.then_some(axis), &floats);
                    if node.input.len() == 3 && initializers.contains(input(2)) {
                        let beta = if op == "Gemm" {
                            attribute(node, "beta").and_then(|a| a.f).unwrap_or(1.0)
                        } else {
                            1.0
                        };
                        plan.biases.push(Bias {
                            name: input(2).to_string(),
                            input: input(0).to_string(),
                            weight: input(1).to_string(),
                            beta,
                        });
                    }
                }
                "MatMul" => {
                    for t in node.input.iter().chain(&node.output) {
                        if initializers.contains(t.as_str()) {
                            plan.weight(t, how.per_channel.then_some(1), &floats);
                        } else {
                            plan.activation(t, &floats);
                        }
                    }
                }
                "Relu" | "Clip" => {
                    let upstream = input(0);
                    if !plan.is_marked(upstream) {
                        continue;
                    }
                    if readers.get(upstream) == Some(&1) {
                        plan.range_of
                            .insert(upstream.to_string(), output.to_string());
                    }
                    let removable = !how.symmetric_activations
                        && readers.get(upstream) == Some(&1)
                        && !graph_io.contains(upstream);
                    if removable {
                        plan.renames
                            .push((upstream.to_string(), output.to_string()));
                        plan.marks.retain(|(t, _)| t != upstream);
                        plan.removed.insert(index);
                    } else {
                        plan.activation(upstream, &floats);
                    }
                    plan.activation(output, &floats);
                }
                op if SHARING_OPS.contains(&op)
                    && plan.is_marked(input(0))
                    && floats.contains(output) =>
                {
                    plan.marks.push((
                        output.to_string(),
                        Mark::Shared {
                            from: input(0).to_string(),
                        },
                    ));
                }
                op if PLAIN_OPS.contains(&op) => {
                    for t in node.input.iter().chain(&node.output) {
                        plan.activation(t, &floats);
                    }
                    if op == "Softmax" {
                        plan.unit_range.insert(output.to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(plan)
    }

    fn is_marked(&self, tensor: &str) -> bool {
        self.marks.iter().any(|(t, _)| t == tensor) || self.biases.iter().any(|b| b.name == tensor)
    }

    fn activation(&mut self, tensor: &str, floats: &BTreeSet<String>) {
        if !tensor.is_empty() && floats.contains(tensor) && !self.is_marked(tensor) {
            self.marks.push((tensor.to_string(), Mark::Activation));
        }
    }

    fn weight(&mut self, tensor: &str, axis: Option<i64>, floats: &BTreeSet<String>) {
        if !tensor.is_empty() && floats.contains(tensor) && !self.is_marked(tensor) {
            self.marks.push((tensor.to_string(), Mark::Weight { axis }));
        }
    }

    /// The tensors whose ranges calibration must measure (activations that are not
    /// initializers, and the ReLU outputs whose ranges they take).
    pub fn measured(&self, model: &ModelProto) -> Vec<String> {
        let initializers: BTreeSet<&str> = model
            .graph
            .iter()
            .flat_map(|g| g.initializer.iter().map(|t| t.name()))
            .collect();
        let mut out = Vec::new();
        for (t, m) in &self.marks {
            if *m != Mark::Activation || initializers.contains(t.as_str()) {
                continue;
            }
            if self.unit_range.contains(t) {
                continue;
            }
            let source = self.range_of.get(t).unwrap_or(t);
            if !out.contains(source) {
                out.push(source.clone());
            }
        }
        out
    }

    /// The activations with their own quantization, by the name their parameter has.
    pub fn activations(&self) -> Vec<String> {
        self.marks
            .iter()
            .filter(|(_, m)| *m == Mark::Activation)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The weight tensors (per-channel axis or none), in order.
    pub fn weights(&self) -> Vec<(String, Option<i64>)> {
        self.marks
            .iter()
            .filter_map(|(t, m)| match m {
                Mark::Weight { axis } => Some((t.clone(), *axis)),
                _ => None,
            })
            .collect()
    }
}
