//! Capturing intermediate tensors of an ONNX model for a batch of images.
//!
//! Each version keeps one augmented session: its graph, unoptimized (as onnxruntime's
//! `qdq_loss_debug.collect_activations` runs it, so no tensor is fused away), with every float
//! tensor a node computes added as a graph output. The first capture creates it; later captures
//! of the same version reuse it. Integer tensors (QuantizeLinear outputs) are not captured. A run
//! fetches only the tensors it needs, so ONNX Runtime skips the nodes nothing asked for.
//!
//! Each version also keeps a small memo of what it captured ([`CaptureMemo`]), keyed by the
//! exact input, for the two readers that come back for it: the float model of
//! [`super::sqnr::layer_errors`] is captured once per batch and kept (every edited version is
//! compared against it), not captured again for every slider move; and a histogram captures,
//! besides its tensor, every tensor the per-layer SQNR reads from the version, which the SQNR
//! of the same batch then takes out of the memo (one run for both, and nothing held after).
//! Other captures are not kept: each edit makes a new version, and keeping a quantized
//! version's 32 SQNR tensors held about 94 MB per version on 100 images.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use ndarray::{Array4, ArrayD, ArrayView4, ArrayViewD};
use ort::value::DynValue;

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

/// One captured tensor: ONNX Runtime's output value, read in place (no copy), or, from
/// TorchScript, an array.
pub(crate) enum Captured {
    Onnx(DynValue),
    Array(ArrayD<f32>),
}

impl Captured {
    /// The values.
    pub(crate) fn view(&self) -> Result<ArrayViewD<'_, f32>> {
        match self {
            Captured::Onnx(value) => Ok(value.try_extract_array::<f32>()?),
            Captured::Array(array) => Ok(array.view()),
        }
    }

    fn bytes(&self) -> usize {
        self.view().map_or(0, |v| v.len()) * std::mem::size_of::<f32>()
    }
}

/// Captured tensors by name, shared between a version's memo and its readers.
pub(crate) type Tensors = BTreeMap<String, Arc<Captured>>;

/// What a capture does with the version's memo (see [`CaptureMemo`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Memo {
    /// Keeps what it captured: a reference other versions are compared against, batch after
    /// batch (the float side of the per-layer SQNR).
    Keep,
    /// Captures, besides the tensors asked for, every tensor the per-layer SQNR reads from this
    /// version, and keeps them until the SQNR takes them (a histogram, which a playground shows
    /// before the SQNR of the same version and images).
    ForSqnr,
    /// Takes what it reads out of the memo: the last reader (the quantized side of the SQNR).
    Take,
    /// Reads the memo, keeps nothing (calibration, [`QuantModel::capture`]).
    Read,
}

/// Batches a version's memo keeps at most (the most recent ones).
const MEMO_BATCHES: usize = 2;

/// Bytes of tensors a version's memo keeps at most; a capture larger than this alone is not
/// kept. (The 32 tensors a histogram keeps for the per-layer SQNR of a ResNet-8 version take
/// about 94 MB for 100 images; every capturable tensor, about 95 MB.)
const MEMO_BYTES: usize = 200 << 20;

/// What a version captured on its last batches: each entry holds a copy of the input (compared
/// exactly, bit for bit, on lookup) and the tensors captured from it. It lives inside the
/// version (shared by its clones, fresh for every edit), so it goes when the version goes.
#[derive(Default)]
pub(crate) struct CaptureMemo {
    /// Oldest first.
    entries: Mutex<Vec<MemoEntry>>,
}

struct MemoEntry {
    input: Array4<f32>,
    tensors: Tensors,
    bytes: usize,
}

fn same_input(a: &Array4<f32>, b: &ArrayView4<'_, f32>) -> bool {
    if a.shape() != b.shape() {
        return false;
    }
    match (a.as_slice(), b.as_slice()) {
        (Some(x), Some(y)) => x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
        _ => a
            .iter()
            .zip(b.iter())
            .all(|(p, q)| p.to_bits() == q.to_bits()),
    }
}

impl CaptureMemo {
    /// The tensors memoized for `batch`, if they include every name in `wanted`. `take` removes
    /// the batch's entry (found complete or not).
    fn lookup(&self, batch: &ArrayView4<'_, f32>, wanted: &[&str], take: bool) -> Option<Tensors> {
        let mut entries = self.entries.lock().ok()?;
        let at = entries.iter().position(|e| same_input(&e.input, batch))?;
        let entry = entries.remove(at);
        let complete = wanted.iter().all(|w| entry.tensors.contains_key(*w));
        let tensors = complete.then(|| entry.tensors.clone());
        if !take {
            entries.push(entry);
        }
        tensors
    }

    /// Keeps `tensors` captured from `batch` (added to what is kept for the same input), then
    /// forgets the oldest batches beyond the bounds.
    fn store(&self, batch: &ArrayView4<'_, f32>, tensors: &Tensors) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let mut entry = match entries.iter().position(|e| same_input(&e.input, batch)) {
            Some(at) => entries.remove(at),
            None => MemoEntry {
                input: batch.to_owned(),
                tensors: Tensors::new(),
                bytes: 0,
            },
        };
        for (name, t) in tensors {
            if !entry.tensors.contains_key(name) {
                entry.bytes += t.bytes();
                entry.tensors.insert(name.clone(), Arc::clone(t));
            }
        }
        if entry.bytes > MEMO_BYTES {
            return;
        }
        entries.push(entry);
        while entries.len() > MEMO_BATCHES
            || entries.iter().map(|e| e.bytes).sum::<usize>() > MEMO_BYTES
        {
            entries.remove(0);
        }
    }

    /// How many batches are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
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
    /// when empty). Unknown names are an error that lists the capturable ones. Read from the
    /// version's memo when it holds them (see [`CaptureMemo`]); nothing is kept.
    pub fn capture(&self, batch: ArrayView4<'_, f32>, tensors: &[&str]) -> Result<Capture> {
        let captured = self.captured(batch, tensors, Memo::Read)?;
        let tensors = captured
            .into_iter()
            .filter(|(name, _)| tensors.is_empty() || tensors.contains(&name.as_str()))
            .map(|(name, t)| Ok((name, t.view()?.to_owned())))
            .collect::<Result<_>>()?;
        Ok(Capture {
            model: self.name().to_string(),
            tensors,
        })
    }

    /// [`QuantModel::capture`] without copies: at least the tensors named in `tensors` (every
    /// capturable one when empty), from the version's memo when it holds them, else from a run;
    /// `memo` says what the run captures besides them and what the memo keeps (see [`Memo`]).
    pub(crate) fn captured(
        &self,
        batch: ArrayView4<'_, f32>,
        tensors: &[&str],
        memo: Memo,
    ) -> Result<Tensors> {
        crate::runtime::interrupt::check()?;
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
        let wanted: Vec<&str> = if tensors.is_empty() {
            known.iter().map(String::as_str).collect()
        } else {
            tensors.to_vec()
        };
        if let Some(hit) = self.memo.lookup(&batch, &wanted, memo == Memo::Take) {
            return Ok(hit);
        }
        let pairs = match memo {
            Memo::ForSqnr => matching_pairs(&known),
            _ => Vec::new(),
        };
        let names: Vec<&str> = known
            .iter()
            .map(String::as_str)
            .filter(|k| {
                wanted.contains(k)
                    || pairs
                        .iter()
                        .any(|(_, pre, post)| pre.as_str() == *k || post.as_str() == *k)
            })
            .collect();
        let outputs: Vec<(String, Captured)> = if torch {
            self.torch_capture_run(batch)?
                .into_iter()
                .map(|(name, t)| (name, Captured::Array(t)))
                .collect()
        } else {
            self.capture_runner()?
                .run_outputs(batch, Some(&names))?
                .into_iter()
                .map(|(name, value)| (name, Captured::Onnx(value)))
                .collect()
        };
        let captured: Tensors = outputs
            .into_iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(name, t)| (name, Arc::new(t)))
            .collect();
        if matches!(memo, Memo::Keep | Memo::ForSqnr) {
            self.memo.store(&batch, &captured);
        }
        Ok(captured)
    }
}

const DQ_SUFFIX: &str = "_DequantizeLinear_Output";
const DQ_SUFFIX_1: &str = "_DequantizeLinear_Output_1";
const Q_INPUT_SUFFIX: &str = "_QuantizeLinear_Input";

/// The pairs (name, before QDQ, after QDQ) onnxruntime's matching finds among `names`.
pub fn matching_pairs(names: &[String]) -> Vec<(String, String, String)> {
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    for name in names {
        let pair = if let Some(stem) = name.strip_suffix(Q_INPUT_SUFFIX) {
            has(stem).then(|| (stem.to_string(), name.clone(), stem.to_string()))
        } else if let Some(stem) = name.strip_suffix(DQ_SUFFIX) {
            has(stem).then(|| (stem.to_string(), stem.to_string(), name.clone()))
        } else if let Some(stem) = name.strip_suffix(DQ_SUFFIX_1) {
            has(stem).then(|| (stem.to_string(), stem.to_string(), name.clone()))
        } else {
            None
        };
        if let Some(p) = pair {
            // Later matches replace earlier ones, as the dict assignment does.
            pairs.retain(|q| q.0 != p.0);
            pairs.push(p);
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(name: &str, n: usize) -> Tensors {
        let t = Captured::Array(ArrayD::zeros(vec![n]));
        Tensors::from([(name.to_string(), Arc::new(t))])
    }

    fn batch(v: f32) -> Array4<f32> {
        Array4::from_elem((2, 4, 4, 3), v)
    }

    #[test]
    fn the_memo_matches_inputs_bit_for_bit_and_keeps_the_last_batches() {
        let memo = CaptureMemo::default();
        memo.store(&batch(1.0).view(), &tensors("t", 8));
        assert!(memo.lookup(&batch(1.0).view(), &["t"], false).is_some());
        // A tensor it does not hold, another input, an input equal as numbers but not as bits.
        assert!(memo
            .lookup(&batch(1.0).view(), &["t", "u"], false)
            .is_none());
        assert!(memo.lookup(&batch(2.0).view(), &["t"], false).is_none());
        memo.store(&batch(0.0).view(), &tensors("t", 8));
        assert!(memo.lookup(&batch(-0.0).view(), &["t"], false).is_none());
        // More tensors of the same input join its entry.
        memo.store(&batch(1.0).view(), &tensors("u", 8));
        assert!(memo
            .lookup(&batch(1.0).view(), &["t", "u"], false)
            .is_some());
        assert_eq!(memo.len(), 2);
        // A third batch drops the least recently used (0.0; 1.0 was just looked up).
        memo.store(&batch(3.0).view(), &tensors("t", 8));
        assert_eq!(memo.len(), MEMO_BATCHES);
        assert!(memo.lookup(&batch(0.0).view(), &["t"], false).is_none());
        assert!(memo.lookup(&batch(1.0).view(), &["t"], false).is_some());
        // A capture larger than the memo's bytes is not kept and drops nothing.
        memo.store(&batch(4.0).view(), &tensors("t", MEMO_BYTES / 4 + 1));
        assert!(memo.lookup(&batch(4.0).view(), &["t"], false).is_none());
        assert_eq!(memo.len(), MEMO_BATCHES);
        // Two that fit the count but not the bytes: only the newer stays.
        let half = MEMO_BYTES / 8 + 1;
        memo.store(&batch(5.0).view(), &tensors("t", half));
        memo.store(&batch(6.0).view(), &tensors("t", half));
        assert_eq!(memo.len(), 1);
        assert!(memo.lookup(&batch(6.0).view(), &["t"], false).is_some());
    }

    #[test]
    fn taking_removes_the_batch_found_complete_or_not() {
        let memo = CaptureMemo::default();
        memo.store(&batch(1.0).view(), &tensors("t", 8));
        memo.store(&batch(2.0).view(), &tensors("t", 8));
        assert!(memo.lookup(&batch(1.0).view(), &["t"], true).is_some());
        assert!(memo.lookup(&batch(1.0).view(), &["t"], false).is_none());
        // Incomplete: its reader captures again, and the memo lets the entry go.
        assert!(memo.lookup(&batch(2.0).view(), &["t", "u"], true).is_none());
        assert_eq!(memo.len(), 0);
    }

    #[test]
    fn a_histogram_and_the_sqnr_share_one_run_and_only_the_reference_stays() {
        use crate::data::{Bundled, Dataset};
        use crate::quant::{sqnr::layer_errors, workbench};
        let data = Dataset::bundled(&crate::paths::root(), Bundled::Lossless249).unwrap();
        let images: Vec<usize> = (0..8).collect();
        let batch = data.nhwc_batch(&images);
        let float = workbench("resnet8_float").unwrap();
        let m = workbench("resnet8_int8").unwrap();
        crate::charts::tensor_histogram(&m, "activation_2", Some(batch.view()), 0).unwrap();
        let pairs = matching_pairs(&m.capturable());
        let every: Vec<&str> = pairs
            .iter()
            .flat_map(|(_, pre, post)| [pre.as_str(), post.as_str()])
            .collect();
        assert!(m.memo.lookup(&batch.view(), &every, false).is_some());
        let shared = layer_errors(&float, &m, &data, &images).unwrap();
        assert_eq!((m.memo.len(), float.memo.len()), (0, 1));
        // The same numbers as a version that showed no histogram first.
        let fresh = workbench("resnet8_int8").unwrap();
        let alone = layer_errors(&float, &fresh, &data, &images).unwrap();
        let bits = |e: &crate::quant::LayerErrors| {
            e.rows
                .iter()
                .map(|r| {
                    (
                        r.tensor.clone(),
                        r.qdq_err.to_bits(),
                        r.xmodel_err.map(f64::to_bits),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&shared), bits(&alone));
        assert_eq!(fresh.memo.len(), 0);
    }
}
