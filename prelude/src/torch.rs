//! The PyTorch backend: TorchScript modules (float or quantized with fbgemm) run by libtorch
//! through `tch`.
//!
//! Quantized modules run on fbgemm, the engine the bundled model was quantized for and the one
//! the Python reference selects.
//!
//! TorchScript declares no input shapes, so a module is probed once at load with one
//! `[1, 32, 32, 3]` image; a module that does not accept that, or does not return `[1, classes]`,
//! is refused with an error that says so.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, ArrayView4};
use tch::{CModule, Device, Kind, Tensor};

use crate::model::{check_input, Framework, Model, ModelInfo};

/// A TorchScript model run by libtorch on the CPU.
pub struct TorchModel {
    info: ModelInfo,
    module: CModule,
}

/// Sets libtorch's thread count and its quantized engine (fbgemm, which the bundled int8 model
/// was quantized for; libtorch's default on x86, "x86", may pick other kernels).
pub(crate) fn init_runtime() -> Result<()> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        tch::set_num_threads(crate::onnx::thread_count() as i32);
        tch::QEngine::FBGEMM
            .set()
            .map_err(|e| format!("cannot select libtorch's fbgemm engine: {e}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

impl TorchModel {
    /// Loads a TorchScript file and checks that it classifies NHWC `[n, 32, 32, 3]` batches.
    pub fn load(name: &str, path: &Path) -> Result<TorchModel> {
        init_runtime()?;
        let module = CModule::load_on_device(path, Device::Cpu)
            .with_context(|| format!("cannot load TorchScript model {}", path.display()))?;
        Self::from_module(name, path, module)
    }

    fn from_module(name: &str, path: &Path, mut module: CModule) -> Result<TorchModel> {
        module.set_eval();
        let mut model = TorchModel {
            info: ModelInfo {
                name: name.to_string(),
                framework: Framework::Torch,
                path: path.to_path_buf(),
                input_shape: vec![None, Some(32), Some(32), Some(3)],
                output_shape: Vec::new(),
            },
            module,
        };
        let probe = ndarray::Array4::<f32>::zeros((1, 32, 32, 3));
        let out = model.forward(probe.view()).with_context(|| {
            format!(
                "TorchScript model {} does not accept a [1, 32, 32, 3] NHWC float32 batch",
                path.display()
            )
        })?;
        model.info.output_shape = vec![None, Some(out.ncols())];
        Ok(model)
    }

    fn forward(&self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
        let input = input_tensor(batch)?;
        let n = input.size()[0];
        let output = tch::no_grad(|| self.module.forward_ts(&[input]))?;
        scores(&self.info.name, &output, n)
    }
}

/// An NHWC float batch as a tensor (copied).
pub(crate) fn input_tensor(batch: ArrayView4<'_, f32>) -> Result<Tensor> {
    let batch = batch.as_standard_layout();
    let shape: Vec<i64> = batch.shape().iter().map(|&d| d as i64).collect();
    let data = batch
        .as_slice()
        .ok_or_else(|| anyhow!("batch is not contiguous"))?;
    Ok(Tensor::from_slice(data).reshape(shape.as_slice()))
}

/// The `[n, classes]` scores a TorchScript model (named `name`) returned for a batch of `n`.
pub(crate) fn scores(name: &str, output: &Tensor, n: i64) -> Result<Array2<f32>> {
    let output = output.to_kind(Kind::Float).contiguous();
    let dims = output.size();
    if dims.len() != 2 || dims[0] != n {
        bail!(
            "TorchScript model `{name}` returned shape {dims:?} for a batch of {n}; expected \
             [n, classes]"
        );
    }
    let values = Vec::<f32>::try_from(&output.view(-1))?;
    Ok(Array2::from_shape_vec(
        (dims[0] as usize, dims[1] as usize),
        values,
    )?)
}

impl Model for TorchModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn run(&self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
        check_input(self, batch.shape())?;
        self.forward(batch)
    }
}
