//! The ONNX side of the workbench: the ONNX protobuf (prost types generated at build time from
//! the `onnx` package's `onnx.proto`, so every field of the schema round-trips on save), and the
//! QDQ structure of a graph — which QuantizeLinear/DequantizeLinear nodes quantize which tensor,
//! with which scale and zero-point initializers.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};

use super::{QDtype, QuantParam, Role};

/// The ONNX protobuf messages (`onnx.ModelProto`, `onnx.TensorProto`, …).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

mod tensors;
pub use tensors::{data_type, floats, int_tensor, ints, qdtype, set_floats, set_ints};

use proto::{ModelProto, TensorProto};

/// Decodes a serialized ONNX model.
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    Ok(<ModelProto as prost::Message>::decode(bytes)?)
}

/// Serializes an ONNX model.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}

fn graph(model: &ModelProto) -> Result<&proto::GraphProto> {
    model
        .graph
        .as_ref()
        .ok_or_else(|| anyhow!("ONNX model has no graph"))
}

/// The initializer named `name`.
pub fn initializer<'m>(model: &'m ModelProto, name: &str) -> Option<&'m TensorProto> {
    model
        .graph
        .as_ref()?
        .initializer
        .iter()
        .find(|t| t.name() == name)
}

fn initializer_mut<'m>(model: &'m mut ModelProto, name: &str) -> Result<&'m mut TensorProto> {
    model
        .graph
        .as_mut()
        .and_then(|g| g.initializer.iter_mut().find(|t| t.name() == name))
        .ok_or_else(|| anyhow!("initializer `{name}` not found"))
}

/// Ops whose inputs or attributes changed between opset 13 and 21 in ways a version number
/// alone does not carry over (their `axes`/`split` moved from attributes to inputs).
const CHANGED_BEFORE_21: [&str; 12] = [
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "Split",
    "Squeeze",
    "Unsqueeze",
];

/// Raises the model's standard opset and IR version to what its integer types need (opset 21
/// and IR 10 for int4/uint4/int16/uint16; see [`QDtype::min_opset`]). Refuses, by node, a
/// graph with ops whose form changed on the way (from an opset before 18).
pub fn require_types(model: &mut ModelProto) -> Result<()> {
    let g = graph(model)?;
    let mut types: Vec<QDtype> = g
        .initializer
        .iter()
        .filter_map(|t| qdtype(t).ok())
        .collect();
    types.sort();
    types.dedup();
    let opset = types.iter().map(|t| t.min_opset()).max().unwrap_or(0);
    let ir = types.iter().map(|t| t.min_ir_version()).max().unwrap_or(0);
    let current = model
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty())
        .map(|o| o.version())
        .unwrap_or(1);
    if current < opset {
        if current < 18 {
            if let Some(n) = g
                .node
                .iter()
                .find(|n| n.domain().is_empty() && CHANGED_BEFORE_21.contains(&n.op_type()))
            {
                bail!(
                    "the model's {} types need ONNX opset {opset}, and its node `{}` ({}) \
                     changed form between opset {current} and {opset}: convert the model to \
                     opset {opset} first (onnx.version_converter)",
                    types.iter().map(|t| t.name()).collect::<Vec<_>>().join("/"),
                    n.name(),
                    n.op_type()
                );
            }
        }
        match model
            .opset_import
            .iter_mut()
            .find(|o| o.domain().is_empty())
        {
            Some(o) => o.version = Some(opset),
            None => model.opset_import.push(proto::OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }),
        }
    }
    if model.ir_version() < ir {
        model.ir_version = Some(ir);
    }
    Ok(())
}

/// A new INT attribute.
pub fn new_int_attribute(name: &str, value: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// A new INTS attribute.
pub fn new_ints_attribute(name: &str, values: Vec<i64>) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ints: values,
        ..Default::default()
    }
}

/// The integer attribute `name` of a node, if set.
fn int_attribute(node: &proto::NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        // An INT attribute whose value is 0 may be stored with `i` unset.
        .map(|a| a.i.unwrap_or(0))
}

/// Finds every quantization parameter of a QDQ graph: one per QuantizeLinear (an activation,
/// with the DequantizeLinear nodes that read it), and one per DequantizeLinear of an
/// initializer (a weight, or an int32 bias).
pub fn quant_params(model: &ModelProto) -> Result<Vec<QuantParam>> {
    let g = graph(model)?;
    let mut producer: BTreeMap<&str, &proto::NodeProto> = BTreeMap::new();
    let mut consumers: BTreeMap<&str, Vec<&proto::NodeProto>> = BTreeMap::new();
    for node in &g.node {
        for out in &node.output {
            producer.insert(out, node);
        }
        for input in &node.input {
            consumers.entry(input).or_default().push(node);
        }
    }
    let is_init = |name: &str| g.initializer.iter().any(|t| t.name() == name);
    let names_of = |nodes: Option<&Vec<&proto::NodeProto>>| -> Vec<String> {
        nodes
            .map(|v| v.iter().map(|n| n.name().to_string()).collect())
            .unwrap_or_default()
    };
    let mut rows = Vec::new();
    for node in &g.node {
        let op = node.op_type();
        let activation = op == "QuantizeLinear";
        let constant = op == "DequantizeLinear"
            && node.input.first().is_some_and(|x| is_init(x))
            && node.domain().is_empty();
        if !(activation || constant) {
            continue;
        }
        let (Some(x), Some(scale_name)) = (node.input.first(), node.input.get(1)) else {
            bail!("node `{}` has fewer than two inputs", node.name());
        };
        let zp_name = node.input.get(2).cloned().unwrap_or_default();
        let scale_t = initializer(model, scale_name).ok_or_else(|| {
            anyhow!(
                "node `{}`: scale `{scale_name}` is not an initializer",
                node.name()
            )
        })?;
        let scales = floats(scale_t)?;
        let zp_t = initializer(model, &zp_name);
        let (dtype, zero_points) = match zp_t {
            Some(t) => (qdtype(t)?, ints(t)?),
            // No zero point: uint8 with zero point 0 (ONNX default).
            None => (QDtype::Uint8, vec![0; scales.len()]),
        };
        let axis = (scales.len() > 1).then(|| int_attribute(node, "axis").unwrap_or(1));
        let out = node.output.first().cloned().unwrap_or_default();
        let row = if activation {
            let dq: Vec<&proto::NodeProto> = consumers
                .get(out.as_str())
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|n| n.op_type() == "DequantizeLinear")
                        .collect()
                })
                .unwrap_or_default();
            let mut after = Vec::new();
            for d in &dq {
                after.extend(names_of(consumers.get(d.output[0].as_str())));
            }
            QuantParam {
                tensor: x.clone(),
                role: Role::Activation,
                dtype,
                scales,
                zero_points,
                axis,
                shape: Vec::new(),
                producer: producer.get(x.as_str()).map(|n| n.name().to_string()),
                consumers: after,
                quantize_node: Some(node.name().to_string()),
                dequantize_nodes: dq.iter().map(|n| n.name().to_string()).collect(),
                scale_initializer: scale_name.clone(),
                zero_point_initializer: zp_name,
                quantized_initializer: None,
                dequantized_output: dq.first().map(|n| n.output[0].clone()),
            }
        } else {
            let data = initializer(model, x).expect("checked above");
            let dtype = qdtype(data).unwrap_or(dtype);
            let users = consumers.get(out.as_str());
            let role = if dtype == QDtype::Int32
                || users.is_some_and(|v| {
                    v.iter()
                        .any(|n| n.input.get(2) == Some(&out) && n.op_type() != "DequantizeLinear")
                }) {
                Role::Bias
            } else {
                Role::Weight
            };
            QuantParam {
                tensor: x.strip_suffix("_quantized").unwrap_or(x).to_string(),
                role,
                dtype,
                scales,
                zero_points,
                axis,
                shape: data.dims.iter().map(|&d| d as usize).collect(),
                producer: None,
                consumers: names_of(users),
                quantize_node: None,
                dequantize_nodes: vec![node.name().to_string()],
                scale_initializer: scale_name.clone(),
                zero_point_initializer: zp_name,
                quantized_initializer: Some(x.clone()),
                dequantized_output: Some(out),
            }
        };
        rows.push(row);
    }
    Ok(rows)
}

/// Counts of QuantizeLinear and DequantizeLinear nodes.
pub fn qdq_counts(model: &ModelProto) -> (usize, usize) {
    let nodes = model
        .graph
        .as_ref()
        .map(|g| g.node.as_slice())
        .unwrap_or(&[]);
    let count = |op: &str| nodes.iter().filter(|n| n.op_type() == op).count();
    (count("QuantizeLinear"), count("DequantizeLinear"))
}

/// The nodes that read `param`'s scale and zero point (its Q node and DQ nodes).
fn param_nodes(param: &QuantParam) -> Vec<String> {
    param
        .quantize_node
        .iter()
        .chain(&param.dequantize_nodes)
        .cloned()
        .collect()
}

/// Makes `param`'s initializer `init` (input `slot` of its nodes) private to it: when other
/// nodes read the same initializer, this parameter's nodes get a copy under a new name.
/// Returns the name to write to.
fn private_initializer(
    model: &mut ModelProto,
    param: &QuantParam,
    init: &str,
    slot: usize,
) -> Result<String> {
    let mine = param_nodes(param);
    let g = model
        .graph
        .as_mut()
        .ok_or_else(|| anyhow!("ONNX model has no graph"))?;
    let shared = g
        .node
        .iter()
        .any(|n| !mine.iter().any(|m| m == n.name()) && n.input.iter().any(|i| i == init));
    if !shared {
        return Ok(init.to_string());
    }
    let fresh = format!("{init}__{}", param.tensor);
    if !g.initializer.iter().any(|t| t.name() == fresh) {
        let mut copy = g
            .initializer
            .iter()
            .find(|t| t.name() == init)
            .cloned()
            .ok_or_else(|| anyhow!("initializer `{init}` not found"))?;
        copy.name = Some(fresh.clone());
        g.initializer.push(copy);
    }
    for n in g
        .node
        .iter_mut()
        .filter(|n| mine.iter().any(|m| m == n.name()))
    {
        if n.input.get(slot).is_some_and(|i| i == init) {
            n.input[slot] = fresh.clone();
        }
    }
    Ok(fresh)
}

/// Makes weight `param`'s stored integers and zero point (private copies where shared) of type
/// `dtype`, empty: the caller writes the values next, then raises the opset with
/// [`require_types`].
pub fn retype_weight(model: &mut ModelProto, param: &QuantParam, dtype: QDtype) -> Result<()> {
    let stored = param.quantized_initializer.as_deref().ok_or_else(|| {
        anyhow!(
            "tensor `{}` is an activation; only weights and biases have a stored type",
            param.tensor
        )
    })?;
    let mut names = vec![private_initializer(model, param, stored, 0)?];
    if !param.zero_point_initializer.is_empty() {
        names.push(private_initializer(
            model,
            param,
            &param.zero_point_initializer,
            2,
        )?);
    }
    for name in names {
        let t = initializer_mut(model, &name)?;
        t.data_type = Some(data_type(dtype) as i32);
        t.int32_data.clear();
        t.raw_data = Some(Vec::new());
    }
    Ok(())
}

/// Writes `param`'s scales (already validated).
pub fn write_scales(model: &mut ModelProto, param: &QuantParam, scales: &[f32]) -> Result<()> {
    let name = private_initializer(model, param, &param.scale_initializer, 1)?;
    set_floats(initializer_mut(model, &name)?, scales);
    Ok(())
}

/// Writes `param`'s zero points (already validated).
pub fn write_zero_points(model: &mut ModelProto, param: &QuantParam, zps: &[i32]) -> Result<()> {
    if param.zero_point_initializer.is_empty() {
        bail!(
            "tensor `{}` has no zero-point input to edit (its zero point is the default 0)",
            param.tensor
        );
    }
    let name = private_initializer(model, param, &param.zero_point_initializer, 2)?;
    set_ints(initializer_mut(model, &name)?, zps)
}

/// The integer values of a weight or bias.
pub fn read_weight_ints(model: &ModelProto, param: &QuantParam) -> Result<Vec<i32>> {
    let name = param.quantized_initializer.as_deref().ok_or_else(|| {
        anyhow!(
            "tensor `{}` is an activation; only weights and biases have stored integer values",
            param.tensor
        )
    })?;
    ints(initializer(model, name).with_context(|| format!("initializer `{name}` not found"))?)
}

/// Replaces the integer values of a weight or bias (already validated).
pub fn write_weight_ints(model: &mut ModelProto, param: &QuantParam, values: &[i32]) -> Result<()> {
    let name = param.quantized_initializer.as_deref().ok_or_else(|| {
        anyhow!(
            "tensor `{}` is an activation; only weights and biases have stored integer values",
            param.tensor
        )
    })?;
    // A quantized initializer read by other nodes too gets a private copy.
    let target = private_initializer(model, param, name, 0)?;
    set_ints(initializer_mut(model, &target)?, values)
}

/// Adds graph outputs (name only; ONNX Runtime infers their types) for `tensors`, skipping the
/// ones already outputs.
pub fn add_outputs(model: &mut ModelProto, tensors: &[String]) -> Result<()> {
    let g = model
        .graph
        .as_mut()
        .ok_or_else(|| anyhow!("ONNX model has no graph"))?;
    for t in tensors {
        if !g.output.iter().any(|o| o.name() == t) {
            g.output.push(proto::ValueInfoProto {
                name: Some(t.clone()),
                ..Default::default()
            });
        }
    }
    Ok(())
}

/// Every tensor a node produces, in graph order.
pub fn node_outputs(model: &ModelProto) -> Vec<String> {
    model
        .graph
        .as_ref()
        .map(|g| {
            g.node
                .iter()
                .flat_map(|n| n.output.iter().filter(|o| !o.is_empty()).cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// The op type of the node producing `tensor`.
pub fn producer_op(model: &ModelProto, tensor: &str) -> Option<String> {
    model
        .graph
        .as_ref()?
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == tensor))
        .map(|n| n.op_type().to_string())
}
