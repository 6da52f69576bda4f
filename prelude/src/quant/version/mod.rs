//! Model versions: a quantized model and the edits made to it, copy-on-write.
//!
//! A [`QuantModel`] is a value: the original file (shared by all its versions), the edited model
//! of this version, its parent version (for [`QuantModel::undo`]) and the log of edits. Edits
//! validate first and change nothing when they fail.
//!
//! ONNX: the edited model is a protobuf. Each version creates its ONNX Runtime sessions on first
//! use from its own serialized bytes — one optimized session for inference (the same settings as
//! the registry's, so version 0 predicts exactly as `load()`'s model does) and one unoptimized
//! session with every intermediate tensor exposed as an output, for capture.
//!
//! TorchScript: the edited model is a module in memory (see [`super::torch_script`]), which
//! runs inference itself; it shares with its parent all it does not change. It is serialized only
//! for [`QuantModel::save`] and [`QuantModel::content_hash`]; the evaluation cache keys it by
//! [`QuantModel::cache_key`], which needs no bytes.
//!
//! This file holds what is the same for both formats: the version history, the parameter table,
//! validation of edits, diffs and display. What each format does differently lives behind the
//! `Format` trait, in `onnx.rs` and `torch.rs`. Diffs live in `diff.rs`, keeping a
//! tensor in float in `keep_float.rs`.

mod diff;
mod edits;
mod keep_float;
mod onnx;
mod torch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, ArrayD, ArrayView4, IxDyn};
use sha2::{Digest, Sha256};

use super::capture::CaptureMemo;
use super::{fmt_num, QDtype, QuantParam, QuantParams, Role};
use crate::data::to_hex;
use crate::display::{escape_html, MimeBundle, Rich};
use crate::model::Framework;
use crate::model::{Model, ModelInfo};
use onnx::OnnxBody;
use torch::TorchBody;

pub use diff::{Diff, DiffRow};

/// What all versions of one file share.
struct Original {
    name: String,
    framework: Framework,
    path: PathBuf,
    params: Vec<QuantParam>,
    ints: Vec<Option<Vec<i32>>>,
}

/// The model itself, per framework.
#[derive(Clone)]
enum Body {
    Onnx(OnnxBody),
    Torch(TorchBody),
}

impl Body {
    /// The body behind the format-independent interface.
    fn format(&self) -> &dyn Format {
        match self {
            Body::Onnx(b) => b,
            Body::Torch(b) => b,
        }
    }
}

/// What a version asks of its body, in either format.
trait Format {
    /// The integer values of every weight/bias (None for activations), in `params` order.
    fn all_ints(&self, params: &[QuantParam]) -> Vec<Option<Vec<i32>>>;

    /// The stored integers of weight/bias `p`, row `i` of the parameter table.
    fn ints_of(&self, i: usize, p: &QuantParam) -> Result<Vec<i32>>;

    /// The model serialized; `name` (the version's) is for errors.
    fn to_bytes(&self, name: &str) -> Result<Vec<u8>>;

    /// The key in the evaluation cache (see [`QuantModel::cache_key`]).
    fn cache_key(&self, name: &str) -> Result<String>;

    /// How many quantize and dequantize nodes the model has.
    fn qdq_counts(&self, params: &[QuantParam]) -> (usize, usize);

    /// The body and parameter table after `change` to `p`, row `i` of `params`.
    fn edit(
        &self,
        params: &[QuantParam],
        i: usize,
        p: &QuantParam,
        change: Change,
    ) -> Result<(Body, Vec<QuantParam>)>;

    /// Runs `batch` (NHWC) through the version `model` whose body this is.
    fn run(&self, model: &QuantModel, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>>;
}

/// One edit, as each format applies it.
enum Change {
    Scales(Vec<f32>),
    ZeroPoints(Vec<i32>),
    Ints(Vec<i32>),
    /// New scales, zero points and integers, stored as `dtype` (the same type or another).
    Requantize {
        dtype: QDtype,
        scales: Vec<f32>,
        zero_points: Vec<i32>,
        ints: Vec<i32>,
    },
    /// Remove the tensor's quantization; a weight's or bias's float values.
    KeepFloat(Option<Vec<f32>>),
}

/// One version of a quantized ONNX model (version 0 is the file as it is).
#[derive(Clone)]
pub struct QuantModel {
    original: Arc<Original>,
    body: Body,
    params: Arc<Vec<QuantParam>>,
    parent: Option<Arc<QuantModel>>,
    edits: Vec<String>,
    info: ModelInfo,
    /// What this version captured lately (shared by its clones; a new one for every edit).
    pub(super) memo: Arc<CaptureMemo>,
}

/// Opens a quantized model for the workbench by bundled name or path (`.onnx` QDQ, or `.pt`
/// quantized TorchScript). The registry's model of the same file, if loaded, is not affected by
/// anything done here.
pub fn workbench(name_or_path: &str) -> Result<QuantModel> {
    let path = crate::registry::resolve(name_or_path)?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name_or_path)
        .to_string();
    QuantModel::from_bytes(&name, &path, &bytes)
}

impl QuantModel {
    /// Version 0 of a serialized model: TorchScript when `path` ends in `.pt`, else ONNX.
    pub fn from_bytes(name: &str, path: &Path, bytes: &[u8]) -> Result<QuantModel> {
        let torch = path.extension().and_then(|e| e.to_str()) == Some("pt");
        let (body, params, framework) = if torch {
            let (body, params) = TorchBody::load(path, bytes)?;
            (Body::Torch(body), params, Framework::Torch)
        } else {
            let (body, params) = OnnxBody::load(path, bytes)?;
            (Body::Onnx(body), params, Framework::Onnx)
        };
        let original = Arc::new(Original {
            name: name.to_string(),
            framework,
            path: path.to_path_buf(),
            ints: body.format().all_ints(&params),
            params: params.clone(),
        });
        Ok(QuantModel {
            info: info_for(&original, 0),
            original,
            body,
            params: Arc::new(params),
            parent: None,
            edits: Vec::new(),
            memo: Default::default(),
        })
    }

    /// The integer values of every weight/bias (None for activations), in `params` order.
    fn all_ints(&self) -> Vec<Option<Vec<i32>>> {
        self.body.format().all_ints(&self.params)
    }

    /// The stored integers of weight/bias `p`.
    fn ints_of(&self, p: &QuantParam) -> Result<Vec<i32>> {
        self.body.format().ints_of(self.index_of(p)?, p)
    }

    fn index_of(&self, p: &QuantParam) -> Result<usize> {
        self.params
            .iter()
            .position(|q| q.tensor == p.tensor)
            .ok_or_else(|| self.unknown(&p.tensor))
    }

    /// The version number: how many edits lie between this version and the file.
    pub fn version(&self) -> usize {
        self.edits.len()
    }

    /// The edits that made this version, oldest first.
    pub fn history(&self) -> &[String] {
        &self.edits
    }

    /// This version serialized (ONNX protobuf, or a TorchScript archive: the file's bytes for
    /// version 0, else saved from memory on first use and kept).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.body.format().to_bytes(&self.info.name)
    }

    /// sha256 of the serialized version (hex): equal for equal models (the same edits made in
    /// the same order give the same TorchScript bytes).
    pub fn content_hash(&self) -> Result<String> {
        Ok(to_hex(&Sha256::digest(self.to_bytes()?)))
    }

    /// The key of this version in the evaluation cache: its content hash for ONNX; for
    /// TorchScript, which would have to serialize the module to hash it, version 0's content hash
    /// and, for an edited version, a hash of its parent's key and the edit (see `torch_key` in
    /// `version/torch.rs`).
    pub fn cache_key(&self) -> Result<String> {
        self.body.format().cache_key(&self.info.name)
    }

    /// Every quantization parameter, one row per quantized tensor.
    pub fn quant_params(&self) -> QuantParams {
        let (q, dq) = self.body.format().qdq_counts(&self.params);
        QuantParams {
            model: self.info.name.clone(),
            rows: self.params.as_ref().clone(),
            quantize_nodes: q,
            dequantize_nodes: dq,
            framework: self.info.framework,
        }
    }

    /// The parameter of `tensor` (by its row name, its quantized initializer, its scale
    /// initializer or its dequantized output).
    pub fn param(&self, tensor: &str) -> Result<&QuantParam> {
        find(&self.params, tensor).ok_or_else(|| self.unknown(tensor))
    }

    fn unknown(&self, tensor: &str) -> anyhow::Error {
        let names: Vec<&str> = self.params.iter().map(|p| p.tensor.as_str()).collect();
        anyhow!(
            "`{}` has no quantized tensor `{tensor}`; its quantized tensors are: {}",
            self.info.name,
            names.join(", ")
        )
    }

    /// The integer and dequantized values of a weight or bias.
    pub fn weights(&self, tensor: &str) -> Result<Weights> {
        let p = self.param(tensor)?;
        if p.role == Role::Activation {
            bail!(
                "`{}` is an activation (computed at run time); weights() takes a weight or bias: {}",
                p.tensor,
                self.names_with(|r| r != Role::Activation)
            );
        }
        let ints = self.ints_of(p)?;
        let shape = p.shape.clone();
        let deq: Vec<f32> = ints
            .iter()
            .enumerate()
            .map(|(i, &q)| {
                let c = channel(i, &shape, p.axis);
                (q - p.zero_points[c]) as f32 * p.scales[c]
            })
            .collect();
        Ok(Weights {
            tensor: p.tensor.clone(),
            role: p.role,
            dtype: p.dtype,
            scales: p.scales.clone(),
            zero_points: p.zero_points.clone(),
            axis: p.axis,
            int: ArrayD::from_shape_vec(IxDyn(&shape), ints)?,
            dequantized: ArrayD::from_shape_vec(IxDyn(&shape), deq)?,
        })
    }

    fn names_with(&self, keep: impl Fn(Role) -> bool) -> String {
        let names: Vec<&str> = self
            .params
            .iter()
            .filter(|p| keep(p.role))
            .map(|p| p.tensor.as_str())
            .collect();
        names.join(", ")
    }

    /// The version before the last edit.
    pub fn undo(&self) -> Result<QuantModel> {
        self.parent.as_deref().cloned().ok_or_else(|| {
            anyhow!(
                "`{}` is the original; there is no edit to undo",
                self.info.name
            )
        })
    }

    /// Version 0: the model as the file holds it.
    pub fn reset(&self) -> QuantModel {
        let mut v = self.clone();
        while let Some(parent) = v.parent.clone() {
            v = parent.as_ref().clone();
        }
        v
    }

    /// Writes this version as a file: ONNX for ONNX models (loads in Python onnxruntime), a
    /// TorchScript archive for PyTorch models (loads with `torch.jit.load`).
    /// The source model and the bundled models are never overwritten.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let canonical = |p: &Path| std::fs::canonicalize(p).ok();
        if let Some(target) = canonical(path) {
            if Some(&target) == canonical(&self.original.path).as_ref() {
                bail!(
                    "saving `{}` to {} would overwrite the model it came from; choose another file",
                    self.info.name,
                    path.display()
                );
            }
            if canonical(&crate::paths::models_dir()).is_some_and(|dir| target.starts_with(dir)) {
                bail!(
                    "{} is a bundled model (models/ is read-only to qplay); choose another file",
                    path.display()
                );
            }
        }
        std::fs::write(path, self.to_bytes()?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// This version as a single edit `what` on top of `base`, an earlier version of the same
    /// model: the edits between them become one entry of the history, and `undo` goes straight
    /// back to `base`. Steps made of many edits (re-calibration, bias correction) use it.
    pub fn squashed_onto(&self, base: &QuantModel, what: String) -> Result<QuantModel> {
        if !Arc::ptr_eq(&self.original, &base.original) {
            bail!(
                "`{}` is not a version of `{}`",
                self.info.name,
                base.info.name
            );
        }
        let mut edits = base.edits.clone();
        edits.push(what);
        Ok(QuantModel {
            original: Arc::clone(&self.original),
            info: info_for(&self.original, edits.len()),
            body: self.body.clone(),
            params: Arc::clone(&self.params),
            parent: Some(Arc::new(base.clone())),
            edits,
            memo: Default::default(),
        })
    }

    fn edit(&self, what: String, p: &QuantParam, change: Change) -> Result<QuantModel> {
        let i = self.index_of(p)?;
        let (body, params) = self.body.format().edit(&self.params, i, p, change)?;
        let mut edits = self.edits.clone();
        edits.push(what);
        Ok(QuantModel {
            original: Arc::clone(&self.original),
            info: info_for(&self.original, edits.len()),
            body,
            params: Arc::new(params),
            parent: Some(Arc::new(self.clone())),
            edits,
            memo: Default::default(),
        })
    }
}
fn info_for(original: &Original, version: usize) -> ModelInfo {
    ModelInfo {
        name: if version == 0 {
            original.name.clone()
        } else {
            format!("{}@v{version}", original.name)
        },
        framework: original.framework,
        path: original.path.clone(),
        input_shape: vec![None, Some(32), Some(32), Some(3)],
        output_shape: vec![None, Some(10)],
    }
}

fn find<'p>(params: &'p [QuantParam], tensor: &str) -> Option<&'p QuantParam> {
    params.iter().find(|p| p.tensor == tensor).or_else(|| {
        params.iter().find(|p| {
            p.quantized_initializer.as_deref() == Some(tensor)
                || p.dequantized_output.as_deref() == Some(tensor)
                || p.scale_initializer == tensor
        })
    })
}

/// The channel of flat element `i` of a tensor of `shape` quantized along `axis`.
pub(crate) fn channel(i: usize, shape: &[usize], axis: Option<i64>) -> usize {
    let Some(axis) = axis else { return 0 };
    let axis = if axis < 0 {
        (shape.len() as i64 + axis) as usize
    } else {
        axis as usize
    };
    let stride: usize = shape[axis + 1..].iter().product();
    (i / stride.max(1)) % shape[axis].max(1)
}

fn summary_f32(v: &[f32]) -> String {
    match v {
        [one] => fmt_num(*one as f64),
        many => format!(
            "[{}]",
            many.iter()
                .map(|x| fmt_num(*x as f64))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn summary_i32(v: &[i32]) -> String {
    match v {
        [one] => one.to_string(),
        many => format!("{many:?}"),
    }
}

impl Model for QuantModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn run(&self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
        self.body.format().run(self, batch)
    }
}

impl fmt::Debug for QuantModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantModel")
            .field("name", &self.info.name)
            .field("path", &self.info.path)
            .field("edits", &self.edits)
            .finish()
    }
}

impl fmt::Display for QuantModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {} quantized tensors",
            self.info.name,
            self.info.framework,
            self.params.len()
        )?;
        if self.edits.is_empty() {
            write!(f, ", original)")
        } else {
            write!(f, "; edits: {})", self.edits.join("; "))
        }
    }
}

impl Rich for QuantModel {
    fn mime_bundle(&self) -> MimeBundle {
        let mut b = MimeBundle::new();
        b.insert(
            "text/html".into(),
            format!("<p>{}</p>", escape_html(&self.to_string())).into(),
        );
        b.insert("text/plain".into(), self.to_string().into());
        b
    }
}

/// A weight's or bias's values.
#[derive(Debug, Clone)]
pub struct Weights {
    /// The tensor name.
    pub tensor: String,
    /// Weight or bias.
    pub role: Role,
    /// Integer type.
    pub dtype: QDtype,
    /// Scales (one, or one per channel along `axis`).
    pub scales: Vec<f32>,
    /// Zero points, as many as scales.
    pub zero_points: Vec<i32>,
    /// Channel axis when per channel.
    pub axis: Option<i64>,
    /// The stored integers.
    pub int: ArrayD<i32>,
    /// `(int - zero_point) · scale`.
    pub dequantized: ArrayD<f32>,
}

crate::evcxr_display_via_rich!(QuantModel);
