//! A layered top-to-bottom layout (after Sugiyama): each node on the layer one below its
//! lowest producer (the longest path from an input), so every edge points down; an edge that
//! spans several layers runs through a bend point on each layer between, placed like a thin
//! node so that it does not cross boxes; the order within a layer by the mean position of the
//! neighbours (sweeps down and up); x by the neighbours' mean, then pushed apart to keep the
//! spacing.

use anyhow::{bail, Result};

use super::{Edge, Node};

/// A box's width and height, in pixels (badges go on its right, inside the width).
pub const BOX_W: f64 = 150.0;
/// The box's height.
pub const BOX_H: f64 = 36.0;
/// Room on a box's right for its badges.
pub const BADGE_W: f64 = 44.0;
/// Vertical distance between layers' centres.
pub const LAYER_H: f64 = 78.0;
/// Horizontal gap between neighbours (boxes or bend points).
const GAP: f64 = 26.0;
/// The space a bend point takes in its layer.
const BEND_W: f64 = 12.0;
/// Margins around the drawing.
pub const MARGIN: f64 = 24.0;

/// Where every node and edge goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Each node's layer (0 at the top).
    pub layer: Vec<usize>,
    /// Each node's centre.
    pub pos: Vec<(f64, f64)>,
    /// Each edge's points, from the bottom of its producer through its bend points to the top
    /// of its consumer.
    pub routes: Vec<Vec<(f64, f64)>>,
    /// The drawing's size.
    pub width: f64,
    /// The drawing's height.
    pub height: f64,
}

/// A slot in a layer: a node, or a bend point of an edge.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Node(usize),
    Bend(usize),
}

impl Layout {
    /// The layout of `nodes` and `edges` (an error when the edges make a cycle).
    pub fn of(nodes: &[Node], edges: &[Edge]) -> Result<Layout> {
        let n = nodes.len();
        let layer = layers(n, edges)?;
        let depth = layer.iter().max().map_or(0, |&l| l + 1);
        // Slots per layer, and each edge's bend points (slot ids) in order.
        let mut slots: Vec<Slot> = (0..n).map(Slot::Node).collect();
        let mut slot_layer: Vec<usize> = layer.clone();
        let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
        for (e, edge) in edges.iter().enumerate() {
            let mut chain = vec![edge.from];
            for l in layer[edge.from] + 1..layer[edge.to] {
                chain.push(slots.len());
                slots.push(Slot::Bend(e));
                slot_layer.push(l);
            }
            chain.push(edge.to);
            chains.push(chain);
        }
        let (mut up, mut down) = (vec![Vec::new(); slots.len()], vec![Vec::new(); slots.len()]);
        for chain in &chains {
            for w in chain.windows(2) {
                down[w[0]].push(w[1]);
                up[w[1]].push(w[0]);
            }
        }
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
        for (s, &l) in slot_layer.iter().enumerate() {
            rows[l].push(s);
        }
        let width_of = |s: usize| match slots[s] {
            Slot::Node(_) => BOX_W + BADGE_W,
            Slot::Bend(_) => BEND_W,
        };
        order(&mut rows, &up, &down);
        let x = place(&rows, &up, &down, &width_of);
        let left = (0..slots.len())
            .map(|s| x[s] - width_of(s) / 2.0)
            .fold(f64::INFINITY, f64::min);
        let right = (0..slots.len())
            .map(|s| x[s] + width_of(s) / 2.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let shift = MARGIN - if left.is_finite() { left } else { 0.0 };
        let y_of = |l: usize| MARGIN + BOX_H / 2.0 + l as f64 * LAYER_H;
        // A box's centre is left of its slot's centre by half the badge room.
        let cx = |s: usize| match slots[s] {
            Slot::Node(_) => x[s] + shift - BADGE_W / 2.0,
            Slot::Bend(_) => x[s] + shift,
        };
        let pos: Vec<(f64, f64)> = (0..n).map(|i| (cx(i), y_of(layer[i]))).collect();
        let routes = chains
            .iter()
            .map(|chain| {
                let last = chain.len() - 1;
                chain
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| {
                        let y = y_of(slot_layer[s]);
                        match k {
                            0 => (cx(s), y + BOX_H / 2.0),
                            k if k == last => (cx(s), y - BOX_H / 2.0),
                            _ => (cx(s), y),
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(Layout {
            layer,
            pos,
            routes,
            width: if right.is_finite() {
                right + shift + MARGIN
            } else {
                2.0 * MARGIN
            },
            height: y_of(depth.saturating_sub(1)) + BOX_H / 2.0 + MARGIN,
        })
    }

    /// How many layers.
    pub fn layers(&self) -> usize {
        self.layer.iter().max().map_or(0, |&l| l + 1)
    }
}

/// Each node's layer: 0 for a node nothing feeds, else one below its lowest producer.
fn layers(n: usize, edges: &[Edge]) -> Result<Vec<usize>> {
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in edges {
        indegree[e.to] += 1;
        out[e.from].push(e.to);
    }
    let mut layer = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).rev().collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &j in &out[i] {
            layer[j] = layer[j].max(layer[i] + 1);
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(j);
            }
        }
    }
    if seen < n {
        bail!("graph: the model's graph has a cycle; only acyclic graphs can be laid out");
    }
    Ok(layer)
}

/// Orders each layer by the mean position of its neighbours in the layer above (sweeping
/// down), then below (sweeping up), a few times; ties keep the graph order.
fn order(rows: &mut [Vec<usize>], up: &[Vec<usize>], down: &[Vec<usize>]) {
    let slots = up.len();
    let mut rank = vec![0.0f64; slots];
    let rerank = |rows: &[Vec<usize>], rank: &mut Vec<f64>| {
        for row in rows {
            for (k, &s) in row.iter().enumerate() {
                rank[s] = k as f64;
            }
        }
    };
    rerank(rows, &mut rank);
    let sort_by = |row: &mut Vec<usize>, rank: &[f64], nbrs: &[Vec<usize>]| {
        let key = |s: usize| {
            let ns = &nbrs[s];
            if ns.is_empty() {
                rank[s]
            } else {
                ns.iter().map(|&t| rank[t]).sum::<f64>() / ns.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = row.iter().map(|&s| (key(s), s)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        *row = keyed.into_iter().map(|(_, s)| s).collect();
    };
    for _ in 0..4 {
        for l in 1..rows.len() {
            sort_by(&mut rows[l], &rank, up);
            rerank(rows, &mut rank);
        }
        for l in (0..rows.len().saturating_sub(1)).rev() {
            sort_by(&mut rows[l], &rank, down);
            rerank(rows, &mut rank);
        }
    }
}

/// x of every slot: each layer's slots side by side, then moved towards their neighbours' mean
/// x, in order (the spacing kept by pushing left to right and right to left, averaged).
fn place(
    rows: &[Vec<usize>],
    up: &[Vec<usize>],
    down: &[Vec<usize>],
    width_of: &dyn Fn(usize) -> f64,
) -> Vec<f64> {
    let mut x = vec![0.0f64; up.len()];
    for row in rows {
        let mut at = 0.0;
        for &s in row {
            x[s] = at + width_of(s) / 2.0;
            at += width_of(s) + GAP;
        }
    }
    let settle = |row: &[usize], x: &mut Vec<f64>, nbrs: &[Vec<usize>]| {
        let want: Vec<f64> = row
            .iter()
            .map(|&s| {
                let ns = &nbrs[s];
                if ns.is_empty() {
                    x[s]
                } else {
                    ns.iter().map(|&t| x[t]).sum::<f64>() / ns.len() as f64
                }
            })
            .collect();
        let sep = |a: usize, b: usize| (width_of(a) + width_of(b)) / 2.0 + GAP;
        let mut right = want.clone();
        for k in 1..row.len() {
            right[k] = right[k].max(right[k - 1] + sep(row[k - 1], row[k]));
        }
        let mut left = want;
        for k in (0..row.len().saturating_sub(1)).rev() {
            left[k] = left[k].min(left[k + 1] - sep(row[k], row[k + 1]));
        }
        for (k, &s) in row.iter().enumerate() {
            x[s] = (left[k] + right[k]) / 2.0;
        }
        // The average of two spaced placements is spaced too (each gap is a mean of gaps).
    };
    for _ in 0..6 {
        for row in rows.iter().skip(1) {
            settle(row, &mut x, up);
        }
        for row in rows.iter().rev().skip(1) {
            settle(row, &mut x, down);
        }
    }
    x
}
