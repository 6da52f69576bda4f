//! A persistent evaluation cache: predictions of a model on a data selection, stored under
//! `paths::cache_dir()/evals/` and keyed by the model's key and the selection (data set
//! description and size, sha256 of all labels and of the pixels of the first and last images,
//! and of the selected indices). A model's key is its content hash (sha256 of its bytes: a
//! registry model's file, an ONNX version's protobuf), or for an edited TorchScript version a
//! hash of its file's and its edits ([`super::QuantModel::cache_key`]). Evaluating the same model
//! version on the same selection again — in this process or after a kernel restart — reads the
//! file instead of running the model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::data::{to_hex, Dataset};
use crate::eval::{evaluate_indices, EvalOptions, Evaluation};
use crate::model::{Framework, Model};

/// sha256 (hex) of a file's bytes: the content hash of a model file.
pub fn file_hash(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(to_hex(&Sha256::digest(bytes)))
}

/// The cache key of (model content, data selection).
pub fn key(model_hash: &str, data: &Dataset, indices: &[usize]) -> String {
    let mut h = Sha256::new();
    h.update(model_hash.as_bytes());
    h.update(data.description().as_bytes());
    h.update((data.len() as u64).to_le_bytes());
    let labels: Vec<u8> = (0..data.len()).map(|i| data.label(i)).collect();
    h.update(&labels);
    let n = data.len();
    let probe: Vec<usize> = (0..n.min(4)).chain(n.saturating_sub(4)..n).collect();
    for v in data.nhwc_batch(&probe).iter() {
        h.update(v.to_le_bytes());
    }
    for &i in indices {
        h.update((i as u64).to_le_bytes());
    }
    to_hex(&h.finalize())
}

fn path_for(key: &str) -> PathBuf {
    crate::paths::cache_dir()
        .join("evals")
        .join(format!("{key}.json"))
}

/// Evaluates `model` (whose key is `model_hash`) on `indices` of `data`, or returns the
/// stored result of an earlier identical evaluation. The second value says whether it came from
/// the cache; then `seconds` is the time the lookup took.
pub fn evaluate_cached(
    model: &dyn Model,
    model_hash: &str,
    data: &Dataset,
    indices: &[usize],
    sampled: bool,
    options: &EvalOptions<'_>,
) -> Result<(Evaluation, bool)> {
    let start = Instant::now();
    let key = key(model_hash, data, indices);
    let path = path_for(&key);
    if let Some(hit) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            let predictions: Vec<u8> = serde_json::from_value(v["predictions"].clone()).ok()?;
            (predictions.len() == indices.len()).then_some(predictions)
        })
    {
        let e = Evaluation {
            model: model.name().to_string(),
            framework: model.framework(),
            dataset: data.description().to_string(),
            indices: indices.to_vec(),
            labels: indices.iter().map(|&i| data.label(i)).collect(),
            predictions: hit,
            sampled,
            seconds: start.elapsed().as_secs_f64(),
        };
        return Ok((e, true));
    }
    let e = evaluate_indices(model, data, indices, sampled, options)?;
    let record = json!({
        "model": e.model,
        "framework": match e.framework { Framework::Onnx => "onnx", Framework::Torch => "torch" },
        "model_hash": model_hash,
        "dataset": e.dataset,
        "images": indices.len(),
        "predictions": e.predictions,
    });
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Written under a temporary name and renamed, so a reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, record.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
    Ok((e, false))
}

impl super::QuantModel {
    /// A cached [`crate::eval::quick`]: the first `per_class` images of each class.
    pub fn quick(&self, data: &Dataset, per_class: usize) -> Result<Evaluation> {
        anyhow::ensure!(per_class > 0, "per_class must be at least 1, got 0");
        let indices = data.stratified(per_class)?;
        Ok(evaluate_cached(
            self,
            &self.cache_key()?,
            data,
            &indices,
            true,
            &EvalOptions::default(),
        )?
        .0)
    }

    /// A cached [`crate::eval::evaluate`] on every image of `data`.
    pub fn evaluate(&self, data: &Dataset) -> Result<Evaluation> {
        let indices: Vec<usize> = (0..data.len()).collect();
        Ok(evaluate_cached(
            self,
            &self.cache_key()?,
            data,
            &indices,
            false,
            &EvalOptions::default(),
        )?
        .0)
    }
}
