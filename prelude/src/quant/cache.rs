//! The evaluation cache: predictions of a model on a data selection, keyed by the model's key
//! and the selection (data set description and size, sha256 of all labels and of the pixels of
//! the first and last images, and of the selected indices). A model's key is its content hash
//! (sha256 of its bytes: a registry model's file, an ONNX version's protobuf), or for an edited
//! TorchScript version a hash of its file's and its edits ([`super::QuantModel::cache_key`]).
//!
//! Two levels:
//! - **in memory**, for the process: the most recent [`RECENT_ENTRIES`] results, shared by every
//!   copy of this crate in the process (one per notebook cell, see [`crate::process`]). Every
//!   lookup starts here; every result ends up here.
//! - **on disk**, under `paths::cache_dir()/evals/`, for later sessions: full evaluations,
//!   sweeps, sensitivity runs and model comparisons ([`Store::Disk`]) are written there. Quick
//!   evaluations ([`super::QuantModel::quick`]) are not ([`Store::Memory`]): a playground makes
//!   one per slider move, and nothing on that path writes files. They still read it, so a quick
//!   evaluation a sweep already made is a file read.
//!
//! Evaluating the same model version on the same selection again is a lookup, not a model run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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

/// The in-memory level: cache key → predictions, least recently used first out.
#[derive(Default)]
struct Recent {
    entries: HashMap<String, (u64, Arc<[u8]>)>,
    bytes: usize,
    clock: u64,
}

impl Recent {
    fn get(&mut self, key: &str) -> Option<Arc<[u8]>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(used, p)| {
            *used = clock;
            Arc::clone(p)
        })
    }

    fn insert(&mut self, key: String, predictions: Arc<[u8]>) {
        self.clock += 1;
        self.bytes += predictions.len();
        if let Some((_, old)) = self.entries.insert(key, (self.clock, predictions)) {
            self.bytes -= old.len();
        }
        while self.entries.len() > RECENT_ENTRIES || self.bytes > RECENT_BYTES {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, p)) = self.entries.remove(&oldest) {
                self.bytes -= p.len();
            }
        }
    }
}

/// The process's in-memory results (see [`crate::process`]).
fn recent() -> &'static Mutex<Recent> {
    crate::process::shared(crate::process::Slot::Evaluations, Default::default)
}

/// How many results the in-memory level holds now.
pub fn recent_len() -> usize {
    recent().lock().map_or(0, |r| r.entries.len())
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
    crate::interrupt::check()?;
    let start = Instant::now();
    let key = key(model_hash, data, indices);
    let hit = |predictions: Vec<u8>| {
        let seconds = start.elapsed().as_secs_f64();
        Evaluation::of(model, data, indices, predictions, sampled, seconds)
    };
    let path = path_for(&key);
    let remembered = recent().lock().ok().and_then(|mut r| r.get(&key));
    if let Some(p) = remembered.filter(|p| p.len() == indices.len()) {
        let e = hit(p.to_vec());
        // Made by a quick evaluation, kept in memory only: a sweep or a full run keeps it.
        if store == Store::Disk && !path.exists() {
            write(&path, model_hash, &e);
        }
        return Ok((e, true));
    }
    if let Some(p) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            let predictions: Vec<u8> = serde_json::from_value(v["predictions"].clone()).ok()?;
            (predictions.len() == indices.len()).then_some(predictions)
        })
    {
        remember(key, &p);
        return Ok((hit(p), true));
    }
    let e = evaluate_indices(model, data, indices, sampled, options)?;
    remember(key, &e.predictions);
    if store == Store::Disk {
        write(&path, model_hash, &e);
    }
    Ok((e, false))
}

fn remember(key: String, predictions: &[u8]) {
    if let Ok(mut r) = recent().lock() {
        r.insert(key, predictions.into());
    }
}

/// Writes a result file, under a temporary name and renamed, so a reader never sees half a file.
fn write(path: &std::path::Path, model_hash: &str, e: &Evaluation) {
    let record = json!({
        "model": e.model,
        "framework": match e.framework { Framework::Onnx => "onnx", Framework::Torch => "torch" },
        "model_hash": model_hash,
        "dataset": e.dataset,
        "images": e.indices.len(),
        "predictions": e.predictions,
    });
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, record.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
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
