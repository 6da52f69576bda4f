//! Refinements of existing models, each returning a new version to compare with the old one:
//! re-calibration of a quantized model's activations (ONNX or TorchScript), cross-layer
//! equalization of a float model (Nagel et al. 2019) and empirical bias correction of a
//! quantized one.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{ArrayD, Axis, IxDyn};

use super::params::Grid;
use super::ranges::{Histogram, MinMax};
use super::stats::{Progress, BATCH};
use super::{activation_ranges, CalibOptions, Method};
use crate::data::Dataset;
use crate::model::Model;
use crate::quant::capture::Memo;
use crate::quant::onnx_graph::{self, proto::ModelProto};
use crate::quant::{QDtype, QuantModel, Role};

/// Runs `m`'s capture over the stratified images, batch by batch, handing each named tensor's
/// values (NCHW as the graph has them) to `f`.
fn each_capture(
    m: &QuantModel,
    data: &Dataset,
    indices: &[usize],
    names: &[&str],
    what: &str,
    progress: Option<Progress<'_>>,
    mut f: impl FnMut(&str, ndarray::ArrayViewD<'_, f32>),
) -> Result<()> {
    for (k, chunk) in indices.chunks(BATCH).enumerate() {
        let batch = data.nhwc_batch(chunk);
        let captured = m.captured(batch.view(), names, Memo::Read)?;
        for name in names {
            let t = captured
                .get(*name)
                .ok_or_else(|| anyhow!("`{name}` was not captured"))?;
            f(name, t.view()?);
        }
        if let Some(p) = progress {
            p(
                what,
                (k * BATCH + chunk.len()).min(indices.len()),
                indices.len(),
            );
        }
    }
    Ok(())
}

impl QuantModel {
    /// A new version whose activation scales and zero points are computed again from the
    /// ranges this version's activations take on `data` (100 images per class), by `method`.
    /// On TorchScript models the captured activations are already quantized, so a range can
    /// narrow but not widen, and 8-bit activations are put on 7-bit grids (0..=127), as
    /// PyTorch's fbgemm configuration quantizes them (`reduce_range`); ask for fewer bits to
    /// go lower.
    pub fn recalibrate(&self, data: &Dataset, method: Method) -> Result<QuantModel> {
        self.recalibrate_with(
            data,
            &CalibOptions {
                method,
                ..Default::default()
            },
            None,
        )
    }

    /// [`QuantModel::recalibrate`] with every option (`method`, `symmetric`, `per_class`,
    /// `activation_bits`; the storage type stays the model's), reporting progress (or, with
    /// `options.progress`, showing progress bars in the notebook).
    pub fn recalibrate_with(
        &self,
        data: &Dataset,
        options: &CalibOptions,
        progress: Option<Progress<'_>>,
    ) -> Result<QuantModel> {
        options.check()?;
        let bar = super::NotebookProgress::default();
        let bar_fn = |what: &str, done: usize, total: usize| bar.set(what, done, total);
        let progress = progress.or(options.progress.then_some(&bar_fn as Progress<'_>));
        let indices = data.stratified(options.per_class)?;
        let capturable = self.capturable();
        let rows: Vec<_> = self
            .quant_params()
            .rows
            .into_iter()
            .filter(|p| p.role == Role::Activation && capturable.contains(&p.tensor))
            .collect();
        if rows.is_empty() {
            bail!("`{}` has no capturable quantized activation", self.name());
        }
        let names: Vec<&str> = rows.iter().map(|p| p.tensor.as_str()).collect();
        // A zero point at the bottom of its type means the range starts at 0: in a QDQ graph
        // that is how a ReLU folded into its producer still clips (the captured tensor is the
        // producer's output, negatives included). Such tensors are measured after a ReLU, as
        // the float graph has them.
        let folded: Vec<&str> = rows
            .iter()
            .filter(|p| p.zero_points.iter().all(|&z| z as i64 == p.dtype.range().0))
            .map(|p| p.tensor.as_str())
            .collect();
        let values = |n: &str, v: ndarray::ArrayViewD<'_, f32>| -> Vec<f32> {
            if folded.contains(&n) {
                v.iter().map(|&x| x.max(0.0)).collect()
            } else {
                v.iter().copied().collect()
            }
        };
        let mut seen: BTreeMap<String, MinMax> = BTreeMap::new();
        each_capture(self, data, &indices, &names, "ranges", progress, |n, v| {
            seen.entry(n.to_string()).or_default().add(&values(n, v));
        })?;
        let hists = match options.method.histogram() {
            None => None,
            Some((counted, bins)) => {
                let mut hists: BTreeMap<String, Histogram> = seen
                    .iter()
                    .map(|(t, m)| (t.clone(), Histogram::new(counted, bins, *m)))
                    .collect();
                each_capture(
                    self,
                    data,
                    &indices,
                    &names,
                    "histograms",
                    progress,
                    |n, v| {
                        let v = v.as_standard_layout();
                        if let Some(h) = hists.get_mut(n) {
                            h.add(v.as_slice().unwrap_or(&[]));
                        }
                    },
                )?;
                Some(hists)
            }
        };
        let mut v = self.clone();
        let bits = if self.framework() == crate::model::Framework::Torch {
            options.activation_bits.min(7)
        } else {
            options.activation_bits
        };
        for p in &rows {
            // A grid no wider than the tensor's stored type (an int4 activation stays on 4 bits).
            let grid = Grid {
                dtype: p.dtype,
                bits: bits.min(p.dtype.bits()),
                symmetric: options.symmetric,
            };
            let one: BTreeMap<String, MinMax> =
                std::iter::once((p.tensor.clone(), seen[&p.tensor])).collect();
            let hist = hists.as_ref().map(|h| {
                std::iter::once((p.tensor.clone(), h[&p.tensor].clone()))
                    .collect::<BTreeMap<_, _>>()
            });
            let range = activation_ranges(&one, hist.as_ref(), options, grid)?[&p.tensor];
            let (scale, zp) = grid.scale_zp(range.0, range.1);
            let n = p.scales.len();
            v = v
                .with_scales(&p.tensor, &vec![scale; n])?
                .with_zero_points(&p.tensor, &vec![zp; n])?;
        }
        v.squashed_onto(
            self,
            format!(
                "re-calibrated {} activations ({}, {} images)",
                rows.len(),
                options.method,
                indices.len()
            ),
        )
    }

    /// A new version with empirical bias correction: layer by layer in graph order, each
    /// Conv/Gemm bias of this (QDQ ONNX) version moves by the mean difference, per output
    /// channel, between `float`'s output of the node of the same name and this version's, over
    /// `per_class` images of each class of `data`; later layers see the corrected earlier ones.
    pub fn bias_corrected(
        &self,
        float: &QuantModel,
        data: &Dataset,
        per_class: usize,
    ) -> Result<QuantModel> {
        let indices = data.stratified(per_class)?;
        let proto = self.proto()?.clone();
        let float_proto = float.proto()?;
        let float_output = |node: &str| -> Option<String> {
            float_proto
                .graph
                .as_ref()?
                .node
                .iter()
                .find(|n| n.name() == node)
                .and_then(|n| n.output.first().cloned())
        };
        // (bias parameter, our node output, float node output), in graph order.
        let mut layers = Vec::new();
        for node in proto.graph.iter().flat_map(|g| g.node.iter()) {
            if !matches!(node.op_type(), "Conv" | "Gemm") || node.input.len() < 3 {
                continue;
            }
            let Some(bias) = self.quant_params().rows.into_iter().find(|p| {
                p.role == Role::Bias && p.dequantized_output.as_deref() == Some(&node.input[2])
            }) else {
                continue;
            };
            let Some(theirs) = float_output(node.name()) else {
                continue;
            };
            layers.push((bias, node.output[0].clone(), theirs));
        }
        if layers.is_empty() {
            bail!(
                "`{}` has no quantized Conv/Gemm bias to correct",
                self.name()
            );
        }
        self.check_float_reference(float, &proto)?;
        let means = |m: &QuantModel, tensor: &str| -> Result<Vec<f64>> {
            let mut sum: Vec<f64> = Vec::new();
            let mut count = 0usize;
            each_capture(
                m,
                data,
                &indices,
                &[tensor],
                "bias correction",
                None,
                |_, v| {
                    let channels = v.shape()[1];
                    if sum.is_empty() {
                        sum = vec![0.0; channels];
                    }
                    let per_channel = v.len() / channels;
                    for (c, lane) in v.axis_iter(Axis(1)).enumerate() {
                        sum[c] += lane.iter().map(|&x| x as f64).sum::<f64>();
                    }
                    count += per_channel;
                },
            )?;
            Ok(sum.iter().map(|s| s / count.max(1) as f64).collect())
        };
        let mut v = self.clone();
        for (bias, ours, theirs) in &layers {
            crate::runtime::interrupt::check()?;
            let target = means(float, theirs)
                .with_context(|| format!("capturing `{theirs}` of `{}`", float.name()))?;
            let now = means(&v, ours)?;
            let w = v.weights(&bias.tensor)?;
            let (lo, hi) = QDtype::Int32.range();
            let ints: Vec<i32> = w
                .dequantized
                .iter()
                .zip(w.int.iter())
                .enumerate()
                .map(|(c, (&b, &q))| {
                    let s = w.scales[if w.scales.len() == 1 { 0 } else { c }] as f64;
                    let delta = target[c] - now[c];
                    if s > 0.0 {
                        ((b as f64 + delta) / s)
                            .round_ties_even()
                            .clamp(lo as f64, hi as f64) as i32
                    } else {
                        q
                    }
                })
                .collect();
            let shape = IxDyn(&bias.shape);
            v = v.with_weight_int(&bias.tensor, &ArrayD::from_shape_vec(shape, ints)?)?;
        }
        v.squashed_onto(
            self,
            format!(
                "bias correction of {} layers ({} images)",
                layers.len(),
                indices.len()
            ),
        )
    }
}

impl QuantModel {
    /// That `float` is the float model this QDQ version was made from: for every Conv/Gemm,
    /// the float node of the same name has weights within one quantization step of ours.
    pub(crate) fn check_float_reference(
        &self,
        float: &QuantModel,
        proto: &ModelProto,
    ) -> Result<()> {
        let float_proto = float.proto()?;
        let rows = self.quant_params().rows;
        for node in proto.graph.iter().flat_map(|g| g.node.iter()) {
            if !matches!(node.op_type(), "Conv" | "Gemm") || node.input.len() < 2 {
                continue;
            }
            let Some(p) = rows.iter().find(|p| {
                p.role == Role::Weight && p.dequantized_output.as_deref() == Some(&node.input[1])
            }) else {
                continue;
            };
            let theirs = float_proto
                .graph
                .iter()
                .flat_map(|g| g.node.iter())
                .find(|n| n.name() == node.name())
                .and_then(|n| n.input.get(1))
                .and_then(|w| read_floats(float_proto, w).ok());
            let ours = self.weights(&p.tensor)?;
            let step = p.scales.iter().fold(0f32, |m, &s| m.max(s));
            let close = theirs.as_ref().is_some_and(|(v, _)| {
                v.len() == ours.dequantized.len()
                    && v.iter()
                        .zip(ours.dequantized.iter())
                        .all(|(a, b)| (a - b).abs() <= step * 1.01)
            });
            if !close {
                bail!(
                    "`{}` is not the float model `{}` was made from: the weights of node `{}` \
                     differ by more than a quantization step (an equalized model is corrected \
                     against the equalized float model)",
                    float.name(),
                    self.name(),
                    node.name()
                );
            }
        }
        Ok(())
    }
}

/// A float initializer's values and dimensions.
pub(crate) fn read_floats(proto: &ModelProto, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
    let t = onnx_graph::initializer(proto, name)
        .ok_or_else(|| anyhow!("weight `{name}` is not an initializer"))?;
    Ok((
        onnx_graph::floats(t)?,
        t.dims.iter().map(|&d| d as usize).collect(),
    ))
}

/// Cross-layer equalization of a float ONNX model: for each Conv → Relu → Conv chain whose
/// middle tensors have no other reader, output channel `i` of the first convolution is divided
/// by `s_i = sqrt(r1_i / r2_i)` and input channel `i` of the second multiplied by it (`r` the
/// largest magnitude of the channel's weights), which leaves the function unchanged (ReLU is
/// positively homogeneous) and gives both the same range `sqrt(r1_i r2_i)`. Returns the
/// equalized model as version 0 of `<name> [equalized]` and the pairs it equalized.
pub fn equalize(float: &QuantModel) -> Result<(QuantModel, Vec<(String, String)>)> {
    let mut proto: ModelProto = float.proto()?.clone();
    if onnx_graph::qdq_counts(&proto) != (0, 0) {
        bail!(
            "equalize takes a float model; `{}` is quantized",
            float.name()
        );
    }
    let g = proto
        .graph
        .as_ref()
        .ok_or_else(|| anyhow!("ONNX model has no graph"))?;
    let readers = |t: &str| {
        g.node
            .iter()
            .filter(|n| n.input.iter().any(|i| i == t))
            .count()
    };
    let mut pairs = Vec::new();
    for first in g.node.iter().filter(|n| n.op_type() == "Conv") {
        let out = &first.output[0];
        let Some(relu) = g
            .node
            .iter()
            .find(|n| n.op_type() == "Relu" && n.input[0] == *out)
        else {
            continue;
        };
        if readers(out) != 1 || readers(&relu.output[0]) != 1 {
            continue;
        }
        let Some(second) = g
            .node
            .iter()
            .find(|n| n.op_type() == "Conv" && n.input[0] == relu.output[0])
        else {
            continue;
        };
        let group = |n: &onnx_graph::proto::NodeProto| {
            n.attribute
                .iter()
                .find(|a| a.name() == "group")
                .and_then(|a| a.i)
                .unwrap_or(1)
        };
        if group(first) != 1 || group(second) != 1 {
            continue;
        }
        pairs.push((
            first.input[1].clone(),
            first.input.get(2).cloned(),
            second.input[1].clone(),
            (first.name().to_string(), second.name().to_string()),
        ));
    }
    if pairs.is_empty() {
        bail!(
            "`{}` has no Conv → Relu → Conv chain to equalize",
            float.name()
        );
    }
    for (w1, b1, w2, _) in &pairs {
        let (mut a, da) = read_floats(&proto, w1)?;
        let (mut b, db) = read_floats(&proto, w2)?;
        let channels = da[0];
        if db[1] != channels {
            continue;
        }
        let per_out: usize = da[1..].iter().product();
        let kernel: usize = db[2..].iter().product();
        let r1: Vec<f32> = (0..channels)
            .map(|c| {
                a[c * per_out..(c + 1) * per_out]
                    .iter()
                    .fold(0f32, |m, x| m.max(x.abs()))
            })
            .collect();
        let r2: Vec<f32> = (0..channels)
            .map(|c| {
                (0..db[0])
                    .flat_map(|o| {
                        let start = (o * channels + c) * kernel;
                        b[start..start + kernel].iter()
                    })
                    .fold(0f32, |m, x| m.max(x.abs()))
            })
            .collect();
        let s: Vec<f32> = r1
            .iter()
            .zip(&r2)
            .map(|(&x, &y)| {
                if x > 0.0 && y > 0.0 {
                    (x / y).sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        for c in 0..channels {
            a[c * per_out..(c + 1) * per_out]
                .iter_mut()
                .for_each(|x| *x /= s[c]);
            for o in 0..db[0] {
                let start = (o * channels + c) * kernel;
                b[start..start + kernel].iter_mut().for_each(|x| *x *= s[c]);
            }
        }
        let write = |proto: &mut ModelProto, name: &str, values: &[f32]| -> Result<()> {
            let t = proto
                .graph
                .as_mut()
                .and_then(|g| g.initializer.iter_mut().find(|t| t.name() == name))
                .ok_or_else(|| anyhow!("initializer `{name}` not found"))?;
            onnx_graph::set_floats(t, values);
            Ok(())
        };
        write(&mut proto, w1, &a)?;
        write(&mut proto, w2, &b)?;
        if let Some(b1) = b1 {
            let (mut bias, _) = read_floats(&proto, b1)?;
            bias.iter_mut().zip(&s).for_each(|(x, s)| *x /= s);
            write(&mut proto, b1, &bias)?;
        }
    }
    let model = QuantModel::from_bytes(
        &format!("{} [equalized]", float.name()),
        &float.info().path,
        &onnx_graph::encode(&proto),
    )?;
    Ok((model, pairs.into_iter().map(|(.., names)| names).collect()))
}
