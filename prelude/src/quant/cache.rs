//! The evaluation cache: predictions of a model on a data selection, keyed by the model's key
//! and the selection (data set description and size, sha256 of all labels and of the pixels of
//! the first and last images, and of the selected indices). A model's key is its content hash
//! (sha256 of its bytes: a registry model's file, an ONNX version's protobuf), or for an edited
//! TorchScript version a hash of its file's and its edits ([`super::QuantModel::cache_key`]).
//!
//! Two levels, as every [`crate::store::ContentStore`]:
//! - **in memory**, for the process: the most recent [`RECENT_ENTRIES`] results, shared by every
//!   copy of this crate in the process (one per notebook cell, see [`crate::runtime::process`]). Every
//!   lookup starts here; every result ends up here.
//! - **on disk**, under `paths::cache_dir()/evals/`, for later sessions: full evaluations,
//!   sweeps, sensitivity runs and model comparisons ([`Store::Disk`]) are written there. Quick
//!   evaluations ([`super::QuantModel::quick`]) are not ([`Store::Memory`]): a playground makes
//!   one per slider move, and nothing on that path writes files. They still read it, so a quick
//!   evaluation a sweep already made is a file read.
//!
//! Evaluating the same model version on the same selection again is a lookup, not a model run.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::data::{to_hex, Dataset};
use crate::eval::{evaluate_indices, EvalOptions, Evaluation};
use crate::model::{Framework, Model};
use crate::store::{ContentStore, Recent, Stored};

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

/// Results kept in memory at most (the least recently used go first).
pub const RECENT_ENTRIES: usize = 1024;

/// Bytes of predictions kept in memory at most (a full evaluation of CIFAR-10 holds 10,000).
const RECENT_BYTES: usize = 16 << 20;

/// Where a new result is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// In memory for this process, and on disk for later ones.
    Disk,
    /// In memory only.
    Memory,
}

/// A result as kept: the predictions, with the model and data they are of (in the file, for
/// whoever reads it; a lookup needs only the predictions).
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    model: String,
    framework: Framework,
    model_hash: String,
    dataset: String,
    images: usize,
    predictions: Vec<u8>,
}

impl Kept {
    fn of(model_hash: &str, e: &Evaluation) -> Kept {
        Kept {
            model: e.model.clone(),
            framework: e.framework,
            model_hash: model_hash.to_string(),
            dataset: e.dataset.clone(),
            images: e.predictions.len(),
            predictions: e.predictions.clone(),
        }
    }
}

impl Stored for Kept {
    fn to_record(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn from_record(record: &Value) -> Option<Kept> {
        serde_json::from_value(record.clone()).ok()
    }
    fn weight(&self) -> usize {
        self.predictions.len()
    }
}

/// The process's in-memory results, shared by every copy of this crate (see
/// [`crate::runtime::process`]).
fn memory() -> &'static Mutex<Recent<Kept>> {
    crate::runtime::process::shared(crate::runtime::process::Slot::Evaluations, Default::default)
}

/// The evaluation cache: `paths::cache_dir()/evals/<key>.json`.
static EVALUATIONS: ContentStore<Kept> =
    ContentStore::new("evals", RECENT_ENTRIES, RECENT_BYTES, memory);

/// How many results the in-memory level holds now.
pub fn recent_len() -> usize {
    EVALUATIONS.len_in_memory()
}

/// Evaluates `model` (whose key is `model_hash`) on `indices` of `data`, or returns the
/// stored result of an earlier identical evaluation (in memory, else on disk); a new result is
/// kept in memory, and with [`Store::Disk`] on disk too. The second value says whether it came
/// from the cache; then `seconds` is the time the lookup took.
pub fn evaluate_cached(
    model: &dyn Model,
    model_hash: &str,
    data: &Dataset,
    indices: &[usize],
    sampled: bool,
    options: &EvalOptions<'_>,
    store: Store,
) -> Result<(Evaluation, bool)> {
    crate::runtime::interrupt::check()?;
    let start = Instant::now();
    let key = key(model_hash, data, indices);
    let found = EVALUATIONS
        .get(&key)
        .filter(|k| k.predictions.len() == indices.len());
    if let Some(kept) = found {
        // Made by a quick evaluation, kept in memory only: a sweep or a full run keeps it.
        if store == Store::Disk && !EVALUATIONS.path(&key).exists() {
            EVALUATIONS.write(&key, &kept);
        }
        let seconds = start.elapsed().as_secs_f64();
        let predictions = kept.predictions.clone();
        let e = Evaluation::of(model, data, indices, predictions, sampled, seconds);
        return Ok((e, true));
    }
    let e = evaluate_indices(model, data, indices, sampled, options)?;
    let kept = Arc::new(Kept::of(model_hash, &e));
    match store {
        Store::Disk => EVALUATIONS.put(&key, kept),
        Store::Memory => EVALUATIONS.keep(&key, kept),
    }
    Ok((e, false))
}

impl super::QuantModel {
    /// A cached [`crate::eval::quick`]: the first `per_class` images of each class. A new result
    /// is kept in memory only (see the module docs).
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
            Store::Memory,
        )?
        .0)
    }

    /// A cached [`crate::eval::evaluate`] on every image of `data`, kept on disk too.
    pub fn evaluate(&self, data: &Dataset) -> Result<Evaluation> {
        let indices: Vec<usize> = (0..data.len()).collect();
        Ok(evaluate_cached(
            self,
            &self.cache_key()?,
            data,
            &indices,
            false,
            &EvalOptions::default(),
            Store::Disk,
        )?
        .0)
    }
}
