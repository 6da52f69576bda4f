//! Float ranges of activations from calibration statistics: MinMax, Percentile, Entropy (as
//! onnxruntime's calibrators compute them) and MSE (the clip range whose quantize–dequantize
//! error over the histogram is smallest).
//!
//! Histograms follow `numpy.histogram` with equal bins exactly (edges from `linspace` in f32,
//! every value counted in the bin whose edges hold it, the last bin closed), because the
//! percentile and entropy thresholds are bin edges: a value counted one bin over moves them.

use super::params::Grid;

/// The smallest and largest value seen (NaN ignored, as `nanmin`/`nanmax`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinMax {
    /// Smallest value.
    pub min: f32,
    /// Largest value.
    pub max: f32,
}

impl Default for MinMax {
    fn default() -> Self {
        MinMax {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl MinMax {
    /// Takes `values` into account.
    pub fn add(&mut self, values: &[f32]) {
        // Sixteen lanes that the compiler vectorizes; a comparison with NaN is false, so NaN is
        // never taken.
        const LANES: usize = 16;
        let mut lo = [self.min; LANES];
        let mut hi = [self.max; LANES];
        let (chunks, rest) = values.as_chunks::<LANES>();
        for c in chunks {
            for k in 0..LANES {
                lo[k] = if c[k] < lo[k] { c[k] } else { lo[k] };
                hi[k] = if c[k] > hi[k] { c[k] } else { hi[k] };
            }
        }
        for &v in rest.iter().chain(lo.iter()) {
            self.min = if v < self.min { v } else { self.min };
        }
        for &v in rest.iter().chain(hi.iter()) {
            self.max = if v > self.max { v } else { self.max };
        }
    }

    /// The largest magnitude.
    pub fn absmax(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }

    /// The smallest and largest magnitude.
    fn abs_range(&self) -> (f32, f32) {
        let lo = if self.min <= 0.0 && self.max >= 0.0 {
            0.0
        } else {
            self.min.abs().min(self.max.abs())
        };
        (lo, self.absmax())
    }
}

/// What a histogram counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counted {
    /// Values, on `-absmax..=absmax` (onnxruntime's `collect_value`).
    Values,
    /// Magnitudes, on `min|x|..=max|x|` (`collect_absolute_value`, symmetric percentile).
    Magnitudes,
}

/// A histogram with equal bins.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// What it counts.
    pub counted: Counted,
    /// `bins + 1` edges.
    pub edges: Vec<f32>,
    /// Counts per bin.
    pub counts: Vec<u64>,
    first: f32,
    last: f32,
}

impl Histogram {
    /// An empty histogram of `bins` bins for a tensor whose values span `seen`.
    pub fn new(counted: Counted, bins: usize, seen: MinMax) -> Histogram {
        let (mut first, mut last) = match counted {
            Counted::Values => (-seen.absmax(), seen.absmax()),
            Counted::Magnitudes => seen.abs_range(),
        };
        if first == last {
            first -= 0.5;
            last += 0.5;
        }
        // numpy.linspace in the data's type: step = (last - first) / bins, edge i = i * step +
        // first, the last edge exactly `last`.
        let step = (last - first) / bins as f32;
        let mut edges: Vec<f32> = (0..=bins).map(|i| i as f32 * step + first).collect();
        edges[bins] = last;
        Histogram {
            counted,
            edges,
            counts: vec![0; bins],
            first,
            last,
        }
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    /// Counts `values` (their magnitudes for [`Counted::Magnitudes`]).
    pub fn add(&mut self, values: &[f32]) {
        let bins = self.bins();
        let denom = self.last - self.first;
        for &v in values {
            let x = match self.counted {
                Counted::Values => v,
                Counted::Magnitudes => v.abs(),
            };
            if !(x >= self.first && x <= self.last) {
                continue;
            }
            // numpy's guess, then its one-step corrections against the edges.
            let mut i = (((x - self.first) / denom) * bins as f32) as usize;
            if i >= bins {
                i = bins - 1;
            }
            if x < self.edges[i] {
                i = i.saturating_sub(1);
            }
            if x >= self.edges[i + 1] && i != bins - 1 {
                i += 1;
            }
            self.counts[i] += 1;
        }
    }

    /// The cumulative distribution, as `numpy.cumsum(hist / total)` computes it.
    fn cdf(&self) -> Vec<f64> {
        let total: u64 = self.counts.iter().sum();
        let mut acc = 0f64;
        self.counts
            .iter()
            .map(|&c| {
                acc += c as f64 / total as f64;
                acc
            })
            .collect()
    }
}

/// The first index whose value is at least `v` (`numpy.searchsorted`, side left).
fn search(cdf: &[f64], v: f64) -> usize {
    cdf.partition_point(|&c| c < v)
}

/// Clips a threshold pair to what was seen.
fn clip(range: (f32, f32), seen: MinMax) -> (f32, f32) {
    (range.0.max(seen.min), range.1.min(seen.max))
}

/// The Percentile range (onnxruntime's `compute_percentile`): on a magnitude histogram,
/// `±` the edge where the distribution reaches `percentile`; on a value histogram, the edges
/// cutting `(100 - percentile) / 2` percent off each side. Clipped to the values seen.
pub fn percentile(h: &Histogram, seen: MinMax, percentile: f64) -> (f32, f32) {
    let cdf = h.cdf();
    let range = match h.counted {
        Counted::Magnitudes => {
            let e = h.edges[search(&cdf, percentile / 100.0)];
            (-e, e)
        }
        Counted::Values => {
            let cut = (100.0 - percentile) / 200.0;
            (h.edges[search(&cdf, cut)], h.edges[search(&cdf, 1.0 - cut)])
        }
    };
    clip(range, seen)
}

/// Replaces zeros by `eps` and takes as much off the other bins (onnxruntime's
/// `smooth_distribution`, in f32); None when every bin is zero.
fn smooth(p: &[i64]) -> Option<Vec<f32>> {
    const EPS: f64 = 0.0001;
    let zeros = p.iter().filter(|&&v| v == 0).count();
    let nonzeros = p.len() - zeros;
    if nonzeros == 0 {
        return None;
    }
    let eps1 = EPS * zeros as f64 / nonzeros as f64;
    Some(
        p.iter()
            .map(|&v| {
                let (z, nz) = if v == 0 { (1f32, 0f32) } else { (0f32, 1f32) };
                v as f32 + (EPS as f32 * z + (-eps1) as f32 * nz)
            })
            .collect(),
    )
}

/// Kullback–Leibler divergence of two unnormalized distributions.
fn kl(p: &[f32], q: &[f32]) -> f64 {
    let sp: f64 = p.iter().map(|&v| v as f64).sum();
    let sq: f64 = q.iter().map(|&v| v as f64).sum();
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a as f64 / sp, b as f64 / sq);
            if a > 0.0 {
                a * (a / b).ln()
            } else {
                0.0
            }
        })
        .sum()
}

/// The Entropy range (onnxruntime's `get_entropy_threshold`): among windows of the value
/// histogram centred on zero, the one whose `quantized_bins`-level version has the least KL
/// divergence from the (outlier-folded) original. Clipped to the values seen.
pub fn entropy(h: &Histogram, seen: MinMax, quantized_bins: usize) -> (f32, f32) {
    let hist: Vec<i64> = h.counts.iter().map(|&c| c as i64).collect();
    let bins = hist.len();
    let zero = bins / 2;
    let half = quantized_bins / 2;
    let mut best: Option<(f64, (f32, f32))> = None;
    for i in half..=zero {
        let start = zero - i;
        let end = (zero + i + 1).min(bins);
        let threshold = (h.edges[start], h.edges[end]);
        let sliced = &hist[start..end];
        let mut p = sliced.to_vec();
        p[0] += hist[..start].iter().sum::<i64>();
        let last = p.len() - 1;
        p[last] += hist[end..].iter().sum::<i64>();
        let merged = sliced.len() / quantized_bins;
        let mut quantized = vec![0i64; quantized_bins];
        for (k, q) in quantized.iter_mut().enumerate() {
            *q = sliced[k * merged..(k + 1) * merged].iter().sum();
        }
        quantized[quantized_bins - 1] += sliced[quantized_bins * merged..].iter().sum::<i64>();
        let mut q = vec![0i64; p.len()];
        for (k, &total) in quantized.iter().enumerate() {
            let (a, b) = (k * merged, (k + 1) * merged);
            let norm = p[a..b].iter().filter(|&&v| v != 0).count() as i64;
            if norm != 0 {
                // numpy stores the float quotient into an int64 array: truncation.
                let v = (total as f64 / norm as f64) as i64;
                q[a..b].iter_mut().for_each(|x| *x = v);
            }
        }
        let div = match (smooth(&p), smooth(&q)) {
            (Some(p), Some(q)) => kl(&p, &q) as f32 as f64,
            _ => f64::INFINITY,
        };
        // argmin keeps the first of equal values.
        if best.is_none_or(|(b, _)| div < b) {
            best = Some((div, threshold));
        }
    }
    clip(best.map_or((seen.min, seen.max), |(_, t)| t), seen)
}

/// The MSE range: of the clip ranges `alpha * (min, max)` (both ends scaled, or `±alpha *
/// absmax` on a symmetric grid) for alpha = 0.30, 0.31, …, 1.00, the one whose
/// quantize–dequantize error summed over the value histogram's bin centres is smallest.
pub fn mse(h: &Histogram, seen: MinMax, grid: Grid) -> (f32, f32) {
    let centres: Vec<(f32, u64)> = h
        .edges
        .windows(2)
        .zip(&h.counts)
        .filter(|(_, &c)| c > 0)
        .map(|(e, &c)| ((e[0] + e[1]) * 0.5, c))
        .collect();
    let (qmin, qmax) = grid.qrange();
    let mut best = (f64::INFINITY, (seen.min, seen.max));
    for k in (30..=100).rev() {
        let alpha = k as f32 / 100.0;
        let range = (alpha * seen.min, alpha * seen.max);
        let (scale, zp) = grid.scale_zp(range.0, range.1);
        let err: f64 = centres
            .iter()
            .map(|&(x, c)| {
                let q = ((x / scale).round_ties_even() + zp as f32).clamp(qmin as f32, qmax as f32);
                let d = (x - (q - zp as f32) * scale) as f64;
                d * d * c as f64
            })
            .sum();
        if err < best.0 {
            best = (err, range);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QDtype;

    fn seen(values: &[f32]) -> MinMax {
        let mut m = MinMax::default();
        m.add(values);
        m
    }

    #[test]
    fn min_and_max_skip_nan_across_lanes() {
        let mut values: Vec<f32> = (0..40).map(|i| i as f32 - 7.0).collect();
        values[3] = f32::NAN;
        values[39] = f32::NAN;
        assert_eq!(
            seen(&values),
            MinMax {
                min: -7.0,
                max: 31.0
            }
        );
        assert_eq!(seen(&[2.5]), MinMax { min: 2.5, max: 2.5 });
    }

    #[test]
    fn histogram_counts_each_value_once_with_the_last_bin_closed() {
        let values = [0.0, 0.1, 0.25, 0.5, 0.75, 0.999, 1.0];
        let mut h = Histogram::new(Counted::Magnitudes, 4, seen(&values));
        h.add(&values);
        assert_eq!(h.edges, [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(h.counts, [2, 1, 1, 3]);
        let mut v = Histogram::new(Counted::Values, 4, seen(&[-2.0, 1.0]));
        v.add(&[-2.0, -0.5, 0.0, 1.0, 2.0]);
        assert_eq!(v.edges, [-2.0, -1.0, 0.0, 1.0, 2.0]);
        assert_eq!(v.counts, [1, 1, 1, 2]);
    }

    #[test]
    fn percentile_cuts_the_tail() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32 / 10.0).collect();
        let s = seen(&values);
        let mut h = Histogram::new(Counted::Magnitudes, 100, s);
        h.add(&values);
        let (lo, hi) = percentile(&h, s, 90.0);
        assert_eq!(lo, 0.0, "clipped to the smallest value seen");
        // numpy: edges[searchsorted(cumsum(hist / total), 0.9)] = 88.911
        assert_eq!(hi, 88.911);
        // The summed cdf overshoots 1 before the last bin, in numpy too.
        assert_eq!(percentile(&h, s, 100.0).1, 98.901);
    }

    #[test]
    fn entropy_with_as_many_levels_as_bins_keeps_the_whole_range() {
        let values: Vec<f32> = (0..500).map(|i| (i as f32 - 100.0) / 7.0).collect();
        let s = seen(&values);
        let mut h = Histogram::new(Counted::Values, 128, s);
        h.add(&values);
        assert_eq!(entropy(&h, s, 128), (s.min, s.max));
    }

    #[test]
    fn mse_clips_a_long_tail() {
        let mut values: Vec<f32> = (0..10_000).map(|i| (i % 100) as f32 / 100.0).collect();
        values.push(50.0);
        let s = seen(&values);
        let mut h = Histogram::new(Counted::Values, 2048, s);
        h.add(&values);
        let grid = Grid {
            dtype: QDtype::Int8,
            bits: 4,
            symmetric: false,
        };
        let (lo, hi) = mse(&h, s, grid);
        assert_eq!(lo, 0.0);
        assert!(hi < 50.0, "{hi}");
    }
}
