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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, ArrayD, ArrayView4, IxDyn};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::capture::CaptureMemo;
use super::onnx_graph::{self, proto::ModelProto};
use super::torch_script::{self, Location, Operand, Script};
use super::{fmt_num, QDtype, QuantParam, QuantParams, Role};
use crate::data::to_hex;
use crate::display::{escape_html, MimeBundle, Rich};
use crate::model::Framework;
use crate::model::{Model, ModelInfo};
use crate::onnx::OnnxModel;

/// What all versions of one file share.
struct Original {
    name: String,
    framework: Framework,
    path: PathBuf,
    params: Vec<QuantParam>,
    ints: Vec<Option<Vec<i32>>>,
}

/// A lazily created session; the error is kept as text so that the cell can be shared.
type LazySession = Arc<OnceLock<Result<OnnxModel, String>>>;

/// The model itself, per framework.
#[derive(Clone)]
enum Body {
    Onnx {
        proto: Arc<ModelProto>,
        session: LazySession,
        capture_session: LazySession,
    },
    Torch {
        /// The module, in memory; it runs inference too.
        script: Arc<Script>,
        /// Where each parameter (same order as `params`) lives in the module tree.
        locations: Arc<Vec<Location>>,
        /// The evaluation cache key (see [`torch_key`]).
        key: Arc<str>,
        /// The serialized module, made on first use (version 0: the file's bytes).
        bytes: Arc<OnceLock<Result<Vec<u8>, String>>>,
        capture: Arc<OnceLock<Result<TorchCapture, String>>>,
    },
}

/// A TorchScript version whose `forward` also returns its quantized intermediate tensors.
pub(crate) struct TorchCapture {
    script: Script,
    /// Names of the tuple elements after the model output.
    names: Vec<String>,
}

/// One edit, as the backends apply it.
enum Change {
    Scales(Vec<f32>),
    ZeroPoints(Vec<i32>),
    Ints(Vec<i32>),
    Requantize {
        scales: Vec<f32>,
        zero_points: Vec<i32>,
        ints: Vec<i32>,
    },
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
            let script = Script::load(bytes)
                .with_context(|| format!("cannot load TorchScript model {}", path.display()))?;
            let (params, locations): (Vec<_>, Vec<_>) = script
                .params()
                .with_context(|| format!("cannot inspect TorchScript model {}", path.display()))?
                .into_iter()
                .unzip();
            let body = Body::Torch {
                script: Arc::new(script),
                locations: Arc::new(locations),
                key: to_hex(&Sha256::digest(bytes)).into(),
                bytes: Arc::new(OnceLock::from(Ok(bytes.to_vec()))),
                capture: Default::default(),
            };
            (body, params, Framework::Torch)
        } else {
            let proto = onnx_graph::decode(bytes)
                .with_context(|| format!("{} is not an ONNX model", path.display()))?;
            let params = onnx_graph::quant_params(&proto)?;
            let body = Body::Onnx {
                proto: Arc::new(proto),
                session: Default::default(),
                capture_session: Default::default(),
            };
            (body, params, Framework::Onnx)
        };
        let mut v = QuantModel {
            info: ModelInfo {
                name: String::new(),
                framework,
                path: path.to_path_buf(),
                input_shape: Vec::new(),
                output_shape: Vec::new(),
            },
            original: Arc::new(Original {
                name: name.to_string(),
                framework,
                path: path.to_path_buf(),
                params: params.clone(),
                ints: Vec::new(),
            }),
            body,
            params: Arc::new(params.clone()),
            parent: None,
            edits: Vec::new(),
            memo: Default::default(),
        };
        let ints = v.all_ints();
        v.original = Arc::new(Original {
            name: name.to_string(),
            framework,
            path: path.to_path_buf(),
            params,
            ints,
        });
        v.info = info_for(&v.original, 0);
        Ok(v)
    }

    /// The integer values of every weight/bias (None for activations), in `params` order.
    fn all_ints(&self) -> Vec<Option<Vec<i32>>> {
        match &self.body {
            Body::Onnx { proto, .. } => self
                .params
                .iter()
                .map(|p| onnx_graph::read_weight_ints(proto, p).ok())
                .collect(),
            Body::Torch {
                script, locations, ..
            } => locations
                .iter()
                .map(|l| match l {
                    Location::Weight { module } => script
                        .weight(*module)
                        .and_then(|w| torch_script::weight_ints(&w))
                        .ok(),
                    Location::Operand { .. } => None,
                })
                .collect(),
        }
    }

    /// The stored integers of weight/bias `p`.
    fn ints_of(&self, p: &QuantParam) -> Result<Vec<i32>> {
        match &self.body {
            Body::Onnx { proto, .. } => onnx_graph::read_weight_ints(proto, p),
            Body::Torch {
                script, locations, ..
            } => {
                let i = self.index_of(p)?;
                let Location::Weight { module } = locations[i] else {
                    bail!("`{}` is an activation; it has no stored integers", p.tensor);
                };
                torch_script::weight_ints(&script.weight(module)?)
            }
        }
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

    /// The ONNX protobuf of this version (an error for TorchScript models).
    pub fn proto(&self) -> Result<&ModelProto> {
        match &self.body {
            Body::Onnx { proto, .. } => Ok(proto),
            Body::Torch { .. } => bail!(
                "`{}` is a TorchScript model; this needs an ONNX graph (TorchScript capture \
                 covers the quantized tensors of the root graph; SQNR is ONNX only)",
                self.info.name
            ),
        }
    }

    /// This version serialized (ONNX protobuf, or a TorchScript archive: the file's bytes for
    /// version 0, else saved from memory on first use and kept).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        match &self.body {
            Body::Onnx { proto, .. } => Ok(onnx_graph::encode(proto)),
            Body::Torch { script, bytes, .. } => bytes
                .get_or_init(|| script.save().map_err(|e| format!("{e:#}")))
                .clone()
                .map_err(|e| anyhow!("cannot serialize `{}`: {e}", self.info.name)),
        }
    }

    /// sha256 of the serialized version (hex): equal for equal models (the same edits made in
    /// the same order give the same TorchScript bytes).
    pub fn content_hash(&self) -> Result<String> {
        Ok(to_hex(&Sha256::digest(self.to_bytes()?)))
    }

    /// The key of this version in the evaluation cache: its content hash for ONNX; for
    /// TorchScript, which would have to serialize the module to hash it, version 0's content hash
    /// and, for an edited version, a hash of its parent's key and the edit (see [`torch_key`]).
    pub fn cache_key(&self) -> Result<String> {
        match &self.body {
            Body::Onnx { .. } => self.content_hash(),
            Body::Torch { key, .. } => Ok(key.to_string()),
        }
    }

    /// Every quantization parameter, one row per quantized tensor.
    pub fn quant_params(&self) -> QuantParams {
        let (q, dq) = match &self.body {
            Body::Onnx { proto, .. } => onnx_graph::qdq_counts(proto),
            // TorchScript: one quantize operand pair per activation row, no separate dequantize.
            Body::Torch { .. } => (
                self.params
                    .iter()
                    .filter(|p| p.role == Role::Activation)
                    .count(),
                0,
            ),
        };
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

    /// A new version with `tensor`'s (per-tensor) scale set to `scale`.
    pub fn with_scale(&self, tensor: &str, scale: f32) -> Result<QuantModel> {
        let p = self.param(tensor)?;
        if p.per_channel() {
            bail!(
                "`{}` has {} per-channel scales (axis {}); use with_scales with {} values",
                p.tensor,
                p.scales.len(),
                p.axis.unwrap_or(0),
                p.scales.len()
            );
        }
        self.with_scales(tensor, &[scale])
    }

    /// A new version with all of `tensor`'s scales replaced (one per channel, or one).
    pub fn with_scales(&self, tensor: &str, scales: &[f32]) -> Result<QuantModel> {
        let p = self.param(tensor)?.clone();
        if scales.len() != p.scales.len() {
            bail!(
                "`{}` has {} scale(s); got {} values",
                p.tensor,
                p.scales.len(),
                scales.len()
            );
        }
        if let Some((i, bad)) = scales
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            bail!(
                "scale {bad} (index {i}) for `{}` is not allowed: a scale must be a finite \
                 number > 0",
                p.tensor
            );
        }
        let what = format!("scale of {} → {}", p.tensor, summary_f32(scales));
        self.edit(what, &p, Change::Scales(scales.to_vec()))
    }

    /// A new version with `tensor`'s (per-tensor) zero point set to `zero_point`.
    pub fn with_zero_point(&self, tensor: &str, zero_point: i32) -> Result<QuantModel> {
        let p = self.param(tensor)?;
        if p.per_channel() {
            bail!(
                "`{}` has {} per-channel zero points (axis {}); use with_zero_points with {} values",
                p.tensor,
                p.zero_points.len(),
                p.axis.unwrap_or(0),
                p.zero_points.len()
            );
        }
        self.with_zero_points(tensor, &[zero_point])
    }

    /// A new version with all of `tensor`'s zero points replaced (one per channel, or one).
    pub fn with_zero_points(&self, tensor: &str, zero_points: &[i32]) -> Result<QuantModel> {
        let p = self.param(tensor)?.clone();
        if zero_points.len() != p.zero_points.len() {
            bail!(
                "`{}` has {} zero point(s); got {} values",
                p.tensor,
                p.zero_points.len(),
                zero_points.len()
            );
        }
        check_range(&p, zero_points, "zero point")?;
        let what = format!("zero point of {} → {}", p.tensor, summary_i32(zero_points));
        self.edit(what, &p, Change::ZeroPoints(zero_points.to_vec()))
    }

    /// A new version with a weight's or bias's integer values replaced; `values` must have the
    /// tensor's shape and lie in its dtype's range.
    pub fn with_weight_int(&self, tensor: &str, values: &ArrayD<i32>) -> Result<QuantModel> {
        let p = self.param(tensor)?.clone();
        if p.role == Role::Activation {
            bail!(
                "`{}` is an activation; with_weight_int takes a weight or bias: {}",
                p.tensor,
                self.names_with(|r| r != Role::Activation)
            );
        }
        if values.shape() != p.shape.as_slice() {
            bail!(
                "`{}` has shape {:?}; got values of shape {:?}",
                p.tensor,
                p.shape,
                values.shape()
            );
        }
        let flat: Vec<i32> = values.iter().copied().collect();
        check_range(&p, &flat, "integer value")?;
        let before = self.ints_of(&p)?;
        let changed = before.iter().zip(&flat).filter(|(a, b)| a != b).count();
        let what = format!("{changed} integer value(s) of {}", p.tensor);
        self.edit(what, &p, Change::Ints(flat))
    }

    /// A new version with a weight re-quantized to `bits` (2..=8) bits, simulated in its 8-bit
    /// container: per channel (or per tensor), the dequantized weights get a new scale so that
    /// their range fits a `bits`-bit grid. Symmetric weights (all zero points 0, int8) stay
    /// symmetric on `-(2^(bits-1) - 1) ..= 2^(bits-1) - 1`; others get an asymmetric grid of
    /// `2^bits` levels starting at the dtype's minimum, with a new zero point.
    pub fn with_bits(&self, tensor: &str, bits: u32) -> Result<QuantModel> {
        let p = self.param(tensor)?.clone();
        if p.role != Role::Weight {
            bail!(
                "`{}` is a{} {}; with_bits re-quantizes weights: {}",
                p.tensor,
                if p.role == Role::Activation { "n" } else { "" },
                p.role,
                self.names_with(|r| r == Role::Weight)
            );
        }
        if !(2..=8).contains(&bits) {
            bail!(
                "bits = {bits} for `{}` is not allowed: 2 to 8 bits fit its {} container",
                p.tensor,
                p.dtype
            );
        }
        let w = self.weights(tensor)?;
        let values: Vec<f32> = w.dequantized.iter().copied().collect();
        let channels = p.scales.len();
        let symmetric = p.dtype == QDtype::Int8 && p.zero_points.iter().all(|&z| z == 0);
        let (dmin, _) = p.dtype.range();
        let mut lo = vec![0f32; channels];
        let mut hi = vec![0f32; channels];
        for (i, &v) in values.iter().enumerate() {
            let c = channel(i, &p.shape, p.axis);
            lo[c] = lo[c].min(v);
            hi[c] = hi[c].max(v);
        }
        let mut scales = p.scales.clone();
        let mut zps = p.zero_points.clone();
        let (qmin, qmax): (Vec<i64>, Vec<i64>);
        if symmetric {
            let m = (1i64 << (bits - 1)) - 1;
            for c in 0..channels {
                let a = lo[c].abs().max(hi[c].abs());
                if a > 0.0 {
                    scales[c] = a / m as f32;
                }
            }
            qmin = vec![-m; channels];
            qmax = vec![m; channels];
        } else {
            let levels = (1i64 << bits) - 1;
            for c in 0..channels {
                if hi[c] > lo[c] {
                    scales[c] = (hi[c] - lo[c]) / levels as f32;
                    zps[c] = (dmin + (-lo[c] / scales[c]).round() as i64) as i32;
                }
            }
            qmin = vec![dmin; channels];
            qmax = vec![dmin + levels; channels];
        }
        let ints: Vec<i32> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = channel(i, &p.shape, p.axis);
                let q = (v / scales[c]).round_ties_even() as i64 + zps[c] as i64;
                q.clamp(qmin[c], qmax[c]) as i32
            })
            .collect();
        let what = format!("{} re-quantized to {bits} bits", p.tensor);
        self.edit(
            what,
            &p,
            Change::Requantize {
                scales,
                zero_points: zps,
                ints,
            },
        )
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

    /// The parameters that differ from the original, one row per changed field.
    pub fn diff(&self) -> Diff {
        let mut rows = Vec::new();
        // One read of all integers (a TorchScript version would otherwise load once per row).
        let now_ints = self.all_ints();
        for (i, now) in self.params.iter().enumerate() {
            let Some(was) = self.original.params.iter().find(|p| p.tensor == now.tensor) else {
                continue;
            };
            if now.scales != was.scales {
                rows.push(DiffRow {
                    tensor: now.tensor.clone(),
                    role: now.role,
                    field: "scale".into(),
                    before: summary_f32(&was.scales),
                    after: summary_f32(&now.scales),
                });
            }
            if now.zero_points != was.zero_points {
                rows.push(DiffRow {
                    tensor: now.tensor.clone(),
                    role: now.role,
                    field: "zero point".into(),
                    before: summary_i32(&was.zero_points),
                    after: summary_i32(&now.zero_points),
                });
            }
            if let (Some(Some(before)), Some(Some(after))) =
                (self.original.ints.get(i), now_ints.get(i))
            {
                let changed = before.iter().zip(after).filter(|(a, b)| a != b).count();
                if changed > 0 {
                    let max = before
                        .iter()
                        .zip(after)
                        .map(|(a, b)| (*a as i64 - *b as i64).abs())
                        .max()
                        .unwrap_or(0);
                    rows.push(DiffRow {
                        tensor: now.tensor.clone(),
                        role: now.role,
                        field: "integer values".into(),
                        before: format!("{} values", before.len()),
                        after: format!("{changed} changed, max |Δ| {max}"),
                    });
                }
            }
        }
        Diff {
            model: self.info.name.clone(),
            history: self.edits.clone(),
            rows,
        }
    }

    /// Writes this version as a file: ONNX for ONNX models (loads in Python onnxruntime), a
    /// TorchScript archive for PyTorch models (loads with `torch.jit.load`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The capture session: this version unoptimized, with every float tensor a node computes
    /// exposed as a graph output. Created on first capture and kept with the version.
    pub(crate) fn capture_runner(&self) -> Result<&OnnxModel> {
        let proto = self.proto()?;
        let Body::Onnx {
            capture_session, ..
        } = &self.body
        else {
            unreachable!("proto() succeeded");
        };
        capture_session
            .get_or_init(|| {
                let mut proto = proto.clone();
                let tensors = super::capture::capturable(&proto);
                onnx_graph::add_outputs(&mut proto, &tensors).map_err(|e| e.to_string())?;
                OnnxModel::from_bytes(
                    &self.info.name,
                    &self.info.path,
                    &onnx_graph::encode(&proto),
                    false,
                )
                .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// The TorchScript capture module, built on first use: this version's `forward` changed
    /// to also return every quantized tensor its root graph computes.
    fn torch_capture(&self) -> Result<&TorchCapture> {
        let Body::Torch {
            script,
            locations,
            capture,
            ..
        } = &self.body
        else {
            bail!("`{}` is not a TorchScript model", self.info.name);
        };
        capture
            .get_or_init(|| {
                let build = || -> Result<TorchCapture> {
                    let (script, exposed) = script.expose_activations("capture")?;
                    let names = exposed
                        .iter()
                        .map(|e| match e {
                            torch_script::Exposed::Node(n) => locations
                                .iter()
                                .zip(self.params.iter())
                                .find(|(l, _)| {
                                    matches!(l, Location::Operand { module: 0, node, .. } if node == n)
                                })
                                .map(|(_, p)| p.tensor.clone())
                                .unwrap_or_else(|| format!("node_{n}")),
                            torch_script::Exposed::Module(name) => name.clone(),
                        })
                        .collect();
                    Ok(TorchCapture { script, names })
                };
                build().map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// Names a TorchScript version can capture (its quantized tensors).
    pub(crate) fn torch_capturable(&self) -> Result<Vec<String>> {
        Ok(self.torch_capture()?.names.clone())
    }

    /// Runs the capture module on `batch`; returns every exposed tensor, dequantized.
    pub(crate) fn torch_capture_run(
        &self,
        batch: ArrayView4<'_, f32>,
    ) -> Result<Vec<(String, ndarray::ArrayD<f32>)>> {
        crate::model::check_input(self, batch.shape())?;
        let cap = self.torch_capture()?;
        let items = cap.script.forward(&crate::torch::input_tensor(batch)?)?;
        if items.len() != cap.names.len() + 1 {
            bail!(
                "the capture module returned {} values; expected {}",
                items.len(),
                cap.names.len() + 1
            );
        }
        let mut all = Vec::new();
        for (name, item) in cap.names.iter().zip(items.into_iter().skip(1)) {
            let Some(t) = item else {
                continue;
            };
            let t = match t.kind() {
                tch::Kind::QInt8 | tch::Kind::QUInt8 | tch::Kind::QInt32 => t.dequantize(),
                _ => t,
            };
            let t = t.to_kind(tch::Kind::Float).contiguous();
            let dims: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let values = Vec::<f32>::try_from(&t.view(-1))?;
            all.push((
                name.clone(),
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&dims), values)?,
            ));
        }
        Ok(all)
    }

    fn edit(&self, what: String, p: &QuantParam, change: Change) -> Result<QuantModel> {
        let (body, params) = match &self.body {
            Body::Onnx { proto, .. } => {
                let mut proto = proto.as_ref().clone();
                match &change {
                    Change::Scales(s) => onnx_graph::write_scales(&mut proto, p, s)?,
                    Change::ZeroPoints(z) => onnx_graph::write_zero_points(&mut proto, p, z)?,
                    Change::Ints(v) => onnx_graph::write_weight_ints(&mut proto, p, v)?,
                    Change::Requantize {
                        scales,
                        zero_points,
                        ints,
                    } => {
                        onnx_graph::write_scales(&mut proto, p, scales)?;
                        if *zero_points != p.zero_points {
                            onnx_graph::write_zero_points(&mut proto, p, zero_points)?;
                        }
                        onnx_graph::write_weight_ints(&mut proto, p, ints)?;
                    }
                }
                let params = onnx_graph::quant_params(&proto)?;
                let body = Body::Onnx {
                    proto: Arc::new(proto),
                    session: Default::default(),
                    capture_session: Default::default(),
                };
                (body, params)
            }
            Body::Torch {
                script,
                locations,
                key,
                ..
            } => {
                // The new module shares with this one every object and all code the edit does
                // not change, and the parameter table is this one's with the edited row updated
                // (checked against the shim's listing of the new module by the unit test
                // `torch_tables_match_a_fresh_listing_and_parents_stay_as_they_were`).
                let i = self.index_of(p)?;
                let at = &locations[i];
                let mut row = p.clone();
                let (key, script) = if p.role == Role::Activation {
                    let value = match &change {
                        Change::Scales(s) => Operand::Scale(s[0]),
                        Change::ZeroPoints(z) => Operand::ZeroPoint(z[0]),
                        _ => bail!("`{}` is an activation; it has no stored integers", p.tensor),
                    };
                    match value {
                        Operand::Scale(s) => row.scales = vec![s],
                        Operand::ZeroPoint(z) => row.zero_points = vec![z],
                    }
                    let key = torch_key(key, &p.tensor, &TorchWrite::Activation(value));
                    let script = script.with_activation(at, value, &key[..16])?;
                    (key, script)
                } else {
                    let (mut scales, mut zps, mut ints) =
                        (p.scales.clone(), p.zero_points.clone(), None);
                    match change {
                        Change::Scales(s) => scales = s,
                        Change::ZeroPoints(z) => zps = z,
                        Change::Ints(v) => ints = Some(v),
                        Change::Requantize {
                            scales: s,
                            zero_points: z,
                            ints: v,
                        } => {
                            scales = s;
                            zps = z;
                            ints = Some(v);
                        }
                    }
                    let ints = match ints {
                        Some(v) => v,
                        None => self.ints_of(p)?,
                    };
                    let script = script.with_weight_values(at, &ints, &scales, &zps)?;
                    let key = torch_key(
                        key,
                        &p.tensor,
                        &TorchWrite::Weight {
                            ints: &ints,
                            scales: &scales,
                            zero_points: &zps,
                        },
                    );
                    row.scales = scales;
                    row.zero_points = zps;
                    (key, script)
                };
                let mut params = self.params.as_ref().clone();
                params[i] = row;
                let body = Body::Torch {
                    script: Arc::new(script),
                    locations: Arc::clone(locations),
                    key: key.into(),
                    bytes: Default::default(),
                    capture: Default::default(),
                };
                (body, params)
            }
        };
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

/// What a TorchScript edit writes.
enum TorchWrite<'a> {
    /// An activation's scale or zero point.
    Activation(Operand),
    /// A weight, repacked from these values.
    Weight {
        ints: &'a [i32],
        scales: &'a [f32],
        zero_points: &'a [i32],
    },
}

/// The evaluation cache key of a TorchScript version made from the version keyed `parent` by
/// writing `write` to parameter `tensor`: sha256 (hex) of a format tag, `parent`, `tensor` and
/// the exact values written (f32 bit patterns, integers), each part length-prefixed. Version 0's
/// key is the sha256 of its file, as for registry models. So equal keys mean the same file
/// edited by the same writes in the same order, hence the same module (a cache hit is never
/// wrong); two routes to one module get two keys (a miss). Change the tag when what an edit
/// writes for the same values changes.
fn torch_key(parent: &str, tensor: &str, write: &TorchWrite<'_>) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(b"qplay torchscript edit v1");
    part(parent.as_bytes());
    part(tensor.as_bytes());
    let le_f32 = |v: &[f32]| {
        v.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect::<Vec<_>>()
    };
    let le_i32 = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>();
    match write {
        TorchWrite::Activation(Operand::Scale(s)) => {
            part(b"activation scale");
            part(&le_f32(&[*s]));
        }
        TorchWrite::Activation(Operand::ZeroPoint(z)) => {
            part(b"activation zero point");
            part(&le_i32(&[*z]));
        }
        TorchWrite::Weight {
            ints,
            scales,
            zero_points,
        } => {
            part(b"weight");
            part(&le_i32(ints));
            part(&le_f32(scales));
            part(&le_i32(zero_points));
        }
    }
    to_hex(&h.finalize())
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
fn channel(i: usize, shape: &[usize], axis: Option<i64>) -> usize {
    let Some(axis) = axis else { return 0 };
    let axis = if axis < 0 {
        (shape.len() as i64 + axis) as usize
    } else {
        axis as usize
    };
    let stride: usize = shape[axis + 1..].iter().product();
    (i / stride.max(1)) % shape[axis].max(1)
}

fn check_range(p: &QuantParam, values: &[i32], what: &str) -> Result<()> {
    let (lo, hi) = p.dtype.range();
    if let Some((i, bad)) = values
        .iter()
        .enumerate()
        .find(|(_, &v)| (v as i64) < lo || (v as i64) > hi)
    {
        bail!(
            "{what} {bad} (index {i}) for `{}` is out of range: {} allows {lo}..={hi}",
            p.tensor,
            p.dtype
        );
    }
    Ok(())
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
        let (name, path) = (&self.info.name, &self.info.path);
        match &self.body {
            Body::Onnx { proto, session, .. } => session
                .get_or_init(|| {
                    OnnxModel::from_bytes(name, path, &onnx_graph::encode(proto), true)
                        .map_err(|e| format!("{e:#}"))
                })
                .as_ref()
                .map_err(|e| anyhow!("{e}"))?
                .run(batch),
            Body::Torch { script, .. } => {
                crate::model::check_input(self, batch.shape())?;
                let input = crate::torch::input_tensor(batch)?;
                let n = input.size()[0];
                match script.forward(&input)?.as_slice() {
                    [Some(output)] => crate::torch::scores(name, output, n),
                    _ => bail!("TorchScript model `{name}` did not return one tensor"),
                }
            }
        }
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

/// One changed field of a version against the original.
#[derive(Debug, Clone, Serialize)]
pub struct DiffRow {
    /// The tensor.
    pub tensor: String,
    /// Its role.
    pub role: Role,
    /// scale, zero point or integer values.
    pub field: String,
    /// In the original.
    pub before: String,
    /// In this version.
    pub after: String,
}

/// What a version changed against the original.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Version name.
    pub model: String,
    /// The edits, oldest first.
    pub history: Vec<String>,
    /// Changed fields.
    pub rows: Vec<DiffRow>,
}

impl Diff {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} edit(s), {} changed field(s)",
            self.model,
            self.history.len(),
            self.rows.len()
        )?;
        for r in &self.rows {
            writeln!(f, "  {} {}: {} → {}", r.tensor, r.field, r.before, r.after)?;
        }
        Ok(())
    }
}

impl Rich for Diff {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-diff\"><p><b>{}</b> against the original: {} edit(s)</p>\
             <table><thead><tr><th>tensor</th><th>role</th><th>field</th><th>original</th>\
             <th>this version</th></tr></thead><tbody>",
            escape_html(&self.model),
            self.history.len()
        );
        for r in &self.rows {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&r.tensor),
                r.role,
                r.field,
                escape_html(&r.before),
                escape_html(&r.after)
            );
        }
        html += "</tbody></table></div>";
        let mut b = MimeBundle::new();
        b.insert("text/html".into(), html.into());
        b.insert("text/plain".into(), self.to_string().into());
        b
    }
}

crate::evcxr_display_via_rich!(QuantModel, Diff);

#[cfg(test)]
mod tests {
    use super::*;

    fn script(v: &QuantModel) -> &Script {
        match &v.body {
            Body::Torch { script, .. } => script,
            Body::Onnx { .. } => panic!("not a TorchScript version"),
        }
    }

    /// sha256 of the module's canonical serialization, as it is in memory now.
    fn saved(v: &QuantModel) -> String {
        to_hex(&Sha256::digest(script(v).save().unwrap()))
    }

    /// A TorchScript version's parameter table and locations, derived from its parent's and
    /// the edit, are what the shim lists for the new module in memory; and making and running
    /// versions leaves every parent's module as it was (its graphs, attributes and packed
    /// weights: the canonical saved bytes).
    #[test]
    fn torch_tables_match_a_fresh_listing_and_parents_stay_as_they_were() {
        let m = workbench("resnet8_int8_torch").unwrap();
        let x = ndarray::Array4::<f32>::from_shape_fn((4, 32, 32, 3), |(n, h, w, c)| {
            ((n * 7 + h * 3 + w * 5 + c) % 17) as f32 / 17.0
        });
        fn s(v: &QuantModel, t: &str) -> Vec<f32> {
            v.param(t).unwrap().scales.clone()
        }
        type Edit = Box<dyn Fn(&QuantModel) -> QuantModel>;
        let edits: Vec<(&str, Edit)> = vec![
            // a constant of the root graph
            (
                "add_relu_1",
                Box::new(|v| {
                    v.with_scale("add_relu_1", s(v, "add_relu_1")[0] * 1.5)
                        .unwrap()
                }),
            ),
            // a constant of a submodule's graph
            (
                "conv2d_2",
                Box::new(|v| v.with_zero_point("conv2d_2", 250).unwrap()),
            ),
            // a root attribute (a buffer)
            (
                "input",
                Box::new(|v| v.with_scale("input", s(v, "input")[0] * 2.0).unwrap()),
            ),
            // a conv weight (per channel) and the linear weight (in a nested packed-params module)
            (
                "conv2d_4.weight",
                Box::new(|v| v.with_bits("conv2d_4.weight", 3).unwrap()),
            ),
            (
                "dense.weight",
                Box::new(|v| {
                    let scales: Vec<f32> = s(v, "dense.weight").iter().map(|x| x * 0.5).collect();
                    v.with_scales("dense.weight", &scales).unwrap()
                }),
            ),
        ];
        let mut chain = vec![m.clone()];
        for (tensor, edit) in &edits {
            let parent = chain.last().unwrap().clone();
            parent.run(x.view()).unwrap();
            let before = saved(&parent);
            // The same edit on the parent twice (siblings), then the one the chain goes on with.
            let sibling = edit(&parent);
            sibling.run(x.view()).unwrap();
            let v = edit(&sibling.undo().unwrap());
            v.run(x.view()).unwrap();
            assert_eq!(saved(&parent), before, "{tensor}: parent changed");
            assert_eq!(saved(&sibling), saved(&v), "{tensor}: siblings differ");
            let (rows, locations): (Vec<_>, Vec<_>) =
                script(&v).params().unwrap().into_iter().unzip();
            assert_eq!(v.params.as_ref(), &rows, "{tensor}: table");
            let Body::Torch { locations: l, .. } = &v.body else {
                unreachable!()
            };
            assert_eq!(l.as_ref(), &locations, "{tensor}: locations");
            assert_ne!(v.param(tensor).unwrap(), parent.param(tensor).unwrap());
            chain.push(v);
        }
    }
}
