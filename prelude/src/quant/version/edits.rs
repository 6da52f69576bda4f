//! The edits of a version's parameters: scales, zero points, a weight's integers, a narrower
//! grid, another stored type. Each checks its input against the tensor (its count, its dtype's
//! range, its role) and changes nothing when it fails; the backends apply it (see
//! `Format::edit`).

use anyhow::{bail, Result};
use ndarray::ArrayD;

use super::{channel, summary_f32, summary_i32, Change, QuantModel};
use crate::model::{Framework, Model};
use crate::quant::dtype::cpu_kernel;
use crate::quant::{QDtype, QuantParam, Role};

impl QuantModel {
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

    /// A new version with a weight re-quantized to `bits` bits (2 to its type's width), a
    /// narrower grid inside its stored type: per channel (or per tensor), the dequantized
    /// weights get a new scale so that their range fits a `bits`-bit grid. Symmetric weights
    /// (all zero points 0, a signed type) stay symmetric on `-(2^(bits-1) - 1) ..= 2^(bits-1) - 1`;
    /// others get an asymmetric grid of `2^bits` levels starting at the dtype's minimum, with a
    /// new zero point.
    pub fn with_bits(&self, tensor: &str, bits: u32) -> Result<QuantModel> {
        let p = self.weight_param(tensor, "with_bits")?;
        p.dtype
            .check_bits(&format!("bits for `{}`", p.tensor), bits)?;
        let what = format!("{} re-quantized to {bits} bits", p.tensor);
        let (values, _) = self.float_values(&p, None)?; // the dequantized values
        self.requantize(&p, p.dtype, bits, values, what)
    }

    /// A new version with a weight re-quantized into another stored type, on the type's full
    /// width: `with_type(weight, QDtype::Int4)` stores it as ONNX int4 (two per byte), and the
    /// model becomes opset 21 where the type needs it ([`QDtype::min_opset`]). The grid is made
    /// as [`with_bits`](Self::with_bits) makes it; a symmetric weight stays symmetric in a signed
    /// type. ONNX only: TorchScript keeps its weights qint8 (refused by name), and a type
    /// onnxruntime's CPU provider cannot run beside the model's activations is refused with
    /// [`NoCpuKernel`](crate::quant::NoCpuKernel).
    pub fn with_type(&self, tensor: &str, dtype: QDtype) -> Result<QuantModel> {
        self.with_type_impl(tensor, dtype, None)
    }

    /// [`with_type`](Self::with_type), re-quantizing the weight of the same name in `float` (the
    /// float ONNX model this one was quantized from) when it has one of the same shape — what a
    /// repair wants, as the values here may already have lost precision — else the dequantized
    /// values. The edit's entry in the history says which.
    pub fn with_type_from(
        &self,
        tensor: &str,
        dtype: QDtype,
        float: &QuantModel,
    ) -> Result<QuantModel> {
        self.with_type_impl(tensor, dtype, Some(float))
    }

    fn with_type_impl(
        &self,
        tensor: &str,
        dtype: QDtype,
        float: Option<&QuantModel>,
    ) -> Result<QuantModel> {
        let p = self.weight_param(tensor, "with_type")?;
        dtype.check_storage(&format!("the type for `{}`", p.tensor))?;
        if self.framework() == Framework::Torch {
            bail!(
                "`{}` is TorchScript, whose quantized weights are qint8; with_type stores ONNX \
                 weights in another type (use with_bits for a narrower grid inside qint8)",
                self.name()
            );
        }
        for a in self
            .quant_params()
            .rows
            .iter()
            .filter(|r| r.role == Role::Activation)
        {
            cpu_kernel(dtype, a.dtype)?;
        }
        let (values, source) = self.float_values(&p, float)?;
        let what = format!("{} stored as {dtype} ({source})", p.tensor);
        self.requantize(&p, dtype, dtype.bits(), values, what)
    }

    /// `tensor`'s parameter if it is a weight; else an error naming the weights `op` takes.
    fn weight_param(&self, tensor: &str, op: &str) -> Result<QuantParam> {
        let p = self.param(tensor)?.clone();
        if p.role != Role::Weight {
            bail!(
                "`{}` is a{} {}; {op} re-quantizes weights: {}",
                p.tensor,
                if p.role == Role::Activation { "n" } else { "" },
                p.role,
                self.names_with(|r| r == Role::Weight)
            );
        }
        Ok(p)
    }

    /// Weight `p` as `values` re-quantized on a `bits`-bit grid of `dtype` (see
    /// [`with_bits`](Self::with_bits)).
    fn requantize(
        &self,
        p: &QuantParam,
        dtype: QDtype,
        bits: u32,
        values: Vec<f32>,
        what: String,
    ) -> Result<QuantModel> {
        let channels = p.scales.len();
        let symmetric = dtype.signed() && p.dtype.signed() && p.zero_points.iter().all(|&z| z == 0);
        let (dmin, _) = dtype.range();
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
                } else {
                    zps[c] = zps[c].clamp(dmin as i32, (dmin + levels) as i32);
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
        self.edit(
            what,
            p,
            Change::Requantize {
                dtype,
                scales,
                zero_points: zps,
                ints,
            },
        )
    }
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
