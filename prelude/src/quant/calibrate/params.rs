//! Scales, zero points and integer values from float ranges, with the arithmetic of
//! onnxruntime's quantization tools (`quant_utils.compute_scale_zp`, `quantize_nparray`, the
//! int32 bias rule), so that the same range gives the same bits.
//!
//! Where NumPy mixes widths, so do we: the range's width is taken in f64 and the scale rounded
//! to f32 at the end; weights are divided by their f32 scale in f32; biases in f64.

use super::super::QDtype;

/// The integer grid a tensor is quantized onto: `bits` bits stored in `dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Storage type (one of [`QDtype::STORAGE`]).
    pub dtype: QDtype,
    /// Bits used, 2 to the storage type's width.
    pub bits: u32,
    /// Symmetric around zero (zero point in the middle of the grid).
    pub symmetric: bool,
}

impl Grid {
    /// The smallest and largest integer of the grid. A symmetric signed grid drops the most
    /// negative value (-127..=127 for 8 bits), as onnxruntime does. An asymmetric grid narrower
    /// than its container starts at the container's bottom (-128 or 0 for 8 bits), so that its
    /// lower edge saturates there: a range starting at 0 then still clips negatives, which is
    /// how a ReLU folded into its producer works in a QDQ graph. (Its upper edge saturates at
    /// the container's top, not the grid's.)
    pub fn qrange(self) -> (i64, i64) {
        let b = self.bits;
        let (lo, _) = self.dtype.range();
        if !self.dtype.signed() {
            (0, (1 << b) - 1)
        } else if self.symmetric {
            (-((1 << (b - 1)) - 1), (1 << (b - 1)) - 1)
        } else {
            (lo, lo + (1 << b) - 1)
        }
    }

    /// Scale and zero point for the float range `rmin..=rmax` (onnxruntime's
    /// `compute_scale_zp`): the range is widened to include 0 (and made symmetric when the
    /// grid is); an empty range gets scale 1 and zero point 0.
    pub fn scale_zp(self, rmin: f32, rmax: f32) -> (f32, i32) {
        let (qmin, qmax) = self.qrange();
        let mut rmin = rmin.min(0.0);
        let mut rmax = rmax.max(0.0);
        if self.symmetric {
            let absmax = rmin.abs().max(rmax.abs());
            rmin = -absmax;
            rmax = absmax;
        }
        let scale = (rmax as f64 - rmin as f64) / (qmax as f64 - qmin as f64);
        if scale < f32::MIN_POSITIVE as f64 {
            return (1.0, 0);
        }
        let zp = if self.symmetric {
            ((qmin + qmax) as f64 / 2.0).round_ties_even()
        } else {
            (qmin as f64 - rmin as f64 / scale).round_ties_even()
        };
        (scale as f32, zp as i32)
    }

    /// Quantizes one value with `scale` and `zp` (onnxruntime's `quantize_nparray`: divide in
    /// f32, round half to even, add the zero point, clip to the storage type). Values are
    /// clipped to the grid when it is narrower than its storage.
    pub fn quantize(self, v: f32, scale: f32, zp: i32) -> i32 {
        let (lo, hi) = if self.bits == self.dtype.bits() {
            self.dtype.range()
        } else {
            self.qrange()
        };
        let q = (v / scale).round_ties_even() + zp as f32;
        q.clamp(lo as f32, hi as f32) as i32
    }
}

/// The int32 values of a bias whose scale is `input_scale * weight_scale * beta` (f32), each
/// divided in f64, rounded half to even and clipped to int32 (onnxruntime's
/// `quantize_bias_static_impl`). Returns the bias scales (one per weight scale) and the values.
pub fn quantize_bias(
    bias: &[f32],
    input_scale: f32,
    weight_scales: &[f32],
    beta: f32,
) -> (Vec<f32>, Vec<i32>) {
    let scales: Vec<f32> = weight_scales
        .iter()
        .map(|&w| input_scale * w * beta)
        .collect();
    let values = bias
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let s = if scales.len() == 1 {
                scales[0]
            } else {
                scales[i]
            };
            let q = (b as f64 / s as f64).round_ties_even();
            q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect();
    (scales, values)
}

/// Raises weight scales whose bias scale (`input_scale * weight_scale`) is too small for the
/// bias to fit int32 (onnxruntime's `_adjust_weight_scale_for_int32_bias`). Returns whether any
/// scale changed.
pub fn widen_for_bias(bias: &[f32], input_scale: f32, weight_scales: &mut [f32]) -> bool {
    const EPSILON: f64 = 1.0001;
    let qrange = i32::MAX as f64 - (i32::MIN as f64 + 1.0);
    let mut changed = false;
    let mut fix = |absmax: f64, w: &mut f32| {
        let smallest = EPSILON * (2.0 * absmax) / qrange;
        let candidate = input_scale as f64 * *w as f64;
        if candidate < smallest && candidate > 0.0 {
            *w = (*w as f64 * (smallest / candidate)) as f32;
            changed = true;
        }
    };
    if weight_scales.len() == 1 {
        let lo = bias.iter().copied().fold(f32::INFINITY, f32::min).min(0.0) as f64;
        let hi = bias
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
            .max(0.0) as f64;
        fix(lo.abs().max(hi.abs()), &mut weight_scales[0]);
    } else {
        for (b, w) in bias.iter().zip(weight_scales.iter_mut()) {
            fix((*b as f64).abs(), w);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(dtype: QDtype, bits: u32, symmetric: bool) -> Grid {
        Grid {
            dtype,
            bits,
            symmetric,
        }
    }

    #[test]
    fn ranges_of_the_grids() {
        assert_eq!(grid(QDtype::Int8, 8, true).qrange(), (-127, 127));
        assert_eq!(grid(QDtype::Int8, 8, false).qrange(), (-128, 127));
        assert_eq!(grid(QDtype::Uint8, 8, true).qrange(), (0, 255));
        assert_eq!(grid(QDtype::Int8, 4, true).qrange(), (-7, 7));
        assert_eq!(grid(QDtype::Int8, 4, false).qrange(), (-128, -113));
        assert_eq!(grid(QDtype::Uint8, 2, false).qrange(), (0, 3));
        assert_eq!(grid(QDtype::Int4, 4, true).qrange(), (-7, 7));
        assert_eq!(grid(QDtype::Int4, 4, false).qrange(), (-8, 7));
        assert_eq!(grid(QDtype::Uint4, 3, false).qrange(), (0, 7));
        assert_eq!(grid(QDtype::Int16, 16, true).qrange(), (-32767, 32767));
        assert_eq!(grid(QDtype::Uint16, 16, false).qrange(), (0, 65535));
    }

    #[test]
    fn scale_and_zero_point_as_onnxruntime_computes_them() {
        // A ReLU output 0..9.31: int8 asymmetric puts 0 at -128.
        let (s, z) = grid(QDtype::Int8, 8, false).scale_zp(0.0, 9.310_788);
        assert_eq!(z, -128);
        assert_eq!(s, (9.310_788f32 as f64 / 255.0) as f32);
        // uint8 symmetric: zero point round(127.5) = 128 (half to even).
        assert_eq!(grid(QDtype::Uint8, 8, true).scale_zp(-1.0, 2.0).1, 128);
        // An empty range.
        assert_eq!(grid(QDtype::Int8, 8, false).scale_zp(0.0, 0.0), (1.0, 0));
        // Ranges not containing 0 are widened to it.
        assert_eq!(
            grid(QDtype::Uint8, 8, false).scale_zp(2.0, 5.1),
            grid(QDtype::Uint8, 8, false).scale_zp(0.0, 5.1)
        );
    }

    #[test]
    fn quantize_rounds_half_to_even_and_clips() {
        let g = grid(QDtype::Int8, 8, true);
        let q = |g: Grid, v: &[f32]| v.iter().map(|&x| g.quantize(x, 1.0, 0)).collect::<Vec<_>>();
        assert_eq!(q(g, &[0.5, 1.5, 2.5, -0.5, 1000.0]), [0, 2, 2, 0, 127]);
        let g4 = grid(QDtype::Int8, 4, true);
        assert_eq!(q(g4, &[100.0, -100.0]), [7, -7]);
    }

    #[test]
    fn bias_scales_and_values() {
        let (scales, q) = quantize_bias(&[1.0, -2.5], 0.5, &[0.1, 0.2], 1.0);
        assert_eq!(scales, [0.5f32 * 0.1, 0.5f32 * 0.2]);
        assert_eq!(q, [20, -25]);
        let mut w = [1e-12f32];
        assert!(widen_for_bias(&[1000.0], 1e-6, &mut w));
        assert!(1e-6f64 * w[0] as f64 >= 1.0001 * 2000.0 / 4_294_967_294.0 * 0.999_999);
    }
}
