//! Writing the plan into the graph: the QuantizeLinear/DequantizeLinear nodes, the scales and
//! zero points, the weights as integers and the biases as int32, with onnxruntime's names.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use super::super::params::{quantize_bias, widen_for_bias, Grid};
use super::{Mark, Plan};
use crate::quant::onnx_graph::proto::{tensor_proto::DataType, ModelProto, NodeProto, TensorProto};
use crate::quant::onnx_graph::{self, int_tensor};
use crate::quant::QDtype;

/// Everything [`write`] needs besides the plan.
pub struct Numbers<'a> {
    /// Range of each measured tensor.
    pub ranges: &'a BTreeMap<String, (f32, f32)>,
    /// The activations' grid.
    pub activation: Grid,
    /// The weights' grid, per weight name (every weight must have one).
    pub weights: &'a BTreeMap<String, Grid>,
}

fn scalar_tensor(name: &str, dtype: DataType, dims: Vec<i64>) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(dtype as i32),
        dims,
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    let mut t = scalar_tensor(name, DataType::Float, dims);
    t.float_data = values.to_vec();
    t
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, axis: Option<i64>) -> NodeProto {
    NodeProto {
        op_type: Some(op.to_string()),
        name: Some(name.to_string()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        attribute: axis
            .map(|a| vec![onnx_graph::new_int_attribute("axis", a)])
            .unwrap_or_default(),
        domain: Some(String::new()),
        ..Default::default()
    }
}

fn channel_of(i: usize, dims: &[usize], axis: usize) -> usize {
    let inner: usize = dims[axis + 1..].iter().product();
    (i / inner) % dims[axis]
}

/// A quantized weight: scales, zero points, integers.
struct QuantizedWeight {
    /// The float values, as stored.
    values: Vec<f32>,
    grid: Grid,
    dims: Vec<i64>,
    axis: Option<i64>,
    scales: Vec<f32>,
    zps: Vec<i32>,
}

/// Writes the QDQ model: `model` (float) with the plan's quantizers and `numbers`' parameters.
pub fn write(model: &ModelProto, plan: &Plan, numbers: &Numbers<'_>) -> Result<ModelProto> {
    let mut out = model.clone();
    let g = out
        .graph
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("ONNX model has no graph"))?;
    let initial: BTreeMap<String, TensorProto> = g
        .initializer
        .iter()
        .map(|t| (t.name().to_string(), t.clone()))
        .collect();
    let graph_outputs: BTreeSet<String> = g.output.iter().map(|o| o.name().to_string()).collect();
    let old_nodes = std::mem::take(&mut g.node);
    let mut nodes: Vec<NodeProto> = old_nodes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !plan.removed.contains(i))
        .map(|(_, mut n)| {
            for o in n.output.iter_mut() {
                if let Some((_, to)) = plan.renames.iter().find(|(from, _)| from == o) {
                    *o = to.clone();
                }
            }
            n
        })
        .collect();

    // Activation parameters, from the (adjusted) ranges.
    let range = |t: &str| -> Result<(f32, f32)> {
        if plan.unit_range.contains(t) {
            return Ok((0.0, 1.0));
        }
        let source = plan.range_of.get(t).map(String::as_str).unwrap_or(t);
        numbers
            .ranges
            .get(source)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("no calibration range for `{source}`"))
    };
    let mut act_params: BTreeMap<String, (f32, i32)> = BTreeMap::new();
    for t in plan.activations() {
        if initial.contains_key(&t) {
            continue;
        }
        let (lo, hi) = range(&t)?;
        act_params.insert(t.clone(), numbers.activation.scale_zp(lo, hi));
    }

    // Weight parameters (and activation-typed initializers).
    let mut weights: BTreeMap<String, QuantizedWeight> = BTreeMap::new();
    let initializer_marks = plan.marks.iter().filter_map(|(t, m)| match m {
        Mark::Weight { axis } => Some((t, *axis, true)),
        Mark::Activation if initial.contains_key(t) => Some((t, None, false)),
        _ => None,
    });
    for (t, axis, is_weight) in initializer_marks {
        let grid = if is_weight {
            *numbers
                .weights
                .get(t)
                .ok_or_else(|| anyhow::anyhow!("no weight grid for `{t}`"))?
        } else {
            numbers.activation
        };
        let init = &initial[t];
        let values = onnx_graph::floats(init)?;
        let dims: Vec<usize> = init.dims.iter().map(|&d| d as usize).collect();
        let (scales, zps) = match axis {
            None => {
                let mut m = super::super::ranges::MinMax::default();
                m.add(&values);
                let (s, z) = grid.scale_zp(m.min, m.max);
                (vec![s], vec![z])
            }
            Some(axis) => {
                let mut seen = vec![super::super::ranges::MinMax::default(); dims[axis as usize]];
                for (i, &v) in values.iter().enumerate() {
                    seen[channel_of(i, &dims, axis as usize)].add(&[v]);
                }
                seen.iter().map(|m| grid.scale_zp(m.min, m.max)).unzip()
            }
        };
        weights.insert(
            t.clone(),
            QuantizedWeight {
                values,
                grid,
                dims: init.dims.clone(),
                axis,
                scales,
                zps,
            },
        );
    }
    // Widen weight scales whose bias would overflow int32 (signed symmetric weights only).
    for b in &plan.biases {
        let (Some(input), Some(w)) = (act_params.get(&b.input), weights.get_mut(&b.weight)) else {
            continue;
        };
        if !w.grid.dtype.signed() || w.zps.iter().any(|&z| z != 0) {
            continue;
        }
        let bias = onnx_graph::floats(&initial[&b.name])?;
        widen_for_bias(&bias, input.0, &mut w.scales);
    }

    let mut front: Vec<NodeProto> = Vec::new();
    // Q/DQ pairs by the index of their producer (None: a graph input).
    let mut after: BTreeMap<Option<usize>, Vec<NodeProto>> = BTreeMap::new();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut replaced: Vec<(String, String)> = Vec::new();
    // Scale/zero-point initializer names of every quantized tensor.
    let mut qnames: BTreeMap<String, (String, String)> = BTreeMap::new();

    for (t, _) in plan.marks.iter().filter(|(t, _)| weights.contains_key(t)) {
        let w = &weights[t];
        let dims: Vec<usize> = w.dims.iter().map(|&d| d as usize).collect();
        let ints: Vec<i32> = w
            .values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = w.axis.map_or(0, |axis| channel_of(i, &dims, axis as usize));
                w.grid.quantize(v, w.scales[c], w.zps[c])
            })
            .collect();
        let pdims = if w.axis.is_some() {
            vec![w.scales.len() as i64]
        } else {
            Vec::new()
        };
        let (qn, sn, zn) = (
            format!("{t}_quantized"),
            format!("{t}_scale"),
            format!("{t}_zero_point"),
        );
        new_inits.push(int_tensor(&qn, w.grid.dtype, w.dims.clone(), &ints, true));
        new_inits.push(float_tensor(&sn, pdims.clone(), &w.scales));
        new_inits.push(int_tensor(&zn, w.grid.dtype, pdims, &w.zps, false));
        let out_name = format!("{t}_DequantizeLinear_Output");
        front.push(node(
            "DequantizeLinear",
            &format!("{t}_DequantizeLinear"),
            &[&qn, &sn, &zn],
            &out_name,
            w.axis,
        ));
        replaced.push((t.clone(), out_name));
        qnames.insert(t.clone(), (sn, zn));
    }

    // Activations with their own parameters, then those sharing them.
    let producer_of =
        |nodes: &[NodeProto], t: &str| nodes.iter().position(|n| n.output.iter().any(|o| o == t));
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    for (t, m) in &plan.marks {
        if *m != Mark::Activation || weights.contains_key(t) {
            continue;
        }
        let (s, z) = act_params[t];
        let (sn, zn) = (format!("{t}_scale"), format!("{t}_zero_point"));
        new_inits.push(float_tensor(&sn, Vec::new(), &[s]));
        new_inits.push(int_tensor(
            &zn,
            numbers.activation.dtype,
            Vec::new(),
            &[z],
            false,
        ));
        qnames.insert(t.clone(), (sn.clone(), zn.clone()));
        pairs.push((t.clone(), sn, zn));
    }
    let mut pending: Vec<(String, String)> = plan
        .marks
        .iter()
        .filter_map(|(t, m)| match m {
            Mark::Shared { from } => Some((t.clone(), from.clone())),
            _ => None,
        })
        .collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|(t, from)| match qnames.get(from).cloned() {
            Some((sn, zn)) => {
                qnames.insert(t.clone(), (sn.clone(), zn.clone()));
                pairs.push((t.clone(), sn, zn));
                false
            }
            None => true,
        });
        if pending.len() == before {
            bail!(
                "cannot share quantization for {}",
                pending
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    for (t, sn, zn) in &pairs {
        let q_out = format!("{t}_QuantizeLinear_Output");
        let (q_in, dq_out) = if graph_outputs.contains(t) {
            let q_in = format!("{t}_QuantizeLinear_Input");
            for n in nodes.iter_mut() {
                for o in n.output.iter_mut().filter(|o| *o == t) {
                    *o = q_in.clone();
                }
            }
            (q_in, t.clone())
        } else {
            let dq_out = format!("{t}_DequantizeLinear_Output");
            replaced.push((t.clone(), dq_out.clone()));
            (t.clone(), dq_out)
        };
        let q = node(
            "QuantizeLinear",
            &format!("{t}_QuantizeLinear"),
            &[&q_in, sn, zn],
            &q_out,
            None,
        );
        let dq = node(
            "DequantizeLinear",
            &format!("{t}_DequantizeLinear"),
            &[&q_out, sn, zn],
            &dq_out,
            None,
        );
        after
            .entry(producer_of(&nodes, &q_in))
            .or_default()
            .extend([q, dq]);
    }

    // Biases: int32 with scale input × weight × beta.
    let mut dropped: BTreeSet<String> = BTreeSet::new();
    for b in &plan.biases {
        let Some((in_scale_name, _)) = qnames.get(&b.input) else {
            continue;
        };
        let Some(w) = weights.get(&b.weight) else {
            continue;
        };
        let input_scale = new_inits
            .iter()
            .find(|t| t.name() == in_scale_name)
            .map(|t| t.float_data[0])
            .unwrap_or(1.0);
        let bias = onnx_graph::floats(&initial[&b.name])?;
        let (scales, ints) = quantize_bias(&bias, input_scale, &w.scales, b.beta);
        let (qn, sn, zn) = (
            format!("{}_quantized", b.name),
            format!("{}_quantized_scale", b.name),
            format!("{}_quantized_zero_point", b.name),
        );
        let dims = initial[&b.name].dims.clone();
        new_inits.push(int_tensor(&qn, QDtype::Int32, dims, &ints, true));
        new_inits.push(float_tensor(&sn, vec![scales.len() as i64], &scales));
        let per_channel = scales.len() > 1;
        let zdims = if per_channel {
            vec![scales.len() as i64]
        } else {
            Vec::new()
        };
        new_inits.push(int_tensor(
            &zn,
            QDtype::Int32,
            zdims,
            &vec![0; if per_channel { scales.len() } else { 1 }],
            false,
        ));
        front.push(node(
            "DequantizeLinear",
            &format!("{}_DequantizeLinear", b.name),
            &[&qn, &sn, &zn],
            &b.name,
            per_channel.then_some(0),
        ));
        dropped.insert(b.name.clone());
    }

    // Readers of quantized tensors read the dequantized ones.
    for n in nodes.iter_mut() {
        for i in n.input.iter_mut() {
            if let Some((_, to)) = replaced.iter().find(|(from, _)| from == i) {
                *i = to.clone();
            }
        }
    }
    let mut ordered = front;
    ordered.extend(after.remove(&None).unwrap_or_default());
    for (i, n) in nodes.into_iter().enumerate() {
        ordered.push(n);
        ordered.extend(after.remove(&Some(i)).unwrap_or_default());
    }
    g.node = ordered;
    // Initializers nobody reads any more (float weights and biases) go.
    let read: BTreeSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    g.initializer
        .retain(|t| !dropped.contains(t.name()) && read.contains(t.name()));
    g.initializer.extend(new_inits);
    let produced: BTreeSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .collect();
    g.value_info.retain(|v| produced.contains(v.name()));
    out.producer_name = Some("qplay".into());
    out.producer_version = Some(env!("CARGO_PKG_VERSION").into());
    onnx_graph::require_types(&mut out)?;
    Ok(out)
}
