//! The ONNX body of a version: the edited protobuf and the ONNX Runtime sessions made from it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, ArrayView4};
use sha2::{Digest, Sha256};

use super::{Body, Change, Format, QuantModel};
use crate::data::to_hex;
use crate::model::Model;
use crate::onnx::OnnxModel;
use crate::quant::onnx_graph::{self, proto::ModelProto};
use crate::quant::QuantParam;

/// A lazily created session; the error is kept as text so that the cell can be shared.
type LazySession = Arc<OnceLock<Result<OnnxModel, String>>>;

/// An ONNX version: its protobuf, and the sessions made from it on first use.
#[derive(Clone)]
pub(super) struct OnnxBody {
    proto: Arc<ModelProto>,
    session: LazySession,
    capture_session: LazySession,
}

impl OnnxBody {
    /// A body for `proto`, with no sessions yet.
    fn new(proto: ModelProto) -> OnnxBody {
        OnnxBody {
            proto: Arc::new(proto),
            session: Default::default(),
            capture_session: Default::default(),
        }
    }

    /// Version 0's body and parameter table, from the file's bytes.
    pub(super) fn load(path: &Path, bytes: &[u8]) -> Result<(OnnxBody, Vec<QuantParam>)> {
        let proto = onnx_graph::decode(bytes)
            .with_context(|| format!("{} is not an ONNX model", path.display()))?;
        let params = onnx_graph::quant_params(&proto)?;
        Ok((OnnxBody::new(proto), params))
    }
}

impl Format for OnnxBody {
    fn all_ints(&self, params: &[QuantParam]) -> Vec<Option<Vec<i32>>> {
        params
            .iter()
            .map(|p| onnx_graph::read_weight_ints(&self.proto, p).ok())
            .collect()
    }

    fn ints_of(&self, _i: usize, p: &QuantParam) -> Result<Vec<i32>> {
        onnx_graph::read_weight_ints(&self.proto, p)
    }

    fn to_bytes(&self, _name: &str) -> Result<Vec<u8>> {
        Ok(onnx_graph::encode(&self.proto))
    }

    /// The content hash: the protobuf is cheap to serialize.
    fn cache_key(&self, name: &str) -> Result<String> {
        Ok(to_hex(&Sha256::digest(self.to_bytes(name)?)))
    }

    fn qdq_counts(&self, _params: &[QuantParam]) -> (usize, usize) {
        onnx_graph::qdq_counts(&self.proto)
    }

    fn edit(
        &self,
        _params: &[QuantParam],
        _i: usize,
        p: &QuantParam,
        change: Change,
    ) -> Result<(Body, Vec<QuantParam>)> {
        let mut proto = self.proto.as_ref().clone();
        match &change {
            Change::Scales(s) => onnx_graph::write_scales(&mut proto, p, s)?,
            Change::ZeroPoints(z) => onnx_graph::write_zero_points(&mut proto, p, z)?,
            Change::Ints(v) => onnx_graph::write_weight_ints(&mut proto, p, v)?,
            Change::Requantize {
                dtype,
                scales,
                zero_points,
                ints,
            } => {
                let retyped = *dtype != p.dtype;
                if retyped {
                    onnx_graph::retype_weight(&mut proto, p, *dtype)?;
                }
                onnx_graph::write_scales(&mut proto, p, scales)?;
                if retyped || *zero_points != p.zero_points {
                    onnx_graph::write_zero_points(&mut proto, p, zero_points)?;
                }
                onnx_graph::write_weight_ints(&mut proto, p, ints)?;
                if retyped {
                    onnx_graph::require_types(&mut proto)?;
                }
            }
            Change::KeepFloat(values) => {
                super::keep_float::remove_qdq(&mut proto, p, values.as_deref())?
            }
        }
        let params = onnx_graph::quant_params(&proto)?;
        Ok((Body::Onnx(OnnxBody::new(proto)), params))
    }

    fn run(&self, model: &QuantModel, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
        let (name, path) = (&model.info.name, &model.info.path);
        self.session
            .get_or_init(|| {
                OnnxModel::from_bytes(name, path, &onnx_graph::encode(&self.proto), true)
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))?
            .run(batch)
    }
}

impl QuantModel {
    /// The ONNX body, or an error naming the model for TorchScript versions.
    fn onnx(&self) -> Result<&OnnxBody> {
        match &self.body {
            Body::Onnx(body) => Ok(body),
            Body::Torch(_) => bail!(
                "`{}` is a TorchScript model; this needs an ONNX graph (TorchScript capture \
                 covers the quantized tensors of the root graph; SQNR is ONNX only)",
                self.info.name
            ),
        }
    }

    /// The ONNX protobuf of this version (an error for TorchScript models).
    pub fn proto(&self) -> Result<&ModelProto> {
        Ok(&self.onnx()?.proto)
    }

    /// The capture session: this version unoptimized, with every float tensor a node computes
    /// exposed as a graph output. Created on first capture and kept with the version.
    pub(crate) fn capture_runner(&self) -> Result<&OnnxModel> {
        let body = self.onnx()?;
        body.capture_session
            .get_or_init(|| {
                let mut proto = body.proto.as_ref().clone();
                let tensors = crate::quant::capture::capturable(&proto);
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
}
