//! AdaRound on a quantized TorchScript module (FX graph mode, fbgemm).
//!
//! Its conv and linear weights sit in packed-params objects, one per quantized module, each
//! module's own graph a single quantized op on its input; the root graph calls the modules. The
//! layer's input is the tensor the root graph passes to the module, and the shim's
//! `qpt_expose_weight_inputs` (`csrc/torchscript_adaround.cpp`) makes a version whose `forward`
//! returns those tensors, quantized as the model computes them (dequantized here). The conv's
//! stride, padding, dilation and groups are read from its packed weight (an asymmetric padding
//! is a `ZeroPad2d` module before the conv, so the input is the padded tensor and the conv's own
//! padding is symmetric).
//!
//! The float weights come from the float ONNX model the TorchScript module was made from
//! (`resnet8_float` for `resnet8_int8_torch`: `models/build.py` builds both from the same folded
//! weights, each torch module named as its ONNX node), matched by name: a conv's weight has the
//! same `[O, I, kh, kw]` layout, a Gemm's is `[K, O]` (`transB = 0`) where torch's linear weight
//! is `[O, K]`. A module with no node of its name, another shape, or weights that differ from the
//! quantized ones by more than a quantization step is refused by name: there is no float
//! TorchScript reference to take instead, as a float module has no quantized weights and so is
//! no workbench model.

use anyhow::{anyhow, bail, Context, Result};
use ndarray::ArrayView4;
use tch::{Kind, Tensor};

use super::learn::Op;
use super::onnx::int_attr;
use super::Layer;
use crate::model::{Framework, Model};
use crate::quant::torch_script::Script;
use crate::quant::{QuantModel, Role};

/// The layers of TorchScript version `m` to round, in the root graph's order, with their float
/// weights from `float` (a float ONNX model).
pub(super) fn layers(m: &QuantModel, float: &QuantModel) -> Result<Vec<Layer>> {
    if float.framework() == Framework::Torch {
        bail!(
            "`{}` is TorchScript; the float reference of TorchScript `{}` is the float ONNX model \
             it was made from (`resnet8_float` for `resnet8_int8_torch`), whose Conv/Gemm nodes \
             are named as its modules",
            float.name(),
            m.name()
        );
    }
    let float_proto = float.proto()?;
    let (_, calls) = m.torch_script()?.expose_weight_inputs("adaround")?;
    let rows = m.quant_params().rows;
    let mut out: Vec<Layer> = Vec::new();
    for call in &calls {
        let module = call.module.as_str();
        let Some(param) = rows.iter().find(|p| {
            p.role == Role::Weight && p.consumers.first().map(String::as_str) == Some(module)
        }) else {
            continue;
        };
        let tensor = &param.tensor;
        let refuse =
            |why: String| anyhow!("adaround cannot round `{tensor}` (module `{module}`): {why}");
        if out.iter().any(|l| l.node == module) {
            return Err(refuse(
                "the root graph calls the module more than once".into(),
            ));
        }
        let op_type = if call.conv.is_some() { "Conv" } else { "Gemm" };
        let node = float_proto
            .graph
            .iter()
            .flat_map(|g| g.node.iter())
            .find(|n| n.name() == module && n.op_type() == op_type)
            .ok_or_else(|| {
                refuse(format!(
                    "the float model `{}` has no {op_type} node `{module}` (the float reference \
                     of a TorchScript model is the float ONNX model it was made from, its nodes \
                     named as the modules)",
                    float.name()
                ))
            })?;
        let (mut values, mut dims) = crate::quant::calibrate::refine::read_floats(
            float_proto,
            node.input.get(1).map_or("", |s| s.as_str()),
        )
        .with_context(|| format!("the float weights of node `{module}` in `{}`", float.name()))?;
        let stored = dims.clone();
        if call.conv.is_none() && int_attr(node, "transB", 0) == 0 && dims.len() == 2 {
            // ONNX's [K, O] to torch's [O, K].
            let (k, o) = (dims[0], dims[1]);
            values = (0..o * k).map(|i| values[(i % k) * o + i / k]).collect();
            dims = vec![o, k];
        }
        if dims != param.shape {
            return Err(refuse(format!(
                "the float model `{}` has weights of shape {stored:?} at node `{module}`{}, the \
                 quantized module {:?}",
                float.name(),
                if stored != dims {
                    format!(" ({dims:?} as [outputs, inputs])")
                } else {
                    String::new()
                },
                param.shape
            )));
        }
        let quantized = m.weights(tensor)?.dequantized;
        let step = param.scales.iter().fold(0f32, |a, &s| a.max(s));
        if let Some((i, (a, b))) = values
            .iter()
            .zip(quantized.iter())
            .enumerate()
            .find(|(_, (a, b))| (*a - *b).abs() > step * 1.01)
        {
            return Err(refuse(format!(
                "the float model `{}` is not the one it was made from: its weight element {i} \
                 is {a}, the quantized one {b}, more than a quantization step ({step}) apart",
                float.name()
            )));
        }
        let op = match &call.conv {
            Some(c) => {
                if c.groups != 1 || dims.len() != 4 {
                    return Err(refuse(format!(
                        "only 2-D convolutions with groups = 1 are supported (groups = {})",
                        c.groups
                    )));
                }
                let [ph, pw] = c.padding;
                Op::Conv {
                    kernel: [dims[2] as i64, dims[3] as i64],
                    strides: c.stride,
                    pads: [ph, pw, ph, pw],
                    dilations: c.dilation,
                }
            }
            None => Op::Gemm,
        };
        let rows_n = dims[0];
        out.push(Layer {
            node: module.to_string(),
            param: param.clone(),
            input: module.to_string(),
            op,
            cols: values.len() / rows_n.max(1),
            float: values,
            rows: rows_n,
            transposed: false,
        });
    }
    if let Some(p) = rows
        .iter()
        .find(|p| p.role == Role::Weight && !out.iter().any(|l| l.param.tensor == p.tensor))
    {
        bail!(
            "adaround cannot round `{}`: its module is not called from `{}`'s root graph (only \
             direct submodules' packed weights are reached)",
            p.tensor,
            m.name()
        );
    }
    if out.is_empty() {
        bail!("`{}` has no packed conv/linear weight to round", m.name());
    }
    Ok(out)
}

/// A TorchScript version that also returns its packed-weight layers' inputs.
pub(super) struct Inputs {
    script: Script,
    /// The module whose input each element after the model output is.
    modules: Vec<String>,
}

impl Inputs {
    /// The layers' inputs of version `v`.
    pub(super) fn of(v: &QuantModel) -> Result<Inputs> {
        let (script, calls) = v.torch_script()?.expose_weight_inputs("adaround")?;
        Ok(Inputs {
            script,
            modules: calls.into_iter().map(|c| c.module).collect(),
        })
    }

    /// The input of `module` on `batch` (NHWC, raw pixels), dequantized: NCHW for a conv.
    pub(super) fn input(&self, batch: ArrayView4<'_, f32>, module: &str) -> Result<Tensor> {
        crate::runtime::interrupt::check()?;
        let i = self
            .modules
            .iter()
            .position(|m| m == module)
            .ok_or_else(|| anyhow!("module `{module}` has no captured input"))?;
        let mut items = self.script.forward(&crate::torch::input_tensor(batch)?)?;
        let t = items
            .get_mut(i + 1)
            .and_then(Option::take)
            .ok_or_else(|| anyhow!("the capture returned no input tensor for `{module}`"))?;
        let t = match t.kind() {
            Kind::QInt8 | Kind::QUInt8 | Kind::QInt32 => t.dequantize(),
            _ => t,
        };
        Ok(t.to_kind(Kind::Float).contiguous())
    }
}
