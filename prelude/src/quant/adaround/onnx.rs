//! The layers of a QDQ ONNX model to round: each quantized Conv/Gemm weight with its node's
//! settings, the tensor it reads, and the float weights of the node of the same name in the
//! float model.

use anyhow::{anyhow, bail, Context, Result};

use super::learn::Op;
use super::Layer;
use crate::model::Model;
use crate::quant::onnx_graph::proto::{ModelProto, NodeProto};
use crate::quant::{QuantModel, Role};

fn ints_attr(node: &NodeProto, name: &str, default: &[i64]) -> Vec<i64> {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .map(|a| a.ints.clone())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

pub(super) fn int_attr(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.i)
        .unwrap_or(default)
}

/// The quantized Conv/Gemm weights of `proto` (the version `m`), in graph order, with the float
/// weights of the node of the same name in `float`.
pub(super) fn layers(m: &QuantModel, float: &ModelProto, proto: &ModelProto) -> Result<Vec<Layer>> {
    let rows = m.quant_params().rows;
    let capturable = m.capturable();
    let mut out = Vec::new();
    for node in proto.graph.iter().flat_map(|g| g.node.iter()) {
        let conv = node.op_type() == "Conv";
        if !(conv || node.op_type() == "Gemm") || node.input.len() < 2 {
            continue;
        }
        let Some(param) = rows.iter().find(|p| {
            p.role == Role::Weight && p.dequantized_output.as_deref() == Some(&node.input[1])
        }) else {
            continue;
        };
        let name = node.name();
        let unsupported = |why: &str| {
            anyhow!(
                "adaround cannot round `{}` (node `{name}`): {why}",
                param.tensor
            )
        };
        if !capturable.contains(&node.input[0]) {
            return Err(unsupported("its input is not a captured float tensor"));
        }
        let float_node = float
            .graph
            .iter()
            .flat_map(|g| g.node.iter())
            .find(|n| n.name() == name)
            .ok_or_else(|| unsupported("the float model has no node of that name"))?;
        let (values, dims) = crate::quant::calibrate::refine::read_floats(
            float,
            float_node.input.get(1).map_or("", |s| s.as_str()),
        )
        .with_context(|| format!("the float weights of node `{name}`"))?;
        if dims != param.shape {
            return Err(unsupported(&format!(
                "the float weights have shape {dims:?}, the quantized ones {:?}",
                param.shape
            )));
        }
        let (op, rows_n, transposed) = if conv {
            if int_attr(node, "group", 1) != 1 || dims.len() != 4 {
                return Err(unsupported(
                    "only 2-D convolutions with group 1 are supported",
                ));
            }
            let two = |v: Vec<i64>| [v[0], v[1]];
            let pads = ints_attr(node, "pads", &[0, 0, 0, 0]);
            let auto_pad = node
                .attribute
                .iter()
                .find(|a| a.name() == "auto_pad")
                .and_then(|a| a.s.clone())
                .unwrap_or_default();
            if !(auto_pad.is_empty() || auto_pad == b"NOTSET") || pads.len() != 4 {
                return Err(unsupported("explicit 2-D pads are needed"));
            }
            let op = Op::Conv {
                kernel: [dims[2] as i64, dims[3] as i64],
                strides: two(ints_attr(node, "strides", &[1, 1])),
                pads: [pads[0], pads[1], pads[2], pads[3]],
                dilations: two(ints_attr(node, "dilations", &[1, 1])),
            };
            (op, dims[0], false)
        } else {
            if int_attr(node, "transA", 0) != 0 || dims.len() != 2 {
                return Err(unsupported("only Gemm with transA = 0 and a 2-D weight"));
            }
            let trans_b = int_attr(node, "transB", 0) != 0;
            (Op::Gemm, if trans_b { dims[0] } else { dims[1] }, !trans_b)
        };
        let elements: usize = dims.iter().product();
        out.push(Layer {
            node: name.to_string(),
            param: param.clone(),
            input: node.input[0].clone(),
            op,
            float: values,
            rows: rows_n,
            cols: elements / rows_n.max(1),
            transposed,
        });
    }
    if out.is_empty() {
        bail!("`{}` has no quantized Conv/Gemm weight to round", m.name());
    }
    Ok(out)
}
