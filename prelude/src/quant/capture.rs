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
use crate::model::Model;

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
        if self.framework() == crate::model::Framework::Torch {
            return self.torch_capturable().unwrap_or_default();
        }
        self.proto().map(capturable).unwrap_or_default()
    }

    /// Runs `batch` (NHWC, raw pixels) and returns the tensors named in `tensors` (all of them
    /// when empty). Unknown names are an error that lists the capturable ones.
    pub fn capture(&self, batch: ArrayView4<'_, f32>, tensors: &[&str]) -> Result<Capture> {
        let torch = self.framework() == crate::model::Framework::Torch;
        if !torch {
            self.proto()?;
        }
        let known = self.capturable();
        if let Some(bad) = tensors.iter().find(|t| !known.iter().any(|k| k == *t)) {
            bail!(
                "`{}` has no capturable tensor `{bad}`; capturable: {}",
                self.name(),
                known.join(", ")
            );
        }
        let outputs = if torch {
            self.torch_capture_run(batch)?
        } else {
            self.capture_runner()?.run_all(batch)?
        };
        let tensors = outputs
            .into_iter()
            .filter(|(name, _)| tensors.is_empty() || tensors.contains(&name.as_str()))
            .collect();
        Ok(Capture {
            model: self.name().to_string(),
            tensors,
        })
    }
}
