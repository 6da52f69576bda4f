//! The ONNX backend: models run by ONNX Runtime through `ort`, loaded dynamically from the
//! `onnxruntime` wheel's `libonnxruntime.so` (see [`crate::paths::onnxruntime_library`]).
//!
//! One process-wide ONNX Runtime environment; one session per model, guarded by a mutex
//! because a run needs `&mut Session`. Sessions use all cores for intra-op parallelism, and
//! allocate with malloc, not an arena (see [`OnnxModel::builder`]).

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, Context, Result};
use ndarray::{Array2, ArrayView4, Ix2};
use ort::environment::Environment;
use ort::session::{builder::GraphOptimizationLevel, OutputSelector, RunOptions, Session};
use ort::value::{DynValue, TensorRef};

use crate::model::{check_input, Dim, Framework, Model, ModelInfo};

/// Threads each session uses: `$QPLAY_THREADS`, else all available cores.
pub fn thread_count() -> usize {
    std::env::var("QPLAY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn environment() -> Result<&'static Environment> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = crate::paths::onnxruntime_library().ok_or_else(|| {
            "ONNX Runtime library not found: set ORT_DYLIB_PATH to libonnxruntime.so, \
             or run `make setup` to create the project's .venv"
                .to_string()
        })?;
        let builder = ort::init_from(&lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?;
        let env = builder
            .with_name("qplay")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))?;
        Ok(env)
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

/// A model run by ONNX Runtime.
pub struct OnnxModel {
    info: ModelInfo,
    input_name: String,
    session: Mutex<Session>,
}

fn dims(shape: Option<&ort::value::Shape>) -> Vec<Dim> {
    shape
        .map(|s| {
            s.iter()
                .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
                .collect()
        })
        .unwrap_or_default()
}

impl OnnxModel {
    /// Loads `path` into a new session named `name`.
    pub fn load(name: &str, path: &Path) -> Result<OnnxModel> {
        let env = environment()?;
        let session = Self::builder(env, GraphOptimizationLevel::Level3, thread_count())
            .and_then(|mut b| b.commit_from_file(path))
            .with_context(|| format!("cannot load ONNX model {}", path.display()))?;
        Self::from_session(name, path, session)
    }

    /// A session for a serialized model held in memory (an edited model version), named
    /// `name`, recorded as coming from `path`. `optimize: false` runs the graph as written
    /// (no fusion), as onnxruntime's QDQ debugging tools do, so that every intermediate tensor
    /// can be captured.
    pub fn from_bytes(name: &str, path: &Path, bytes: &[u8], optimize: bool) -> Result<OnnxModel> {
        Self::from_bytes_threads(name, path, bytes, optimize, thread_count())
    }

    /// [`OnnxModel::from_bytes`] with `threads` intra-op threads (several single-threaded
    /// sessions can then run batches side by side).
    pub fn from_bytes_threads(
        name: &str,
        path: &Path,
        bytes: &[u8],
        optimize: bool,
        threads: usize,
    ) -> Result<OnnxModel> {
        let env = environment()?;
        let level = if optimize {
            GraphOptimizationLevel::Level3
        } else {
            GraphOptimizationLevel::Disable
        };
        // Many versions may hold sessions at once: their idle threads must not spin.
        let session = Self::builder(env, level, threads)
            .and_then(|b| Ok(b.with_intra_op_spinning(false)?))
            .and_then(|mut b| b.commit_from_memory(bytes))
            .with_context(|| format!("cannot create an ONNX Runtime session for `{name}`"))?;
        Self::from_session(name, path, session)
    }

    fn from_session(name: &str, path: &Path, session: Session) -> Result<OnnxModel> {
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| anyhow!("ONNX model {} has no inputs", path.display()))?;
        let output = session
            .outputs()
            .first()
            .ok_or_else(|| anyhow!("ONNX model {} has no outputs", path.display()))?;
        Ok(OnnxModel {
            info: ModelInfo {
                name: name.to_string(),
                framework: Framework::Onnx,
                path: path.to_path_buf(),
                input_shape: dims(input.dtype().tensor_shape()),
                output_shape: dims(output.dtype().tensor_shape()),
            },
            input_name: input.name().to_string(),
            session: Mutex::new(session),
        })
    }

    fn builder(
        env: &Environment,
        level: GraphOptimizationLevel,
        threads: usize,
    ) -> ort::Result<ort::session::builder::SessionBuilder> {
        // No memory arena: an arena keeps the most a session ever needed (and the tensors a
        // capture handed out live in it), per session or shared, for the life of the process.
        // Without one, tensors are allocated with malloc, which reuses freed memory just as
        // well while the user works, and which the runtime hands back to the system when it
        // goes idle (`malloc_trim`, in the `qplay` executable): after the playground, 95 MB
        // less in the runtime, and no slower a slider.
        Ok(Session::builder(env)?
            .with_execution_providers([ort::ep::CPU::default()
                .with_arena_allocator(false)
                .build()])?
            .with_memory_pattern(false)?
            .with_optimization_level(level)?
            .with_intra_threads(threads)?)
    }

    /// Runs a batch (after checking its shape) and hands the session's outputs to `read`: all
    /// of them, or only those named in `select` (then ONNX Runtime runs only the nodes they need
    /// and keeps no other output).
    fn with_outputs<R>(
        &self,
        batch: ArrayView4<'_, f32>,
        select: Option<&[&str]>,
        read: impl FnOnce(&mut ort::session::SessionOutputs<'_>) -> Result<R>,
    ) -> Result<R> {
        check_input(self, batch.shape())?;
        let batch = batch.as_standard_layout();
        let input = TensorRef::from_array_view(batch.view())?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| anyhow!("session poisoned"))?;
        let inputs = ort::inputs![self.input_name.as_str() => input];
        let options;
        let mut outputs = match select {
            None => session.run(inputs)?,
            Some(names) => {
                let selector = names
                    .iter()
                    .fold(OutputSelector::no_default(), |s, name| s.with(*name));
                options = RunOptions::new()?.with_outputs(selector);
                session.run_with_options(inputs, &options)?
            }
        };
        read(&mut outputs)
    }

    /// Runs a batch and returns its float32 outputs by name (for capture): every one, or those
    /// named in `select`. The values are ONNX Runtime's own (read them with
    /// `try_extract_array::<f32>()`), not copies.
    pub fn run_outputs(
        &self,
        batch: ArrayView4<'_, f32>,
        select: Option<&[&str]>,
    ) -> Result<Vec<(String, DynValue)>> {
        self.with_outputs(batch, select, |outputs| {
            let names: Vec<String> = outputs.keys().map(str::to_string).collect();
            let mut all = Vec::new();
            for name in names {
                let Some(value) = outputs.remove(&name) else {
                    continue;
                };
                // Integer tensors (QuantizeLinear outputs) are skipped.
                if value.try_extract_array::<f32>().is_ok() {
                    all.push((name, value));
                }
            }
            Ok(all)
        })
    }
}

impl Model for OnnxModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn run(&self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
        let name = &self.info.name;
        self.with_outputs(batch, None, |outputs| {
            let scores = outputs[0]
                .try_extract_array::<f32>()
                .with_context(|| format!("model `{name}`: output is not float32"))?;
            let scores = scores
                .into_dimensionality::<Ix2>()
                .with_context(|| format!("model `{name}`: output is not [n, classes]"))?;
            Ok(scores.to_owned())
        })
    }
}
