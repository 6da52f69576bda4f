//! The libtorch side of AdaRound: the Gram matrix of a layer's inputs, and the learning of one
//! layer's rounding with autograd and Adam.
//!
//! A Conv or Gemm is linear in its weights: its output error at one position is `ΔW · p`, with
//! `p` the input patch there (im2col) and `ΔW = W − W̃` the weight matrix's error, one row per
//! output channel. So the squared error summed over the output channels and averaged over every
//! position of every sampled image is `Σ_o ΔW_o G ΔW_oᵀ`, with `G = mean_p p pᵀ` (K × K, K the
//! patch length: at most 576 in ResNet-8). The data is read once per layer into `G`; every
//! iteration then costs one `[O, K] × [K, K]` product, whatever the number of images, and uses
//! all of them (no mini-batches, so nothing random).

use anyhow::{anyhow, Result};
use ndarray::ArrayViewD;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use super::AdaRoundOptions;

/// Rectified sigmoid stretch: `h(V) = clip(sigmoid(V)·(ζ − γ) + γ, 0, 1)`.
const ZETA: f64 = 1.1;
/// See [`ZETA`].
const GAMMA: f64 = -0.1;

/// How a layer reads its input.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Op {
    /// A 2-D convolution (group 1). `pads` as ONNX has them: top, left, bottom, right.
    Conv {
        kernel: [i64; 2],
        strides: [i64; 2],
        pads: [i64; 4],
        dilations: [i64; 2],
    },
    /// A matrix product `x · W` (or `x · Wᵀ`) of a flat input.
    Gemm,
}

/// `mean_p p pᵀ` over the input patches of a layer, built batch by batch.
pub(super) struct Gram {
    sum: Option<Tensor>,
    positions: i64,
}

impl Gram {
    pub(super) fn new() -> Gram {
        Gram {
            sum: None,
            positions: 0,
        }
    }

    /// Adds one batch of the layer's input (NCHW for a Conv, `[n, K, …]` for a Gemm).
    pub(super) fn add(&mut self, op: &Op, x: ArrayViewD<'_, f32>) -> Result<()> {
        let x = x.as_standard_layout();
        let shape: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
        let flat = x
            .as_slice()
            .ok_or_else(|| anyhow!("a captured tensor is not contiguous"))?;
        let x = Tensor::from_slice(flat).view(shape.as_slice());
        let patches = match op {
            Op::Conv {
                kernel,
                strides,
                pads,
                dilations,
            } => {
                if shape.len() != 4 {
                    anyhow::bail!("a Conv input of shape {shape:?}: expected NCHW");
                }
                // torch pads the last dimension first: left, right, top, bottom.
                let padded = x.constant_pad_nd([pads[1], pads[3], pads[0], pads[2]]);
                let cols = padded.im2col(*kernel, *dilations, [0, 0], *strides);
                let k = cols.size()[1];
                cols.permute([1, 0, 2]).reshape([k, -1])
            }
            Op::Gemm => x.flatten(1, -1).transpose(0, 1),
        };
        self.positions += patches.size()[1];
        let g = patches
            .matmul(&patches.transpose(0, 1))
            .to_kind(Kind::Double);
        self.sum = Some(match self.sum.take() {
            Some(s) => s + g,
            None => g,
        });
        Ok(())
    }

    /// The mean, `[K, K]` in f32.
    pub(super) fn mean(self) -> Result<Tensor> {
        let sum = self
            .sum
            .ok_or_else(|| anyhow!("no input was captured for the layer"))?;
        Ok((sum / self.positions.max(1) as f64).to_kind(Kind::Float))
    }
}

/// One layer's weights as a `[rows, cols]` matrix (one row per output channel), with each
/// element's scale, zero point and grid bounds.
pub(super) struct Problem {
    pub rows: usize,
    pub cols: usize,
    pub w: Vec<f32>,
    pub scale: Vec<f32>,
    pub zero: Vec<f32>,
    pub lo: Vec<f32>,
    pub hi: Vec<f32>,
}

/// What learning one layer gave.
pub(super) struct Learned {
    /// The chosen integers, in the matrix's order.
    pub ints: Vec<i32>,
    /// The output error with nearest rounding, `Σ_o ΔW_o G ΔW_oᵀ`.
    pub nearest_error: f64,
    /// The same with the learned rounding.
    pub learned_error: f64,
    /// Weights rounded otherwise than to nearest.
    pub changed: usize,
}

impl Problem {
    fn tensor(&self, v: &[f32]) -> Tensor {
        Tensor::from_slice(v).view([self.rows as i64, self.cols as i64])
    }

    /// Integers nearest to the weights (half to even, as the grids are made), clipped.
    fn nearest(&self) -> Vec<i32> {
        (0..self.w.len())
            .map(|i| {
                let q = (self.w[i] / self.scale[i]).round_ties_even() + self.zero[i];
                q.clamp(self.lo[i], self.hi[i]) as i32
            })
            .collect()
    }

    /// `Σ_o ΔW_o G ΔW_oᵀ` for the weights the integers `ints` stand for.
    fn error(&self, ints: &[i32], gram: &Tensor) -> Result<f64> {
        let deq: Vec<f32> = (0..ints.len())
            .map(|i| (ints[i] as f32 - self.zero[i]) * self.scale[i])
            .collect();
        let d = self.tensor(&self.w) - self.tensor(&deq);
        Ok((d.matmul(gram) * &d).sum(Kind::Double).double_value(&[]))
    }
}

/// The regularizer's exponent at iteration `it`: none during the warm start, then annealed from
/// `beta.0` to `beta.1` along a cosine.
fn beta_at(it: usize, warm: usize, iterations: usize, beta: (f64, f64)) -> Option<f64> {
    if it < warm {
        return None;
    }
    let rel = (it - warm) as f64 / (iterations - warm).max(1) as f64;
    Some(beta.1 + 0.5 * (beta.0 - beta.1) * (1.0 + (rel * std::f64::consts::PI).cos()))
}

/// libtorch on one thread while it lives, as many as before afterwards. AdaRound's tensors are
/// small (at most 64 × 576 in ResNet-8), and on a busy machine libtorch's threads wait for each
/// other: measured on 2 shared cores, ResNet-8 at 1,000 iterations per layer took 122 s on two
/// threads and 14 s on one.
pub(super) struct OneThread(i32);

impl OneThread {
    pub(super) fn new() -> OneThread {
        let before = tch::get_num_threads();
        tch::set_num_threads(1);
        OneThread(before)
    }
}

impl Drop for OneThread {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}

/// Learns whether each weight of `p` rounds up or down, minimizing the output error on `gram`
/// plus the rounding regularizer. `tick(it)` runs before every iteration (progress, interrupts).
pub(super) fn learn(
    p: &Problem,
    gram: &Tensor,
    o: &AdaRoundOptions,
    tick: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Learned> {
    let w = p.tensor(&p.w);
    let s = p.tensor(&p.scale);
    let z = p.tensor(&p.zero);
    let lo = p.tensor(&p.lo);
    let hi = p.tensor(&p.hi);
    let base = (&w / &s).floor();
    // Start where the soft rounding equals the fractional part: h(V0) = W/s − ⌊W/s⌋.
    let rest = &w / &s - &base;
    let v0 = -(((rest - GAMMA).reciprocal() * (ZETA - GAMMA)) - 1.0).log();
    // W̃ = s·(clip(⌊W/s⌋ + h + z, lo, hi) − z) = s·⌊W/s⌋ + s·clip(h, lo − z − ⌊W/s⌋, hi − …),
    // so ΔW = r − s·clip(h, …) with r the part that does not change.
    let r = &w - &s * &base;
    let (h_lo, h_hi) = (&lo - &z - &base, &hi - &z - &base);
    let vs = nn::VarStore::new(Device::Cpu);
    let v = vs.root().var_copy("v", &v0);
    let mut opt = nn::Adam::default().build(&vs, o.learning_rate)?;
    let warm = (o.warm_start * o.iterations as f64).round() as usize;
    for it in 0..o.iterations {
        tick(it)?;
        let h = (v.sigmoid() * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0);
        let d = &r - &s * h.clamp_tensor(Some(&h_lo), Some(&h_hi));
        let mut loss = (d.matmul(gram) * &d).sum(Kind::Float);
        if let Some(beta) = beta_at(it, warm, o.iterations, o.beta) {
            // λ Σ (1 − |2h − 1|^β), less its constant part.
            let sharp = (&h * 2.0 - 1.0)
                .abs()
                .pow_tensor_scalar(beta)
                .sum(Kind::Float);
            loss -= sharp * o.reg_weight;
        }
        opt.backward_step(&loss);
    }
    let up = tch::no_grad(|| v.ge(0.0).to_kind(Kind::Float));
    let ints_t = (&base + up + &z).clamp_tensor(Some(&lo), Some(&hi));
    let ints: Vec<f32> = Vec::try_from(ints_t.flatten(0, -1))?;
    let ints: Vec<i32> = ints.iter().map(|&q| q as i32).collect();
    let nearest = p.nearest();
    Ok(Learned {
        changed: ints.iter().zip(&nearest).filter(|(a, b)| a != b).count(),
        nearest_error: p.error(&nearest, gram)?,
        learned_error: p.error(&ints, gram)?,
        ints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_anneals_after_the_warm_start() {
        assert_eq!(beta_at(0, 20, 100, (20.0, 2.0)), None);
        assert_eq!(beta_at(19, 20, 100, (20.0, 2.0)), None);
        assert_eq!(beta_at(20, 20, 100, (20.0, 2.0)), Some(20.0));
        let end = beta_at(99, 20, 100, (20.0, 2.0)).unwrap();
        assert!((2.0..2.1).contains(&end), "{end}");
    }

    #[test]
    fn the_gram_matrix_gives_the_convolutions_output_error() {
        // Σ over positions and channels of (ΔW * x)² equals positions · Σ_o ΔW_o G ΔW_oᵀ.
        let op = Op::Conv {
            kernel: [3, 3],
            strides: [2, 2],
            pads: [0, 0, 1, 1],
            dilations: [1, 1],
        };
        let x = ndarray::Array4::from_shape_fn((2, 3, 6, 6), |(n, c, i, j)| {
            ((n * 7 + c * 5 + i * 3 + j) % 11) as f32 / 11.0 - 0.3
        });
        let mut gram = Gram::new();
        gram.add(&op, x.view().into_dyn()).unwrap();
        let positions = gram.positions as f64;
        let g = gram.mean().unwrap();
        let dw = Tensor::from_slice(
            &(0..4 * 27)
                .map(|i| ((i * 13) % 7) as f32 - 3.0)
                .collect::<Vec<_>>(),
        )
        .view([4, 27]);
        let via_gram = (dw.matmul(&g) * &dw).sum(Kind::Double).double_value(&[]) * positions;
        let xt = Tensor::from_slice(x.as_slice().unwrap()).view([2, 3, 6, 6]);
        let out = xt.constant_pad_nd([0, 1, 0, 1]).conv2d(
            &dw.view([4, 3, 3, 3]),
            None::<Tensor>,
            [2, 2],
            [0, 0],
            [1, 1],
            1,
        );
        let direct = out.square().sum(Kind::Double).double_value(&[]);
        assert!(
            (via_gram - direct).abs() <= 1e-4 * direct.abs(),
            "{via_gram} vs {direct}"
        );
    }
}
