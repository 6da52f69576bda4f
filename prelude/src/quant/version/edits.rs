//! The edits of a version's parameters: scales, zero points, a weight's integers, a narrower
//! grid. Each checks its input against the tensor (its count, its dtype's range, its role) and
//! changes nothing when it fails; each format applies it (see `Format::edit`).

use anyhow::{bail, Result};
use ndarray::ArrayD;

use super::{channel, summary_f32, summary_i32, Change, QuantModel};
use crate::quant::{QuantParam, Role};

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
        p.dtype
            .check_bits(&format!("bits for `{}`", p.tensor), bits)?;
        let w = self.weights(tensor)?;
        let values: Vec<f32> = w.dequantized.iter().copied().collect();
        let channels = p.scales.len();
        let symmetric = p.dtype.signed() && p.zero_points.iter().all(|&z| z == 0);
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
