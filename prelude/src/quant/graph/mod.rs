//! The model's graph, drawn: operators as boxes laid out top to bottom, each
//! QuantizeLinear/DequantizeLinear pair folded into the edge it quantizes (marked with its
//! dtype), weights and biases as small badges on their operator, and an optional overlay that
//! colours nodes and edges by one per-tensor figure (see [`Overlay`]).
//!
//! ```ignore
//! let g = graph(&v)?;                                        // layout once
//! g.with(Overlay::xmodel_err(&layer_errors(&float, &v, &test, &idx)?))  // recolour, shown as SVG
//! ```
//!
//! `mod.rs` reads an ONNX graph out of the protobuf (folding the QDQ pairs), `torch.rs` a
//! quantized TorchScript module's root `forward` graph (a box per submodule call and per op,
//! quantize and dequantize folded), `layout.rs` places either, `overlay.rs` computes the figures
//! and their colours, `svg.rs` draws it.

mod layout;
mod overlay;
pub(crate) mod svg;
mod torch;

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::onnx_graph::proto::ModelProto;
use super::onnx_graph::{self};
use super::{QuantModel, QuantParam, Role};
use crate::display::{MimeBundle, Rich, Svg};
use crate::model::{Framework, Model};

pub use layout::Layout;
pub use overlay::{Figure, Overlay};

/// What a box of the graph stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A graph input.
    Input,
    /// An operator (QuantizeLinear/DequantizeLinear pairs are folded into edges, not nodes).
    Op,
    /// A graph output.
    Output,
}

/// A constant input of an operator, drawn as a badge on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Badge {
    /// The weight's or bias's name (as in the parameter table; the initializer's name when it
    /// is not quantized).
    pub tensor: String,
    /// Weight or bias (a float constant in the bias slot of a Conv/Gemm counts as a bias).
    pub role: Role,
    /// Its integer type (`int8`, …), or `float` when it is not quantized.
    pub dtype: String,
}

/// One box.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The node's name (the tensor's name for inputs and outputs).
    pub name: String,
    /// The ONNX op type (`Conv`, …), or `input` / `output`.
    pub op: String,
    /// Input, operator or output.
    pub kind: NodeKind,
    /// Its weights and biases.
    pub badges: Vec<Badge>,
}

/// One arrow: a float tensor from one box to another, quantized on the way when a
/// QuantizeLinear/DequantizeLinear pair sat between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Index of the producing node.
    pub from: usize,
    /// Index of the consuming node.
    pub to: usize,
    /// The float tensor (the name the parameter table and the SQNR table use).
    pub tensor: String,
    /// The dtype of the folded QDQ pair, `None` when the tensor travels in float.
    pub dtype: Option<String>,
}

/// A model's graph, laid out, with an overlay (none at first). Shows as SVG.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The model (version) name.
    pub model: String,
    /// The boxes, in graph order (inputs first, outputs last).
    pub nodes: Vec<Node>,
    /// The arrows.
    pub edges: Vec<Edge>,
    /// Where everything goes.
    pub layout: Layout,
    /// The figure nodes and edges are coloured by.
    pub overlay: Overlay,
    /// The version's quantization parameters (for the tooltips).
    params: Vec<QuantParam>,
}

/// The graph of a version (ONNX or TorchScript), laid out.
pub fn graph(v: &QuantModel) -> Result<Graph> {
    let params = v.quant_params().rows;
    let (nodes, edges) = match v.framework() {
        Framework::Torch => torch::fold(v)?,
        Framework::Onnx => fold(v.proto()?, &params)?,
    };
    laid_out(v.name(), nodes, edges, &params)
}

/// The graph of an ONNX QDQ protobuf whose parameter table is `params`.
pub fn graph_of(name: &str, proto: &ModelProto, params: &[QuantParam]) -> Result<Graph> {
    let (nodes, edges) = fold(proto, params)?;
    laid_out(name, nodes, edges, params)
}

fn laid_out(
    name: &str,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    params: &[QuantParam],
) -> Result<Graph> {
    let layout = Layout::of(&nodes, &edges)?;
    Ok(Graph {
        model: name.to_string(),
        nodes,
        edges,
        layout,
        overlay: Overlay::none(),
        params: params.to_vec(),
    })
}

/// Where an operator's input comes from, once the QDQ pairs are looked through.
enum Source {
    /// The output `tensor` of node or graph input `from` (an index into the nodes), quantized
    /// by `param` on the way when set.
    Tensor {
        from: usize,
        tensor: String,
        param: Option<usize>,
    },
    /// A constant: a weight or bias (the parameter's row, or the float initializer's name).
    Const(Result<usize, String>),
}

/// The boxes and arrows of `proto`, with every QuantizeLinear/DequantizeLinear pair folded
/// into the edge it quantizes and every constant into a badge.
fn fold(proto: &ModelProto, params: &[QuantParam]) -> Result<(Vec<Node>, Vec<Edge>)> {
    let Some(g) = proto.graph.as_ref() else {
        bail!("graph: the ONNX model has no graph");
    };
    let is_init = |name: &str| g.initializer.iter().any(|t| t.name() == name);
    let is_qdq = |op: &str| op == "QuantizeLinear" || op == "DequantizeLinear";
    let mut nodes = Vec::new();
    let mut made_by: BTreeMap<&str, usize> = BTreeMap::new();
    for input in g.input.iter().filter(|i| !is_init(i.name())) {
        made_by.insert(input.name(), nodes.len());
        nodes.push(Node {
            name: input.name().to_string(),
            op: "input".into(),
            kind: NodeKind::Input,
            badges: Vec::new(),
        });
    }
    // The node (of the protobuf) writing each tensor.
    let mut writer: BTreeMap<&str, &onnx_graph::proto::NodeProto> = BTreeMap::new();
    for n in &g.node {
        for out in &n.output {
            writer.insert(out, n);
        }
        if !is_qdq(n.op_type()) {
            for out in &n.output {
                made_by.insert(out, nodes.len());
            }
            nodes.push(Node {
                name: n.name().to_string(),
                op: n.op_type().to_string(),
                kind: NodeKind::Op,
                badges: Vec::new(),
            });
        }
    }
    let resolve = |start: &str| -> Result<Source> {
        let mut tensor = start.to_string();
        let mut param = None;
        loop {
            if let Some(&from) = made_by.get(tensor.as_str()) {
                return Ok(Source::Tensor {
                    from,
                    tensor,
                    param,
                });
            }
            if is_init(&tensor) {
                return Ok(Source::Const(Err(tensor)));
            }
            let Some(n) = writer.get(tensor.as_str()) else {
                bail!("graph: tensor `{tensor}` has no producer and is no input or initializer");
            };
            let Some(x) = n.input.first() else {
                bail!("graph: node `{}` has no input", n.name());
            };
            if n.op_type() == "DequantizeLinear" && is_init(x) {
                let row = params
                    .iter()
                    .position(|p| p.quantized_initializer.as_deref() == Some(x.as_str()));
                return Ok(Source::Const(row.ok_or_else(|| x.clone())));
            }
            if n.op_type() == "QuantizeLinear" && param.is_none() {
                param = params
                    .iter()
                    .position(|p| p.quantize_node.as_deref() == Some(n.name()));
            }
            tensor = x.clone();
        }
    };
    let mut edges = Vec::new();
    let first_op = nodes
        .iter()
        .take_while(|n| n.kind == NodeKind::Input)
        .count();
    let ops = g.node.iter().filter(|n| !is_qdq(n.op_type()));
    for (n, to) in ops.zip(first_op..) {
        for (slot, input) in n.input.iter().enumerate().filter(|(_, i)| !i.is_empty()) {
            match resolve(input)? {
                Source::Tensor {
                    from,
                    tensor,
                    param,
                } => edges.push(Edge {
                    from,
                    to,
                    tensor,
                    dtype: param.map(|p| params[p].dtype.to_string()),
                }),
                Source::Const(Ok(row)) => nodes[to].badges.push(Badge {
                    tensor: params[row].tensor.clone(),
                    role: params[row].role,
                    dtype: params[row].dtype.to_string(),
                }),
                Source::Const(Err(init)) => nodes[to].badges.push(Badge {
                    tensor: init,
                    role: if slot == 2 { Role::Bias } else { Role::Weight },
                    dtype: "float".into(),
                }),
            }
        }
    }
    for out in &g.output {
        let to = nodes.len();
        nodes.push(Node {
            name: out.name().to_string(),
            op: "output".into(),
            kind: NodeKind::Output,
            badges: Vec::new(),
        });
        if let Source::Tensor {
            from,
            tensor,
            param,
        } = resolve(out.name())?
        {
            edges.push(Edge {
                from,
                to,
                tensor,
                dtype: param.map(|p| params[p].dtype.to_string()),
            });
        }
    }
    Ok((nodes, edges))
}

/// A larger graph to measure and test the drawing with: `copies` copies of `proto`'s graph in
/// a chain, every node and every tensor but the initializers renamed per copy, copy k reading
/// copy k−1's output where the model reads its input. The initializers are shared; the result
/// is for drawing, not for running.
pub fn chained(proto: &ModelProto, copies: usize) -> ModelProto {
    let mut out = proto.clone();
    let Some(g) = proto.graph.as_ref() else {
        return out;
    };
    let input = g
        .input
        .first()
        .map(|i| i.name().to_string())
        .unwrap_or_default();
    let output = g
        .output
        .first()
        .map(|o| o.name().to_string())
        .unwrap_or_default();
    let is_init = |t: &str| g.initializer.iter().any(|i| i.name() == t);
    let rename = |t: &str, k: usize| -> String {
        if t.is_empty() || is_init(t) {
            t.to_string()
        } else if t == input {
            if k == 0 {
                t.to_string()
            } else {
                format!("{output}__{}", k - 1)
            }
        } else {
            format!("{t}__{k}")
        }
    };
    let Some(og) = out.graph.as_mut() else {
        return out;
    };
    og.node.clear();
    for k in 0..copies {
        for n in &g.node {
            let mut n = n.clone();
            n.name = Some(format!("{}__{k}", n.name()));
            n.input = n.input.iter().map(|t| rename(t, k)).collect();
            n.output = n.output.iter().map(|t| rename(t, k)).collect();
            og.node.push(n);
        }
    }
    for o in &mut og.output {
        o.name = Some(rename(o.name(), copies.saturating_sub(1)));
    }
    out
}

impl Graph {
    /// The same graph coloured by `overlay` (the layout is kept: recolouring places nothing).
    pub fn with(&self, overlay: Overlay) -> Graph {
        Graph {
            overlay,
            ..self.clone()
        }
    }

    /// The index of the node named `name`.
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The float tensor a node writes (the first one an edge carries), the tensor the node's
    /// colour stands for.
    pub fn output_tensor(&self, node: usize) -> Option<&str> {
        self.edges
            .iter()
            .find(|e| e.from == node)
            .map(|e| e.tensor.as_str())
    }

    /// Every tensor the picture names — what the edges carry, then the weights and biases —
    /// each once, in drawing order.
    pub fn tensors(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let edges = self.edges.iter().map(|e| &e.tensor);
        let badges = self
            .nodes
            .iter()
            .flat_map(|n| n.badges.iter().map(|b| &b.tensor));
        for t in edges.chain(badges) {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }

    /// The same drawing with the quantization parameters of version `v` of the same model in
    /// its tooltips (an edit moves numbers, not boxes; a version whose QDQ pairs differ, as
    /// after `keep_float`, needs its own [`graph`]).
    pub fn for_version(&self, v: &QuantModel) -> Graph {
        Graph {
            model: v.name().to_string(),
            params: v.quant_params().rows,
            ..self.clone()
        }
    }

    /// The parameter of `tensor` in this version, if it is quantized.
    pub fn param(&self, tensor: &str) -> Option<&QuantParam> {
        self.params.iter().find(|p| p.tensor == tensor)
    }

    /// The picture, as SVG.
    pub fn svg(&self) -> Svg {
        Svg(svg::draw(self))
    }

    /// One line per operator: its layer, name, op, what it writes and the overlay's value.
    fn summary(&self) -> String {
        let mut out = format!(
            "graph of {}: {} operators, {} edges ({} quantized), {} layers; overlay: {}\n",
            self.model,
            self.nodes.iter().filter(|n| n.kind == NodeKind::Op).count(),
            self.edges.len(),
            self.edges.iter().filter(|e| e.dtype.is_some()).count(),
            self.layout.layers(),
            self.overlay.figure.name()
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let tensor = self.output_tensor(i).unwrap_or("");
            let value = self
                .overlay
                .value(tensor)
                .map(|v| format!("  {}", self.overlay.figure.format(v)))
                .unwrap_or_default();
            out += &format!(
                "  {:>3}  {:<20} {:<12} {}{value}\n",
                self.layout.layer[i], n.name, n.op, tensor
            );
        }
        out
    }
}

impl Rich for Graph {
    fn mime_bundle(&self) -> MimeBundle {
        let mut b = self.svg().mime_bundle();
        b.insert("text/plain".into(), self.summary().into());
        b
    }
}

crate::evcxr_display_via_rich!(Graph);
