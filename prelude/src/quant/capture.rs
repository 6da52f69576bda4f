//! Capturing intermediate tensors of an ONNX model for a batch of images.
//!
//! Each version keeps one augmented session: its graph, unoptimized (as onnxruntime's
//! `qdq_loss_debug.collect_activations` runs it, so no tensor is fused away), with every float
//! tensor a node computes added as a graph output. The first capture creates it; later captures
//! of the same version reuse it. Integer tensors (QuantizeLinear outputs) are not captured.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use ndarray::{ArrayD, ArrayView4};

use super::onnx_graph::{self, proto::ModelProto};
use super::QuantModel;

/// The tensors the capture session exposes: every output of every node except QuantizeLinear
/// (whose outputs are integers), in graph order.
pub fn capturable(model: &ModelProto) -> Vec<String> {
    let quantized: Vec<String> = model
        .graph
        .as_ref()
        .map(|g| {
            g.node
                .iter()
                .filter(|n| n.op_type() == "QuantizeLinear")
                .flat_map(|n| n.output.clone())
                .collect()
        })
        .unwrap_or_default();
    onnx_graph::node_outputs(model)
        .into_iter()
        .filter(|t| !quantized.contains(t))
        .collect()
}

/// Captured tensors of one batch, by name.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Model (version) name.
    pub model: String,
    /// The tensors, as the graph computes them (NCHW inside the ResNet-8 graphs).
    pub tensors: BTreeMap<String, ArrayD<f32>>,
}

impl Capture {
    /// The tensor `name`, with an error listing what was captured.
    pub fn get(&self, name: &str) -> Result<&ArrayD<f32>> {
        match self.tensors.get(name) {
            Some(t) => Ok(t),
            None => bail!(
                "`{name}` was not captured from `{}`; captured: {}",
                self.model,
                self.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl QuantModel {
    /// The names [`QuantModel::capture`] accepts, in graph order.
    pub fn capturable(&self) -> Vec<String> {
        self.proto().map(capturable).unwrap_or_default()
    }

    /// Runs `batch` (NHWC, raw pixels) and returns the tensors named in `tensors` (all of them
    /// when empty). Unknown names are an error that lists the capturable ones.
    pub fn capture(&self, batch: ArrayView4<'_, f32>, tensors: &[&str]) -> Result<Capture> {
        self.proto()?;
        let known = self.capturable();
        if let Some(bad) = tensors.iter().find(|t| !known.iter().any(|k| k == *t)) {
            bail!(
                "`{}` has no capturable tensor `{bad}`; capturable (float tensors computed by \
                 nodes): {}",
                crate::model::Model::name(self),
                known.join(", ")
            );
        }
        let outputs = self.capture_runner()?.run_all(batch)?;
        let tensors = outputs
            .into_iter()
            .filter(|(name, _)| tensors.is_empty() || tensors.contains(&name.as_str()))
            .collect();
        Ok(Capture {
            model: crate::model::Model::name(self).to_string(),
            tensors,
        })
    }
}
