//! Each measured tensor's exact smallest and largest value over the calibration images, without
//! running the exact graph on every image.
//!
//! onnxruntime's calibrator runs the float graph unoptimized, and its ranges are those bits. The
//! optimized graph (fused NCHWc convolutions) is about a third faster but sums in another order:
//! its values differ in the last bits (under 1e-6 of a tensor's magnitude on ResNet-8). So:
//!
//! 1. *Screen*: the optimized graph gives each image's smallest and largest value of each tensor.
//! 2. *Settle*: the exact graph runs on the images that can hold an extreme: each tensor's leaders
//!    first, then every image whose screened value, widened by a tolerance, could still beat the
//!    exact extreme found so far, until none is left. The tolerance is [`TOLERANCE`] of the
//!    tensor's magnitude, or zero for a tensor no arithmetic touched (the input, its transposes,
//!    a ReLU of them); a tensor that cannot be negative (after a ReLU, a pooling of one, …) is
//!    bounded below by zero, so its many exact zeros need one image.
//!
//! Every settled image checks the tolerance: its exact values must lie within [`MARGIN`]th of it
//! of the screened ones. Where one does not, a screened value is not finite, a tensor has no
//! leading image axis, or more than a quarter of the images would need settling, every image
//! runs exactly. Either way the ranges are the exact graph's.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use super::ranges::MinMax;
use super::stats::{self, Capture, Progress, Source};
use crate::quant::onnx_graph::proto::ModelProto;

/// How far a screened value may be from the exact one, relative to the tensor's magnitude.
pub const TOLERANCE: f32 = 1e-4;

/// Settled images must be this many times closer than [`TOLERANCE`] to their screened values.
pub const MARGIN: f32 = 16.0;

/// How [`measure`] found the exact ranges.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Screened on the optimized graph, then this many images run on the exact one.
    Settled {
        /// Images run exactly.
        images: usize,
    },
    /// The exact graph on every image, and why.
    EveryImage(&'static str),
}

/// The ranges of `src`'s tensors on the exact graph, and how they were found.
pub fn measure(
    src: &Source<'_>,
    progress: Option<Progress<'_>>,
) -> Result<(BTreeMap<String, MinMax>, Found)> {
    let why = match per_image(src, true, progress)? {
        None => "a tensor has no leading image axis",
        Some(screen) => {
            let exact = |positions: &[usize]| {
                let indices: Vec<usize> = positions.iter().map(|&p| src.indices[p]).collect();
                let subset = Source {
                    indices: &indices,
                    ..*src
                };
                per_image(&subset, false, None)
            };
            match settle(&screen, &bounds(src, &screen), exact)? {
                Ok((best, images)) => {
                    let ranges = src.tensors.iter().cloned().zip(best).collect();
                    return Ok((ranges, Found::Settled { images }));
                }
                Err(why) => why,
            }
        }
    };
    Ok((every_image(src, progress)?, Found::EveryImage(why)))
}

/// The ranges from the exact graph on every image.
pub fn every_image(
    src: &Source<'_>,
    progress: Option<Progress<'_>>,
) -> Result<BTreeMap<String, MinMax>> {
    let mut seen = stats::empty_ranges(src);
    let runner = stats::runner(src, Capture::Extremes, false)?;
    stats::each_batch(src, &runner, "ranges", progress, |_, name, values| {
        let (t, _) = name.rsplit_once('\u{1}').unwrap_or((&name, ""));
        if let Some(m) = seen.get_mut(t) {
            m.add(&values);
        }
    })?;
    Ok(seen)
}

/// Each image's extremes of each tensor: `lo[t][p]`, `hi[t][p]` for `src.tensors[t]` and the
/// image at position `p` of `src.indices`.
struct PerImage {
    lo: Vec<Vec<f32>>,
    hi: Vec<Vec<f32>>,
}

/// Each image's extremes, from the optimized or the exact graph; `None` when a tensor has no
/// leading image axis.
fn per_image(
    src: &Source<'_>,
    optimized: bool,
    progress: Option<Progress<'_>>,
) -> Result<Option<PerImage>> {
    let n = src.indices.len();
    let which: BTreeMap<String, (usize, bool)> = src
        .tensors
        .iter()
        .enumerate()
        .flat_map(|(t, name)| [false, true].map(|max| (stats::extreme_name(name, max), (t, max))))
        .collect();
    let mut out = PerImage {
        lo: vec![vec![f32::NAN; n]; src.tensors.len()],
        hi: vec![vec![f32::NAN; n]; src.tensors.len()],
    };
    let mut aligned = true;
    let runner = stats::runner(src, Capture::Extremes, optimized)?;
    stats::each_batch(src, &runner, "ranges", progress, |images, name, values| {
        let Some(&(t, max)) = which.get(&name) else {
            return;
        };
        let slots = if max { &mut out.hi[t] } else { &mut out.lo[t] };
        if values.len() == images.len() {
            slots[images].copy_from_slice(&values);
        } else {
            aligned = false;
        }
    })?;
    Ok(aligned.then_some(out))
}

/// What the graph tells of a tensor without running it.
#[derive(Clone, Copy, Default)]
struct Known {
    /// Its values are the same bits on every graph: no arithmetic made them.
    exact: bool,
    /// It cannot be negative.
    nonnegative: bool,
}

/// [`Known`] for the graph's inputs, initializers and node outputs (nodes are in topological
/// order, as ONNX requires).
fn known(model: &ModelProto) -> BTreeMap<String, Known> {
    let mut k = BTreeMap::new();
    let Some(g) = model.graph.as_ref() else {
        return k;
    };
    let given = Known {
        exact: true,
        nonnegative: false,
    };
    for name in g
        .input
        .iter()
        .map(|i| i.name())
        .chain(g.initializer.iter().map(|t| t.name()))
    {
        k.insert(name.to_string(), given);
    }
    for node in &g.node {
        let first = node
            .input
            .first()
            .and_then(|i| k.get(i))
            .copied()
            .unwrap_or_default();
        let this = match node.op_type() {
            // Values moved or picked, never computed.
            "Transpose" | "Reshape" | "Flatten" | "Identity" | "Squeeze" | "Unsqueeze"
            | "MaxPool" | "GlobalMaxPool" => first,
            "Relu" => Known {
                exact: first.exact,
                nonnegative: true,
            },
            "AveragePool" | "GlobalAveragePool" => Known {
                exact: false,
                nonnegative: first.nonnegative,
            },
            "Softmax" | "Sigmoid" => Known {
                exact: false,
                nonnegative: true,
            },
            _ => Known::default(),
        };
        for out in &node.output {
            k.insert(out.clone(), this);
        }
    }
    k
}

/// How far a tensor's exact values can be from its screened ones.
#[derive(Clone, Copy, Debug)]
struct Bound {
    /// Largest difference allowed.
    tolerance: f32,
    /// No exact value is below this.
    floor: f32,
}

fn bounds(src: &Source<'_>, screen: &PerImage) -> Vec<Bound> {
    let known = known(src.model);
    src.tensors
        .iter()
        .enumerate()
        .map(|(t, name)| {
            let k = known.get(name).copied().unwrap_or_default();
            let magnitude = screen.lo[t]
                .iter()
                .chain(&screen.hi[t])
                .fold(0f32, |m, v| m.max(v.abs()));
            Bound {
                tolerance: if k.exact { 0.0 } else { TOLERANCE * magnitude },
                floor: if k.nonnegative {
                    0.0
                } else {
                    f32::NEG_INFINITY
                },
            }
        })
        .collect()
}

/// Each tensor's exact extremes and the number of images run; or why the screen cannot be
/// trusted or would settle too many.
type Settled = std::result::Result<(Vec<MinMax>, usize), &'static str>;

/// The exact extremes from `screen` and `exact` (each given image's exact extremes, by position)
/// on as few images as can decide them.
fn settle(
    screen: &PerImage,
    bounds: &[Bound],
    mut exact: impl FnMut(&[usize]) -> Result<Option<PerImage>>,
) -> Result<Settled> {
    let n = screen.lo.first().map_or(0, Vec::len);
    let finite = screen
        .lo
        .iter()
        .chain(&screen.hi)
        .flatten()
        .all(|v| v.is_finite());
    if n == 0 || !finite {
        return Ok(Err("a screened value is not finite"));
    }
    let mut best = vec![MinMax::default(); bounds.len()];
    let mut settled = vec![false; n];
    let mut settled_count = 0;
    // Each tensor's leaders: the images with the smallest and the largest screened value.
    let mut wanted: BTreeSet<usize> = (0..bounds.len())
        .flat_map(|t| {
            let lowest = (0..n).min_by(|&a, &b| screen.lo[t][a].total_cmp(&screen.lo[t][b]));
            let highest = (0..n).max_by(|&a, &b| screen.hi[t][a].total_cmp(&screen.hi[t][b]));
            [lowest, highest]
        })
        .flatten()
        .collect();
    let close = |e: f32, s: f32, tol: f32| (e - s).abs() * MARGIN <= tol;
    while !wanted.is_empty() {
        settled_count += wanted.len();
        if settled_count > n / 4 {
            return Ok(Err("more than a quarter of the images would need settling"));
        }
        let positions: Vec<usize> = wanted.into_iter().collect();
        let Some(ex) = exact(&positions)? else {
            return Ok(Err("a tensor has no leading image axis"));
        };
        for (j, &p) in positions.iter().enumerate() {
            settled[p] = true;
            for (t, b) in bounds.iter().enumerate() {
                let (lo, hi) = (ex.lo[t][j], ex.hi[t][j]);
                if !close(lo, screen.lo[t][p], b.tolerance)
                    || !close(hi, screen.hi[t][p], b.tolerance)
                {
                    return Ok(Err("an image's exact values are not within the tolerance"));
                }
                best[t].add(&[lo, hi]);
            }
        }
        // Images whose exact value could still beat an extreme found.
        wanted = (0..n)
            .filter(|&p| !settled[p])
            .filter(|&p| {
                bounds.iter().enumerate().any(|(t, b)| {
                    let lowest = (screen.lo[t][p] - b.tolerance).max(b.floor);
                    let highest = screen.hi[t][p] + b.tolerance;
                    lowest < best[t].min || highest > best[t].max
                })
            })
            .collect();
    }
    Ok(Ok((best, settled_count)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `settle` on one tensor's screened values `(lo, hi)` per image, with exact values
    /// `exact`, recording which images ran in each round.
    fn run(
        screen: &[(f32, f32)],
        exact: &[(f32, f32)],
        bound: Bound,
    ) -> (Settled, Vec<Vec<usize>>) {
        let split = |rows: &[(f32, f32)], images: &[usize]| PerImage {
            lo: vec![images.iter().map(|&i| rows[i].0).collect()],
            hi: vec![images.iter().map(|&i| rows[i].1).collect()],
        };
        let all: Vec<usize> = (0..screen.len()).collect();
        let mut rounds = Vec::new();
        let settled = settle(&split(screen, &all), &[bound], |images| {
            rounds.push(images.to_vec());
            Ok(Some(split(exact, images)))
        })
        .unwrap();
        (settled, rounds)
    }

    const SIGNED: Bound = Bound {
        tolerance: 0.01,
        floor: f32::NEG_INFINITY,
    };

    #[test]
    fn leaders_settle_a_clear_extreme() {
        let mut screen = vec![(-1.0, 1.0); 20];
        screen[3] = (-5.0, 1.0);
        screen[7] = (-1.0, 9.0);
        let mut exact = screen.clone();
        exact[3].0 = -5.0001;
        let (settled, rounds) = run(&screen, &exact, SIGNED);
        let (best, images) = settled.unwrap();
        assert_eq!((best[0].min, best[0].max, images), (-5.0001, 9.0, 2));
        assert_eq!(rounds, vec![vec![3, 7]]);
    }

    /// `n` images whose extremes are far apart: image `i` spans ±(1 + i / 10).
    fn spread(n: usize) -> Vec<(f32, f32)> {
        (0..n)
            .map(|i| (-1.0 - i as f32 / 10.0, 1.0 + i as f32 / 10.0))
            .collect()
    }

    #[test]
    fn a_close_second_runs_in_another_round_and_can_win() {
        // Image 2 screens highest, but image 5 is within the tolerance and is the exact maximum.
        let mut screen = spread(40);
        screen[2].1 = 9.0;
        screen[5].1 = 8.999;
        let mut exact = screen.clone();
        exact[2].1 = 8.9995;
        exact[5].1 = 8.9996;
        let lowest = exact[39].0;
        let (settled, rounds) = run(&screen, &exact, SIGNED);
        let (best, images) = settled.unwrap();
        assert_eq!((best[0].min, best[0].max), (lowest, 8.9996));
        assert_eq!(images, 3);
        assert_eq!(rounds, vec![vec![2, 39], vec![5]]);
    }

    #[test]
    fn zeros_that_cannot_go_lower_need_one_image() {
        let screen: Vec<(f32, f32)> = spread(40).into_iter().map(|(_, hi)| (0.0, hi)).collect();
        let floor = Bound {
            tolerance: 0.01,
            floor: 0.0,
        };
        let (settled, rounds) = run(&screen, &screen, floor);
        assert_eq!(settled.unwrap().1, 2);
        assert_eq!(rounds, vec![vec![0, 39]]);
        // Without the floor every tie could hide a slightly lower exact value.
        let (settled, _) = run(&screen, &screen, SIGNED);
        assert_eq!(
            settled.unwrap_err(),
            "more than a quarter of the images would need settling"
        );
    }

    #[test]
    fn exact_values_outside_the_tolerance_distrust_the_screen() {
        let screen = vec![(-1.0, 1.0); 20];
        let mut exact = screen.clone();
        exact[0].1 = 1.001;
        let (settled, _) = run(&screen, &exact, SIGNED);
        assert!(settled.unwrap_err().contains("tolerance"));
    }

    #[test]
    fn untouched_tensors_must_match_exactly() {
        let exact_bound = Bound {
            tolerance: 0.0,
            floor: f32::NEG_INFINITY,
        };
        let screen = vec![(0.0, 255.0); 20];
        let (settled, rounds) = run(&screen, &screen, exact_bound);
        // The first image with the smallest value, the last with the largest: nothing more.
        assert_eq!(settled.unwrap().1, 2);
        assert_eq!(rounds, vec![vec![0, 19]]);
        let mut exact = screen.clone();
        exact[0].1 = 254.99998;
        let (settled, _) = run(&screen, &exact, exact_bound);
        assert!(settled.is_err());
    }

    #[test]
    fn a_screen_that_is_not_finite_is_not_used() {
        let mut screen = vec![(-1.0, 1.0); 20];
        screen[4].1 = f32::NAN;
        let (settled, rounds) = run(&screen, &screen, SIGNED);
        assert!(settled.unwrap_err().contains("finite"));
        assert!(rounds.is_empty());
    }
}
