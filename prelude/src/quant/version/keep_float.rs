//! Keeping one tensor in float: a version in which a tensor is no longer quantized.
//!
//! ONNX: the tensor's QuantizeLinear/DequantizeLinear pair is removed and the nodes that read
//! the dequantized tensor read the float one instead; a weight or bias becomes a float
//! initializer. Initializers only the removed nodes read (the integers, the scale, the zero
//! point) go too; shared ones stay.
//!
//! An activation whose grid starts at zero (zero point at the type's minimum) clips every
//! negative value: that is how onnxruntime's quantizer folds a ReLU into the Conv or Add before
//! it, and the quantized model has no Relu node of its own there. Keeping such a tensor in
//! float keeps that clipping as a Relu node (exact: no negative value passed the QDQ pair
//! either) and drops only the rounding and the clipping at the top of the range.
//!
//! TorchScript is refused: in a PyTorch FX int8 model the quantized operators
//! (`quantized::conv2d`, `quantized::add`, …) take and return quantized tensors and hold packed
//! int8 weights, so no single tensor can leave the integer path without rewriting the operators
//! around it into their float forms, which the TorchScript archive does not carry.

use anyhow::{anyhow, bail, Result};

use super::{find, Change, QuantModel};
use crate::model::Framework;
use crate::quant::onnx_graph::{
    self,
    proto::{self, tensor_proto::DataType, ModelProto},
};
use crate::quant::{QuantParam, Role};

impl QuantModel {
    /// A new version in which `tensor` is not quantized (its QuantizeLinear/DequantizeLinear pair
    /// removed, the nodes after it reading the float tensor; an activation whose grid starts at
    /// 0 — a ReLU folded into its range — reads it through a Relu). A weight or bias becomes a float
    /// constant holding its *dequantized* values `(q − z)·s`: a version does not know the float
    /// model it was quantized from, so these are the only float values it has (they predict as
    /// the quantized weight did). To get the float model's own weights, use
    /// [`keep_float_from`](Self::keep_float_from). Undo, diff and save work as for every edit.
    /// A tensor that is not quantized, or a TorchScript model, is an error and changes nothing.
    pub fn keep_float(&self, tensor: &str) -> Result<QuantModel> {
        self.keep_float_impl(tensor, None)
    }

    /// [`keep_float`](Self::keep_float), with a weight or bias taking the values of the
    /// initializer of the same name in `float` (the float ONNX model this one was quantized
    /// from, e.g. `workbench("resnet8_float")`) when it has one of the same shape; else the
    /// dequantized values. The edit's entry in the history says which.
    pub fn keep_float_from(&self, tensor: &str, float: &QuantModel) -> Result<QuantModel> {
        self.keep_float_impl(tensor, Some(float))
    }

    fn keep_float_impl(&self, tensor: &str, float: Option<&QuantModel>) -> Result<QuantModel> {
        if self.info.framework == Framework::Torch {
            bail!(
                "keep_float on `{}` is not possible: it is a PyTorch FX int8 TorchScript model, \
                 whose quantized operators (quantized::conv2d, quantized::add, …) take and \
                 return quantized tensors with packed int8 weights, so one tensor cannot run in \
                 float without the float operators the archive does not hold; use the ONNX model",
                self.info.name
            );
        }
        let Some(p) = find(&self.params, tensor).cloned() else {
            return Err(self.not_quantized(tensor));
        };
        let values = match p.role {
            Role::Activation => None,
            Role::Weight | Role::Bias => Some(self.float_values(&p, float)?),
        };
        let what = match &values {
            None if clips_at_zero(&p) => {
                format!(
                    "{} kept in float (a Relu keeps its clipping at 0)",
                    p.tensor
                )
            }
            None => format!("{} kept in float", p.tensor),
            Some((_, source)) => format!("{} kept in float ({source})", p.tensor),
        };
        self.edit(what, &p, Change::KeepFloat(values.map(|(v, _)| v)))
    }

    /// The float values a weight or bias gets, and where they came from.
    pub(super) fn float_values(
        &self,
        p: &QuantParam,
        float: Option<&QuantModel>,
    ) -> Result<(Vec<f32>, String)> {
        if let Some(f) = float {
            let proto = f.proto()?;
            if let Some(t) = onnx_graph::initializer(proto, &p.tensor) {
                let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
                if let (true, Ok(values)) = (dims == p.shape, onnx_graph::floats(t)) {
                    return Ok((values, format!("{}'s weights", f.info.name)));
                }
            }
        }
        let w = self.weights(&p.tensor)?;
        Ok((
            w.dequantized.iter().copied().collect(),
            "dequantized values".into(),
        ))
    }

    /// The error for a tensor keep_float cannot take: already in float, a float tensor of the
    /// graph, or unknown; it lists the tensors that are allowed.
    fn not_quantized(&self, tensor: &str) -> anyhow::Error {
        let names: Vec<&str> = self.params.iter().map(|p| p.tensor.as_str()).collect();
        let allowed = if names.is_empty() {
            "it has no quantized tensors left".to_string()
        } else {
            format!(
                "keep_float takes one of its quantized tensors: {}",
                names.join(", ")
            )
        };
        let was = self.original.params.iter().any(|p| p.tensor == tensor);
        let in_graph = self.proto().is_ok_and(|m| graph_has(m, tensor));
        let what = if was {
            "is already in float (an earlier edit kept it)"
        } else if in_graph {
            "is not quantized (a float tensor of the graph)"
        } else {
            "is not a tensor of the model"
        };
        anyhow!("`{tensor}` in `{}` {what}; {allowed}", self.info.name)
    }
}

/// Whether some node or initializer of the graph has a tensor `name`.
fn graph_has(model: &ModelProto, name: &str) -> bool {
    model.graph.as_ref().is_some_and(|g| {
        g.initializer.iter().any(|t| t.name() == name)
            || g.input.iter().any(|i| i.name() == name)
            || g.node
                .iter()
                .any(|n| n.output.iter().chain(&n.input).any(|t| t == name))
    })
}

/// Removes `p`'s QDQ pair from `model` (see the module): an activation's readers read the
/// tensor the QuantizeLinear read (through a new Relu when its grid starts at zero); a
/// weight's or bias's read a new float initializer holding `values` (named as the tensor when
/// that name is free).
pub(super) fn remove_qdq(
    model: &mut ModelProto,
    p: &QuantParam,
    values: Option<&[f32]>,
) -> Result<()> {
    let g = model
        .graph
        .as_mut()
        .ok_or_else(|| anyhow!("ONNX model has no graph"))?;
    let removed: Vec<&str> = p
        .quantize_node
        .iter()
        .chain(&p.dequantize_nodes)
        .map(String::as_str)
        .collect();
    let is_removed = |n: &proto::NodeProto| removed.contains(&n.name());
    let dq_outputs: Vec<String> = g
        .node
        .iter()
        .filter(|n| p.dequantize_nodes.iter().any(|d| d == n.name()))
        .filter_map(|n| n.output.first().cloned())
        .collect();
    if dq_outputs.is_empty() {
        bail!("`{}` has no DequantizeLinear node to remove", p.tensor);
    }
    let source = match (p.role, values) {
        (Role::Activation, _) => {
            let q_out = g
                .node
                .iter()
                .find(|n| Some(n.name()) == p.quantize_node.as_deref())
                .and_then(|n| n.output.first().cloned())
                .ok_or_else(|| anyhow!("`{}` has no QuantizeLinear node", p.tensor))?;
            if let Some(other) = g
                .node
                .iter()
                .find(|n| !is_removed(n) && n.input.contains(&q_out))
            {
                bail!(
                    "`{}`'s quantized values are read by `{}` ({}), not only by its \
                     DequantizeLinear nodes; keep_float removes QuantizeLinear/DequantizeLinear \
                     pairs only",
                    p.tensor,
                    other.name(),
                    other.op_type()
                );
            }
            if clips_at_zero(p) {
                free_name(g, &format!("{}_relu", p.tensor))
            } else {
                p.tensor.clone()
            }
        }
        (_, None) => bail!("`{}` needs float values to be kept in float", p.tensor),
        (_, Some(values)) => {
            let taken = |name: &str| {
                g.initializer.iter().any(|t| t.name() == name)
                    || g.node
                        .iter()
                        .any(|n| !is_removed(n) && n.output.iter().any(|o| o == name))
            };
            let name = if taken(&p.tensor) {
                free_name(g, &format!("{}_float", p.tensor))
            } else {
                p.tensor.clone()
            };
            g.initializer.push(proto::TensorProto {
                name: Some(name.clone()),
                dims: p.shape.iter().map(|&d| d as i64).collect(),
                data_type: Some(DataType::Float as i32),
                raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
                ..Default::default()
            });
            name
        }
    };
    let gone: Vec<String> = g
        .node
        .iter()
        .filter(|n| is_removed(n))
        .flat_map(|n| n.output.clone())
        .collect();
    g.node.retain(|n| !removed.contains(&n.name()));
    for input in g.node.iter_mut().flat_map(|n| n.input.iter_mut()) {
        if dq_outputs.contains(input) {
            *input = source.clone();
        }
    }
    if p.role == Role::Activation && source != p.tensor {
        // Right after the producer, so that the nodes stay in topological order.
        let at = g
            .node
            .iter()
            .position(|n| n.output.contains(&p.tensor))
            .map_or(0, |i| i + 1);
        g.node.insert(
            at,
            proto::NodeProto {
                name: Some(source.clone()),
                op_type: Some("Relu".into()),
                input: vec![p.tensor.clone()],
                output: vec![source.clone()],
                ..Default::default()
            },
        );
    }
    // A dequantized tensor that is a graph output keeps its name, now a copy of the float one.
    for out in &dq_outputs {
        if *out != source && g.output.iter().any(|o| o.name() == out) {
            g.node.push(proto::NodeProto {
                name: Some(format!("{out}_kept_float")),
                op_type: Some("Identity".into()),
                input: vec![source.clone()],
                output: vec![out.clone()],
                ..Default::default()
            });
        }
    }
    let read = |g: &proto::GraphProto, name: &str| {
        g.node.iter().any(|n| n.input.iter().any(|i| i == name))
            || g.output.iter().any(|o| o.name() == name)
    };
    let inits = [
        p.quantized_initializer.clone().unwrap_or_default(),
        p.scale_initializer.clone(),
        p.zero_point_initializer.clone(),
    ];
    for init in inits.iter().filter(|i| !i.is_empty()) {
        if !read(g, init) {
            g.initializer.retain(|t| t.name() != init);
        }
    }
    // Type annotations of the tensors the removed nodes produced.
    let stale: Vec<String> = gone
        .into_iter()
        .filter(|t| !g.node.iter().any(|n| n.output.contains(t)))
        .collect();
    g.value_info
        .retain(|v| !stale.iter().any(|s| s == v.name()));
    Ok(())
}

/// Whether `p`'s grid starts at zero, so that its QuantizeLinear clips every negative value:
/// onnxruntime's quantizer folds a ReLU into the range of the Conv/Add before it this way.
fn clips_at_zero(p: &QuantParam) -> bool {
    p.role == Role::Activation && p.clip_ranges().iter().all(|&(lo, _)| lo == 0.0)
}

/// `base`, or `base_1`, `base_2`, … : the first name no tensor of the graph has.
fn free_name(g: &proto::GraphProto, base: &str) -> String {
    let taken = |name: &str| {
        g.initializer.iter().any(|t| t.name() == name)
            || g.input.iter().any(|i| i.name() == name)
            || g.node.iter().any(|n| n.output.iter().any(|o| o == name))
    };
    (0..)
        .map(|i| {
            if i == 0 {
                base.to_string()
            } else {
                format!("{base}_{i}")
            }
        })
        .find(|n| !taken(n))
        .expect("an unbounded range has a free name")
}
