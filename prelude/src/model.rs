//! The model abstraction shared by the ONNX and PyTorch backends.
//!
//! A [`Model`] takes a batch of images in the layout the bundled models were trained on —
//! NHWC `f32`, raw pixel values 0..255 — and returns one row of class scores per image.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView4};

/// Which runtime executes a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    /// An ONNX graph run by ONNX Runtime.
    Onnx,
    /// A TorchScript module run by libtorch.
    Torch,
}

impl fmt::Display for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Framework::Onnx => "onnx",
            Framework::Torch => "torch",
        })
    }
}

/// A tensor dimension: fixed, or free (the batch dimension).
pub type Dim = Option<usize>;

/// What every backend knows about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The registry name (file stem for bundled models).
    pub name: String,
    /// The runtime behind it.
    pub framework: Framework,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Input shape; `None` marks the free batch dimension.
    pub input_shape: Vec<Dim>,
    /// Output shape; `None` marks the free batch dimension.
    pub output_shape: Vec<Dim>,
}

/// A loaded image classifier.
pub trait Model: Send + Sync {
    /// Name, framework, file and shapes.
    fn info(&self) -> &ModelInfo;
    /// Runs a batch `[n, 32, 32, 3]` and returns `[n, classes]` scores.
    fn run(&self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>>;

    /// The registry name (file stem for bundled models).
    fn name(&self) -> &str {
        &self.info().name
    }
    /// The runtime behind it.
    fn framework(&self) -> Framework {
        self.info().framework
    }
    /// The file it was loaded from.
    fn path(&self) -> &Path {
        &self.info().path
    }
    /// Input shape; `None` marks the free batch dimension.
    fn input_shape(&self) -> &[Dim] {
        &self.info().input_shape
    }
    /// Output shape; `None` marks the free batch dimension.
    fn output_shape(&self) -> &[Dim] {
        &self.info().output_shape
    }
}

impl fmt::Debug for dyn Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name())
            .field("framework", &self.framework())
            .field("path", &self.path())
            .field("input", &shape_string(self.input_shape()))
            .field("output", &shape_string(self.output_shape()))
            .finish()
    }
}

/// A shared handle to a loaded model, as the registry hands it out.
pub type ModelHandle = Arc<dyn Model>;

/// Formats a shape for messages: `[N, 32, 32, 3]`.
pub fn shape_string(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or_else(|| "N".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Checks a batch against a model's declared input shape, with an error that names the model,
/// the expected shape and the layout.
pub fn check_input(model: &dyn Model, got: &[usize]) -> Result<()> {
    let want = model.input_shape();
    let fits =
        want.len() == got.len() && want.iter().zip(got).all(|(w, g)| w.is_none_or(|w| w == *g));
    if !fits || got.first() == Some(&0) {
        bail!(
            "model `{}` expects input {} (NHWC float32, raw pixels 0..255, at least one image), got {:?}",
            model.name(),
            shape_string(want),
            got
        );
    }
    Ok(())
}

/// Index of the largest score in each row; ties go to the lowest index, as `numpy.argmax` does.
pub fn argmax_rows(scores: &Array2<f32>) -> Vec<u8> {
    scores
        .rows()
        .into_iter()
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as u8
        })
        .collect()
}
