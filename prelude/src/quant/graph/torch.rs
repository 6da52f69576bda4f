//! The boxes and arrows of a quantized TorchScript version, from its root `forward` graph (as
//! `csrc/torchscript_graph.cpp` lists it): each submodule call is one box (`conv2d_3`, class
//! `ConvReLU2d`), with its packed weight as a W badge and its float bias as a B badge; each
//! other op of the root graph (`quantized::add_relu`, `aten::permute`, `aten::flatten`) is a
//! box too. `aten::quantize_per_tensor` and `aten::dequantize` are folded into the edge they sit
//! on, as the ONNX reader folds QDQ pairs.
//!
//! Edges carry the names of the parameter table. A quantized tensor travels on the grid of
//! the op that rounded it last: a quantize op (the parameter at its node), a quantized op of the
//! root graph, or a submodule whose forward returns a quantized op's output (the parameter of
//! that op). An op that only moves values (a permute, a pad, a pool, a flatten) keeps its
//! input's grid, so its output edge carries the same parameter: an edit of that parameter moves
//! those tensors too. A float tensor is named by the box that writes it.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};

use super::{Badge, Edge, Node, NodeKind};
use crate::model::Model;
use crate::quant::torch_script::Location;
use crate::quant::{QDtype, QuantModel, QuantParam, Role};

/// What travels on a value of the root graph: who wrote it, under which name, on whose grid.
#[derive(Clone)]
struct Carried {
    /// The box that wrote it.
    from: usize,
    /// The edge's tensor name.
    tensor: String,
    /// The parameter whose grid the value was rounded to (a row of the table).
    param: Option<usize>,
    /// Still a quantized tensor (no dequantize since).
    quantized: bool,
}

/// PyTorch's name of a quantized dtype (`quint8`, `qint8`).
fn torch_dtype(d: QDtype) -> String {
    format!("q{d}")
}

/// The boxes and arrows of TorchScript version `v`.
pub(super) fn fold(v: &QuantModel) -> Result<(Vec<Node>, Vec<Edge>)> {
    let Some((script, locations)) = v.torch_script_with_locations() else {
        bail!("graph: `{}` is not a TorchScript model", v.name());
    };
    let params = v.quant_params().rows;
    let listing = script
        .graph_listing()
        .with_context(|| format!("graph: cannot read the forward graph of `{}`", v.name()))?;
    // The activation row quantized by operands of node `node` of module `module`.
    let activation_at = |module: i64, node: i64| {
        locations.iter().position(|l| {
            matches!(l, Location::Operand { module: m, node: n, .. } if *m == module && *n == node)
        })
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut edges: Vec<Edge> = Vec::new();
    let mut values: BTreeMap<u64, Carried> = BTreeMap::new();
    let mut outputs = Vec::new();
    let edge = |c: &Carried, to: usize| Edge {
        from: c.from,
        to,
        tensor: c.tensor.clone(),
        dtype: c.param.map(|p| torch_dtype(params[p].dtype)),
    };
    for line in listing.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let num = |i: usize| -> Result<i64> {
            f.get(i)
                .ok_or_else(|| anyhow!("graph: short line from the shim: {line}"))?
                .parse()
                .with_context(|| format!("graph: bad number in: {line}"))
        };
        let inputs = |i: usize| -> Result<Vec<Carried>> {
            let list = f.get(i).copied().unwrap_or("");
            Ok(list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("graph: bad inputs in: {line}"))?
                .iter()
                .filter_map(|id| values.get(id).cloned())
                .collect())
        };
        match f.as_slice() {
            ["I", _, name] => {
                values.insert(
                    num(1)? as u64,
                    Carried {
                        from: nodes.len(),
                        tensor: name.to_string(),
                        param: None,
                        quantized: false,
                    },
                );
                nodes.push(Node {
                    name: name.to_string(),
                    op: "input".into(),
                    kind: NodeKind::Input,
                    badges: Vec::new(),
                });
            }
            ["N", _, _, "aten::quantize_per_tensor", ..] => {
                let Some(x) = inputs(4)?.into_iter().next() else {
                    continue;
                };
                let param = activation_at(0, num(1)?);
                let carried = Carried {
                    tensor: param.map_or(x.tensor.clone(), |p| params[p].tensor.clone()),
                    param,
                    quantized: true,
                    ..x
                };
                values.insert(num(2)? as u64, carried);
            }
            ["N", _, _, "aten::dequantize", ..] => {
                if let Some(x) = inputs(4)?.into_iter().next() {
                    let carried = Carried {
                        quantized: false,
                        ..x
                    };
                    values.insert(num(2)? as u64, carried);
                }
            }
            ["N", _, _, op, ..] | ["C", _, _, _, _, op, ..] => {
                let call = f[0] == "C";
                let ins = inputs(if call { 8 } else { 4 })?;
                let to = nodes.len();
                let short = op.rsplit("::").next().unwrap_or(op);
                // A submodule that returns a dequantized tensor gives float.
                let dequantizes = call && f.get(7) == Some(&"aten::dequantize");
                // The row of the grid this box rounds its output to.
                let own = if dequantizes {
                    None
                } else if call {
                    activation_at(num(4)?, num(6)?)
                } else {
                    activation_at(0, num(1)?)
                };
                let name = if call {
                    f[3].to_string()
                } else if let Some(p) = own {
                    params[p].tensor.clone()
                } else {
                    unique_name(&nodes, short)
                };
                let badges = if call {
                    badges_of(script, locations, &params, f[3])?
                } else {
                    Vec::new()
                };
                for c in &ins {
                    edges.push(edge(c, to));
                }
                let carried = match (own, ins.first()) {
                    (Some(p), _) => Carried {
                        from: to,
                        tensor: params[p].tensor.clone(),
                        param: Some(p),
                        quantized: true,
                    },
                    // An op that moves values keeps its input's grid.
                    (None, Some(x)) if x.quantized && !dequantizes => Carried {
                        from: to,
                        ..x.clone()
                    },
                    _ => Carried {
                        from: to,
                        tensor: name.clone(),
                        param: None,
                        quantized: false,
                    },
                };
                values.insert(num(2)? as u64, carried);
                nodes.push(Node {
                    name,
                    op: if call {
                        op.to_string()
                    } else {
                        short.to_string()
                    },
                    kind: NodeKind::Op,
                    badges,
                });
            }
            ["O", id] => {
                let id: u64 = id
                    .parse()
                    .with_context(|| format!("graph: bad output: {line}"))?;
                let c = values
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| anyhow!("graph: output {id} of `{}` has no writer", v.name()))?;
                outputs.push(c);
            }
            _ => bail!("graph: unexpected line from the shim: {line}"),
        }
    }
    for (k, c) in outputs.iter().enumerate() {
        let to = nodes.len();
        nodes.push(Node {
            name: if outputs.len() == 1 {
                "output".into()
            } else {
                format!("output_{k}")
            },
            op: "output".into(),
            kind: NodeKind::Output,
            badges: Vec::new(),
        });
        edges.push(edge(c, to));
    }
    Ok((nodes, edges))
}

/// `base`, or `base_1`, `base_2`, … when a box has that name already.
fn unique_name(nodes: &[Node], base: &str) -> String {
    let taken = |n: &str| nodes.iter().any(|x| x.name == n);
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|k| format!("{base}_{k}"))
        .find(|n| !taken(n))
        .unwrap_or_default()
}

/// The W badges of the packed weights in submodule `child` (or below it), each followed by a
/// float B badge when the packed weight holds a bias.
fn badges_of(
    script: &crate::quant::torch_script::Script,
    locations: &[Location],
    params: &[QuantParam],
    child: &str,
) -> Result<Vec<Badge>> {
    let mut out = Vec::new();
    for (p, at) in params.iter().zip(locations) {
        let Location::Weight { module } = *at else {
            continue;
        };
        let owner = p.tensor.strip_suffix(".weight").unwrap_or(&p.tensor);
        if owner != child && !owner.starts_with(&format!("{child}.")) {
            continue;
        }
        out.push(Badge {
            tensor: p.tensor.clone(),
            role: Role::Weight,
            dtype: torch_dtype(p.dtype),
        });
        if script.weight_and_bias(module)?.1.is_some() {
            out.push(Badge {
                tensor: format!("{owner}.bias"),
                role: Role::Bias,
                dtype: "float".into(),
            });
        }
    }
    Ok(out)
}
