//! The learning side of AdaRound: the Gram matrix of a layer's inputs (libtorch), and the
//! learning of one layer's rounding (Adam on an analytic gradient, checked against libtorch's
//! autograd in the tests).
//!
//! A Conv or Gemm is linear in its weights: its output error at one position is `ΔW · p`, with
//! `p` the input patch there (im2col) and `ΔW = W − W̃` the weight matrix's error, one row per
//! output channel. So the squared error summed over the output channels and averaged over every
//! position of every sampled image is `Σ_o ΔW_o G ΔW_oᵀ`, with `G = mean_p p pᵀ` (K × K, K the
//! patch length: at most 576 in ResNet-8). The data is read once per layer into `G`; every
//! iteration then costs one `[O, K] × [K, K]` product, whatever the number of images, and uses
//! all of them (no mini-batches, so nothing random).
//!
//! The loss is a sum of one term per output channel, and neither the regularizer nor Adam mixes
//! elements, so the rows of a layer learn independently: they are split between threads, each
//! running every iteration on its own rows with nothing shared but `G`. The gradient is written
//! out (`G` is symmetric, so `∂/∂ΔW_o (ΔW_o G ΔW_oᵀ) = 2 ΔW_o G`) and computed in one pass over
//! the elements: autograd through libtorch gave the same numbers but spent most of each
//! iteration dispatching some thirty small operations and a second matrix product.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, Result};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewD};
use tch::{Kind, Tensor};

use super::AdaRoundOptions;

/// Rectified sigmoid stretch: `h(V) = clip(sigmoid(V)·(ζ − γ) + γ, 0, 1)`.
const ZETA: f32 = 1.1;
/// See [`ZETA`].
const GAMMA: f32 = -0.1;
/// Adam's constants (PyTorch's defaults, which `tch` gave before).
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f32 = 1e-8;
/// Elements of a layer below which it learns on one thread (a thread per layer costs more than
/// it saves).
const SPLIT_FROM: usize = 4096;

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
        self.add_tensor(op, &Tensor::from_slice(flat).view(shape.as_slice()))
    }

    /// [`Gram::add`] for an input that is already a float tensor.
    pub(super) fn add_tensor(&mut self, op: &Op, x: &Tensor) -> Result<()> {
        let shape = x.size();
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
    pub(super) fn mean(self) -> Result<Array2<f32>> {
        let sum = self
            .sum
            .ok_or_else(|| anyhow!("no input was captured for the layer"))?;
        let k = sum.size()[0] as usize;
        let mean = (sum / self.positions.max(1) as f64).to_kind(Kind::Float);
        let values = Vec::<f32>::try_from(mean.flatten(0, -1))?;
        Ok(Array2::from_shape_vec((k, k), values)?)
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
    fn error(&self, ints: &[i32], gram: ArrayView2<'_, f32>) -> Result<f64> {
        let d: Vec<f32> = (0..ints.len())
            .map(|i| self.w[i] - (ints[i] as f32 - self.zero[i]) * self.scale[i])
            .collect();
        let d = Array2::from_shape_vec((self.rows, self.cols), d)?;
        let dg = d.dot(&gram);
        Ok(d.iter().zip(&dg).map(|(&a, &b)| a as f64 * b as f64).sum())
    }

    /// `⌊W/s⌋` per element, and where the soft rounding starts: `h(V0) = W/s − ⌊W/s⌋`.
    fn start(&self) -> (Vec<f32>, Vec<f32>) {
        let n = self.w.len();
        let mut base = Vec::with_capacity(n);
        let mut v0 = Vec::with_capacity(n);
        for i in 0..n {
            let x = self.w[i] / self.scale[i];
            let b = x.floor();
            let rest = x - b;
            base.push(b);
            v0.push(-((ZETA - GAMMA) / (rest - GAMMA) - 1.0).ln());
        }
        (base, v0)
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

/// What does not change while some rows of a layer learn, element by element.
/// `W̃ = s·(clip(⌊W/s⌋ + h + z, lo, hi) − z) = s·⌊W/s⌋ + s·clip(h, lo − z − ⌊W/s⌋, hi − …)`, so
/// `ΔW = r − s·clip(h, h_lo, h_hi)` with `r = W − s·⌊W/s⌋`.
struct Fixed<'a> {
    r: &'a [f32],
    s: &'a [f32],
    h_lo: &'a [f32],
    h_hi: &'a [f32],
}

/// Some rows of a layer learning: the variables `V`, Adam's moments, and the buffers one
/// iteration fills.
struct Learner<'a> {
    fixed: Fixed<'a>,
    v: Vec<f32>,
    moment1: Vec<f32>,
    moment2: Vec<f32>,
    sig: Vec<f32>,
    h: Vec<f32>,
    grad: Vec<f32>,
    /// `ΔW` and `ΔW · G`, `[rows, cols]`.
    d: Array2<f32>,
    dg: Array2<f32>,
}

impl<'a> Learner<'a> {
    fn new(fixed: Fixed<'a>, v: Vec<f32>, cols: usize) -> Learner<'a> {
        let n = v.len();
        let rows = n / cols.max(1);
        Learner {
            fixed,
            v,
            moment1: vec![0.0; n],
            moment2: vec![0.0; n],
            sig: vec![0.0; n],
            h: vec![0.0; n],
            grad: vec![0.0; n],
            d: Array2::zeros((rows, cols)),
            dg: Array2::zeros((rows, cols)),
        }
    }

    /// The gradient of `Σ_o ΔW_o G ΔW_oᵀ − λ Σ |2h − 1|^β` (the regularizer less its constant,
    /// none without β) with respect to `V`, into `self.grad`. Where a clip is at its bound the
    /// gradient through it is kept, as libtorch's clamp keeps it (bounds included).
    fn gradient(&mut self, gram: ArrayView2<'_, f32>, beta: Option<f64>, reg_weight: f64) {
        let f = &self.fixed;
        let d = self.d.as_slice_mut().expect("standard layout");
        for (i, di) in d.iter_mut().enumerate() {
            let sig = 1.0 / (1.0 + (-self.v[i]).exp());
            let h = (sig * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0);
            self.sig[i] = sig;
            self.h[i] = h;
            *di = f.r[i] - f.s[i] * h.max(f.h_lo[i]).min(f.h_hi[i]);
        }
        general_mat_mul(1.0, &self.d, &gram, 0.0, &mut self.dg);
        let dg = self.dg.as_slice().expect("standard layout");
        let reg = beta.map(|b| (b as f32, reg_weight as f32));
        for (i, (grad, &dg)) in self.grad.iter_mut().zip(dg).enumerate() {
            let (sig, h) = (self.sig[i], self.h[i]);
            let mut gh = if h >= f.h_lo[i] && h <= f.h_hi[i] {
                -2.0 * f.s[i] * dg
            } else {
                0.0
            };
            if let Some((b, lambda)) = reg {
                let u = 2.0 * h - 1.0;
                let a = u.abs();
                if a > 0.0 {
                    gh -= lambda * b * a.powf(b - 1.0) * u.signum() * 2.0;
                }
            }
            let x = sig * (ZETA - GAMMA) + GAMMA;
            *grad = if (0.0..=1.0).contains(&x) {
                gh * (ZETA - GAMMA) * sig * (1.0 - sig)
            } else {
                0.0
            };
        }
    }

    /// Adam's step `t` (from 1) on `self.grad`, as PyTorch takes it.
    fn adam(&mut self, t: i32, learning_rate: f64) {
        let step = (learning_rate / (1.0 - ADAM_BETA1.powi(t))) as f32;
        let root2 = (1.0 - ADAM_BETA2.powi(t)).sqrt() as f32;
        let (b1, b2) = (ADAM_BETA1 as f32, ADAM_BETA2 as f32);
        for i in 0..self.v.len() {
            let g = self.grad[i];
            let m = b1 * self.moment1[i] + (1.0 - b1) * g;
            let q = b2 * self.moment2[i] + (1.0 - b2) * g * g;
            self.moment1[i] = m;
            self.moment2[i] = q;
            self.v[i] -= step * m / (q.sqrt() / root2 + ADAM_EPS);
        }
    }

    /// Every iteration; `tick(it)` before each (progress, interrupts); stops early, with
    /// `tick`'s error, or when `stop` is raised by another thread.
    fn run(
        &mut self,
        gram: ArrayView2<'_, f32>,
        o: &AdaRoundOptions,
        stop: &AtomicBool,
        tick: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        let warm = (o.warm_start * o.iterations as f64).round() as usize;
        for it in 0..o.iterations {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if let Err(e) = tick(it) {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
            let beta = beta_at(it, warm, o.iterations, o.beta);
            self.gradient(gram, beta, o.reg_weight);
            self.adam(it as i32 + 1, o.learning_rate);
        }
        Ok(())
    }
}

/// Learns whether each weight of `p` rounds up or down, minimizing the output error on `gram`
/// plus the rounding regularizer, on up to `threads` threads (by rows). `tick(it)` runs before
/// every iteration (progress, interrupts); its error stops every thread.
pub(super) fn learn(
    p: &Problem,
    gram: ArrayView2<'_, f32>,
    o: &AdaRoundOptions,
    threads: usize,
    tick: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Learned> {
    let n = p.rows * p.cols;
    let (base, v0) = p.start();
    let r: Vec<f32> = (0..n).map(|i| p.w[i] - p.scale[i] * base[i]).collect();
    let h_lo: Vec<f32> = (0..n).map(|i| p.lo[i] - p.zero[i] - base[i]).collect();
    let h_hi: Vec<f32> = (0..n).map(|i| p.hi[i] - p.zero[i] - base[i]).collect();
    let threads = if n < SPLIT_FROM {
        1
    } else {
        threads.clamp(1, p.rows.max(1))
    };
    // Rows per thread, the first ones taking one more where they do not divide evenly.
    let spans: Vec<(usize, usize)> = (0..threads)
        .scan(0, |start, t| {
            let rows = p.rows / threads + usize::from(t < p.rows % threads);
            let span = (*start * p.cols, (*start + rows) * p.cols);
            *start += rows;
            Some(span)
        })
        .collect();
    let mut learners: Vec<Learner<'_>> = spans
        .iter()
        .map(|&(a, b)| {
            let fixed = Fixed {
                r: &r[a..b],
                s: &p.scale[a..b],
                h_lo: &h_lo[a..b],
                h_hi: &h_hi[a..b],
            };
            Learner::new(fixed, v0[a..b].to_vec(), p.cols)
        })
        .collect();
    let stop = AtomicBool::new(false);
    let (first, others) = learners.split_first_mut().expect("one thread at least");
    std::thread::scope(|scope| -> Result<()> {
        let stop = &stop;
        let workers: Vec<_> = others
            .iter_mut()
            .map(|l| scope.spawn(move || l.run(gram, o, stop, &mut |_| Ok(()))))
            .collect();
        let mine = first.run(gram, o, stop, tick);
        for w in workers {
            w.join()
                .map_err(|_| anyhow!("an AdaRound thread panicked"))??;
        }
        mine
    })?;
    let ints: Vec<i32> = learners
        .iter()
        .flat_map(|l| l.v.iter())
        .enumerate()
        .map(|(i, &v)| {
            let up = if v >= 0.0 { 1.0 } else { 0.0 };
            (base[i] + up + p.zero[i]).clamp(p.lo[i], p.hi[i]) as i32
        })
        .collect();
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

    fn problem(rows: usize, cols: usize) -> (Problem, Array2<f32>) {
        let n = rows * cols;
        let wave = |i: usize, a: usize, b: usize| ((i * a + b) % 17) as f32 / 17.0 - 0.5;
        let p = Problem {
            rows,
            cols,
            w: (0..n).map(|i| wave(i, 7, 3) * 0.9).collect(),
            scale: (0..n).map(|i| 0.05 + 0.01 * (i / cols) as f32).collect(),
            zero: vec![0.0; n],
            lo: vec![-7.0; n],
            hi: vec![7.0; n],
        };
        // A positive semi-definite G from a few patches.
        let x = Array2::from_shape_fn((cols, 3 * cols), |(i, j)| wave(i * 31 + j, 5, 1));
        let g = x.dot(&x.t()) / (3 * cols) as f32;
        (p, g)
    }

    #[test]
    fn beta_anneals_after_the_warm_start() {
        assert_eq!(beta_at(0, 20, 100, (20.0, 2.0)), None);
        assert_eq!(beta_at(19, 20, 100, (20.0, 2.0)), None);
        assert_eq!(beta_at(20, 20, 100, (20.0, 2.0)), Some(20.0));
        let end = beta_at(99, 20, 100, (20.0, 2.0)).unwrap();
        assert!((2.0..2.1).contains(&end), "{end}");
    }

    #[test]
    fn the_written_out_gradient_is_autograds() {
        let (p, g) = problem(4, 9);
        let n = p.rows * p.cols;
        let (base, _) = p.start();
        // V spread so that some h clip at 0 and at 1.
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 9.0).collect();
        let r: Vec<f32> = (0..n).map(|i| p.w[i] - p.scale[i] * base[i]).collect();
        let h_lo: Vec<f32> = (0..n).map(|i| p.lo[i] - base[i]).collect();
        let h_hi: Vec<f32> = (0..n).map(|i| p.hi[i] - base[i]).collect();
        for beta in [None, Some(20.0), Some(2.0), Some(7.5)] {
            let fixed = Fixed {
                r: &r,
                s: &p.scale,
                h_lo: &h_lo,
                h_hi: &h_hi,
            };
            let mut l = Learner::new(fixed, v.clone(), p.cols);
            l.gradient(g.view(), beta, 0.01);
            // The same loss through libtorch's autograd.
            let t = |x: &[f32]| Tensor::from_slice(x).view([p.rows as i64, p.cols as i64]);
            let vt = t(&v).set_requires_grad(true);
            let gt = Tensor::from_slice(g.as_slice().unwrap()).view([p.cols as i64, -1]);
            let h = (vt.sigmoid() * f64::from(ZETA - GAMMA) + f64::from(GAMMA)).clamp(0.0, 1.0);
            let d = t(&r) - t(&p.scale) * h.clamp_tensor(Some(&t(&h_lo)), Some(&t(&h_hi)));
            let mut loss = (d.matmul(&gt) * &d).sum(Kind::Float);
            if let Some(b) = beta {
                loss -= (&h * 2.0 - 1.0).abs().pow_tensor_scalar(b).sum(Kind::Float) * 0.01;
            }
            loss.backward();
            let auto = Vec::<f32>::try_from(vt.grad().flatten(0, -1)).unwrap();
            let scale = auto.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.0);
            for (i, (a, b)) in l.grad.iter().zip(&auto).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * scale,
                    "β {beta:?}, element {i}: {a} written out vs {b} by autograd"
                );
            }
        }
    }

    #[test]
    fn rows_split_between_threads_learn_what_one_thread_learns() {
        // 40 × 144 elements: above SPLIT_FROM, so it does split.
        let (p, g) = problem(40, 144);
        let o = AdaRoundOptions {
            iterations: 300,
            ..Default::default()
        };
        let one = learn(&p, g.view(), &o, 1, &mut |_| Ok(())).unwrap();
        let three = learn(&p, g.view(), &o, 3, &mut |_| Ok(())).unwrap();
        assert_eq!(one.ints, three.ints);
        assert!(
            one.learned_error < one.nearest_error,
            "{} vs {}",
            one.learned_error,
            one.nearest_error
        );
        // An error from the tick stops every thread and is returned.
        let mut ticks = 0;
        let stopped = learn(&p, g.view(), &o, 3, &mut |it| {
            ticks += 1;
            if it == 5 {
                anyhow::bail!("stopped at 5")
            }
            Ok(())
        });
        assert_eq!(
            stopped.err().map(|e| e.to_string()),
            Some("stopped at 5".into())
        );
        assert_eq!(ticks, 6);
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
        let dw: Vec<f32> = (0..4 * 27).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
        let dwa = Array2::from_shape_vec((4, 27), dw.clone()).unwrap();
        let via_gram = (&dwa.dot(&g) * &dwa).sum() as f64 * positions;
        let xt = Tensor::from_slice(x.as_slice().unwrap()).view([2, 3, 6, 6]);
        let out = xt.constant_pad_nd([0, 1, 0, 1]).conv2d(
            &Tensor::from_slice(&dw).view([4, 3, 3, 3]),
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
