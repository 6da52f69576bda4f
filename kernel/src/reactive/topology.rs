//! Edges between cells (a child uses a value its parent defines) and the orders they give.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Topology {
    parents: BTreeMap<String, BTreeSet<String>>,
    children: BTreeMap<String, BTreeSet<String>>,
}

impl Topology {
    /// Makes `parents` the parents of `key`, replacing its earlier ones.
    pub fn set_parents(&mut self, key: &str, parents: BTreeSet<String>) {
        for old in self.parents.remove(key).unwrap_or_default() {
            if let Some(children) = self.children.get_mut(&old) {
                children.remove(key);
            }
        }
        for parent in &parents {
            self.children
                .entry(parent.clone())
                .or_default()
                .insert(key.to_string());
        }
        self.parents.insert(key.to_string(), parents);
    }

    /// Forgets `key` as a child; its children keep their edge until their parents are set again.
    pub fn remove(&mut self, key: &str) {
        self.set_parents(key, BTreeSet::new());
        self.parents.remove(key);
    }

    pub fn parents(&self, key: &str) -> impl Iterator<Item = &str> {
        self.parents
            .get(key)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    pub fn children(&self, key: &str) -> impl Iterator<Item = &str> {
        self.children
            .get(key)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Every cell reachable from `starts` by following parent edges (the starts not included
    /// unless reachable).
    pub fn ancestors<'a>(&self, starts: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        self.reach(starts, &self.parents, &BTreeSet::new())
    }

    /// Every cell reachable from `starts` by following child edges, never entering or passing
    /// through a cell in `avoid`.
    pub fn descendants<'a>(
        &self,
        starts: impl IntoIterator<Item = &'a str>,
        avoid: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        self.reach(starts, &self.children, avoid)
    }

    fn reach<'a>(
        &self,
        starts: impl IntoIterator<Item = &'a str>,
        edges: &BTreeMap<String, BTreeSet<String>>,
        avoid: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = starts.into_iter().map(str::to_string).collect();
        while let Some(key) = todo.pop() {
            for n in edges.get(&key).into_iter().flatten() {
                if !avoid.contains(n) && seen.insert(n.to_string()) {
                    todo.push(n.to_string());
                }
            }
        }
        seen
    }

    /// `cells` in an order in which every parent comes before its children (edges leaving the
    /// set are ignored); among cells that are ready together, the lower `rank` (the earlier run)
    /// goes first, and a cycle is entered at its lowest-ranked cell.
    pub fn order(&self, cells: &BTreeSet<String>, rank: impl Fn(&str) -> u64) -> Vec<String> {
        let mut waiting: BTreeMap<&str, usize> = cells
            .iter()
            .map(|k| {
                let n = self.parents(k).filter(|p| cells.contains(*p)).count();
                (k.as_str(), n)
            })
            .collect();
        let mut ready: BTreeSet<(u64, &str)> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(k, _)| (rank(k), *k))
            .collect();
        let mut order = Vec::with_capacity(cells.len());
        while !waiting.is_empty() {
            let next = match ready.pop_first() {
                Some((_, k)) => k,
                // A cycle: enter it where it ran first.
                None => match waiting.keys().min_by_key(|k| rank(k)) {
                    Some(k) => *k,
                    None => break,
                },
            };
            if waiting.remove(next).is_none() {
                continue;
            }
            order.push(next.to_string());
            for child in self.children(next) {
                if let Some(n) = waiting.get_mut(child) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        ready.insert((rank(child), child));
                    }
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactive::names;

    #[test]
    fn orders_parents_first_then_by_rank_and_breaks_cycles() {
        let mut t = Topology::default();
        t.set_parents("b", names(&["a"]));
        t.set_parents("c", names(&["b"]));
        t.set_parents("d", names(&["a"]));
        // c ran before b: still after it; once ready, before d, which ran later.
        let rank = |k: &str| match k {
            "a" => 1,
            "c" => 2,
            "b" => 3,
            _ => 4,
        };
        assert_eq!(
            t.order(&names(&["a", "b", "c", "d"]), rank),
            ["a", "b", "c", "d"]
        );
        assert_eq!(t.descendants(["a"], &names(&["b"])), names(&["d"]));
        assert_eq!(t.ancestors(["c"]), names(&["a", "b"]));
        // x ↔ y: entered where it ran first.
        t.set_parents("x", names(&["y"]));
        t.set_parents("y", names(&["x"]));
        let rank = |k: &str| if k == "y" { 1 } else { 2 };
        assert_eq!(t.order(&names(&["x", "y"]), rank), ["y", "x"]);
        t.remove("c");
        assert_eq!(t.children("b").count(), 0);
    }
}
