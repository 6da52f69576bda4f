//! The process-wide model registry: `load("resnet8_int8")` loads a model once and hands out
//! the same shared handle on every later call.
//!
//! A model is named by the stem of a file in the bundled `models/` folder (`resnet8_int8` for
//! `models/resnet8_int8.onnx`) or by a path to an `.onnx` or `.pt` file. Handles are cached by
//! canonical path, so a name and the path it stands for share one entry. A per-entry load counter
//! lets tests and notebooks prove that nothing was reloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};

use crate::model::ModelHandle;
use crate::onnx::OnnxModel;
use crate::torch::TorchModel;

/// File extensions the registry can load, with the backend each one goes to.
pub const EXTENSIONS: [&str; 2] = ["onnx", "pt"];

#[derive(Default)]
struct Registry {
    /// Loaded models by canonical path.
    models: BTreeMap<PathBuf, ModelHandle>,
    /// How often each file was handed to a backend; never reset.
    loads: BTreeMap<PathBuf, usize>,
}

/// The one registry of the process, shared by every notebook cell (see [`crate::runtime::process`]).
fn registry() -> &'static Mutex<Registry> {
    crate::runtime::process::shared(crate::runtime::process::Slot::Registry, Default::default)
}

/// The names of the bundled models, sorted.
pub fn available() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crate::paths::models_dir())
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e))
                })
                .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Resolves a bundled model name or a file path to an existing model file.
pub fn resolve(name_or_path: &str) -> Result<PathBuf> {
    let looks_like_path = name_or_path.contains('/')
        || EXTENSIONS
            .iter()
            .any(|ext| name_or_path.ends_with(&format!(".{ext}")));
    if looks_like_path {
        let path = Path::new(name_or_path);
        if !path.is_file() {
            bail!("model file `{name_or_path}` does not exist or is not a file");
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !EXTENSIONS.contains(&ext) {
            bail!(
                "model file `{name_or_path}` has extension `{ext}`; qplay loads .onnx (ONNX Runtime) and .pt (TorchScript)"
            );
        }
        return Ok(path.to_path_buf());
    }
    let dir = crate::paths::models_dir();
    EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{name_or_path}.{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "unknown model `{name_or_path}`; bundled models: {}; or give a path to an .onnx or .pt file",
                available().join(", ")
            )
        })
}

/// Loads a model by bundled name or path, or returns the cached handle if it was loaded before.
pub fn load(name_or_path: &str) -> Result<ModelHandle> {
    let path = resolve(name_or_path)?;
    let key = path
        .canonicalize()
        .with_context(|| format!("cannot open model file {}", path.display()))?;
    let mut registry = registry()
        .lock()
        .map_err(|_| anyhow!("registry poisoned"))?;
    if let Some(model) = registry.models.get(&key) {
        return Ok(Arc::clone(model));
    }
    let name = key
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name_or_path)
        .to_string();
    *registry.loads.entry(key.clone()).or_default() += 1;
    let model: ModelHandle = match key.extension().and_then(|e| e.to_str()) {
        Some("onnx") => Arc::new(OnnxModel::load(&name, &key)?),
        _ => Arc::new(TorchModel::load(&name, &key)?),
    };
    registry.models.insert(key, Arc::clone(&model));
    Ok(model)
}

/// How many times the file behind `name_or_path` was actually handed to a backend in this
/// process (failed loads included): 0 before the first [`load`], 1 after any number of loads
/// that the cache answered.
pub fn load_count(name_or_path: &str) -> usize {
    let Ok(key) = resolve(name_or_path).and_then(|p| Ok(p.canonicalize()?)) else {
        return 0;
    };
    registry()
        .lock()
        .map(|r| r.loads.get(&key).copied().unwrap_or(0))
        .unwrap_or(0)
}
