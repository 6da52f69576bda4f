//! The dataflow graph of a notebook: which cell defines which names, which cells use them, and
//! in what order cells rerun when a widget changes.
//!
//! Recording a cell updates the indexes and recomputes the edges of only the cells whose
//! parents may have changed: the cell itself and the users of every name it defined before or
//! defines now. When a widget changes, [`Graph::dependents`] gives the cells to rerun — those
//! that use the widget's variable and everything downstream of them — in topological order,
//! run order breaking ties; never the widget's own cell, never a cell it depends on.

use std::collections::{BTreeMap, BTreeSet};

use qplay::display::escape_html;

use super::definitions::Definitions;
use super::syntax::CellSyntax;
use super::topology::Topology;

/// One cell as last run.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub code: String,
    pub syntax: CellSyntax,
    /// Position in run order (larger = later).
    pub ran_at: u64,
    /// Widget models the cell created (model id, the names bound to it).
    pub widgets: Vec<(String, BTreeSet<String>)>,
    /// The output widget that shows this cell's outputs, for a cell that reruns.
    pub output: Option<String>,
}

/// The notebook's cells by key (JupyterLab's cell id, or a hash of the code).
#[derive(Debug, Default)]
pub struct Graph {
    pub(super) cells: BTreeMap<String, Node>,
    pub(super) definitions: Definitions,
    pub(super) topology: Topology,
    clock: u64,
}

impl Graph {
    /// Records a run of `key` (replacing what the cell was before) and returns its node.
    pub fn record(&mut self, key: &str, code: &str, syntax: CellSyntax) -> &mut Node {
        self.clock += 1;
        let mut touched: BTreeSet<String> = syntax.defines.clone();
        if let Some(old) = self.cells.get(key) {
            self.definitions.remove(key, &old.syntax);
            touched.extend(old.syntax.defines.iter().cloned());
        }
        self.definitions.add(key, &syntax, self.clock);
        let node = self.cells.entry(key.to_string()).or_default();
        node.code = code.to_string();
        node.syntax = syntax;
        node.ran_at = self.clock;
        node.widgets.clear();
        self.relink(key, &touched);
        self.cells.get_mut(key).expect("just recorded")
    }

    /// Recomputes the parents of `key` and of every user of the names in `touched`.
    fn relink(&mut self, key: &str, touched: &BTreeSet<String>) {
        let mut cells: BTreeSet<String> = touched
            .iter()
            .flat_map(|name| self.definitions.all_users(name))
            .map(str::to_string)
            .collect();
        cells.insert(key.to_string());
        for cell in cells {
            match self.cells.get(&cell) {
                Some(node) => {
                    let parents = self.definitions.parents_of(&cell, &node.syntax);
                    self.topology.set_parents(&cell, parents);
                }
                None => self.topology.remove(&cell),
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.cells.get(key)
    }

    #[cfg(test)]
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.cells.get_mut(key)
    }

    /// Forgets a deleted cell: its definitions no longer count.
    pub fn forget(&mut self, key: &str) -> Option<Node> {
        let node = self.cells.remove(key)?;
        self.definitions.remove(key, &node.syntax);
        self.relink(key, &node.syntax.defines);
        Some(node)
    }

    /// The cell whose value of `name` the runtime holds.
    pub fn definer(&self, name: &str) -> Option<&str> {
        self.definitions.definer(name)
    }

    /// The cells to rerun when the values of some names change — for each `(source, names)`,
    /// names that cell `source` defines — parents before children, earlier runs first where
    /// the graph leaves the order open.
    pub fn dependents(&self, changed: &[(String, BTreeSet<String>)]) -> Vec<String> {
        let mut chosen = BTreeSet::new();
        for (source, names) in changed {
            let mut excluded = self.topology.ancestors([source.as_str()]);
            excluded.insert(source.clone());
            let first: BTreeSet<String> = names
                .iter()
                .filter(|name| self.definer(name) == Some(source.as_str()))
                .flat_map(|name| self.definitions.users(name))
                .filter(|user| !excluded.contains(*user))
                .map(str::to_string)
                .collect();
            chosen.extend(
                self.topology
                    .descendants(first.iter().map(String::as_str), &excluded),
            );
            chosen.extend(first);
        }
        self.topology
            .order(&chosen, |k| self.cells.get(k).map_or(0, |n| n.ran_at))
    }

    /// Whether a cell with this syntax would depend on a widget (directly or through other
    /// cells), so that its outputs must be replaceable in place.
    pub fn is_reactive(&self, key: &str, syntax: &CellSyntax) -> bool {
        let parents = self.definitions.parents_of(key, syntax);
        let mut upstream = self.topology.ancestors(parents.iter().map(String::as_str));
        upstream.extend(parents);
        upstream.remove(key);
        upstream
            .iter()
            .any(|k| self.cells.get(k).is_some_and(|n| !n.widgets.is_empty()))
    }

    /// The cells that show their outputs in an output area of their own (those that ran as
    /// reactive), in run order.
    pub fn reactive_cells(&self) -> Vec<String> {
        let mut cells: Vec<(&String, &Node)> = self
            .cells
            .iter()
            .filter(|(_, n)| n.output.is_some())
            .collect();
        cells.sort_by_key(|(_, n)| n.ran_at);
        cells.into_iter().map(|(k, _)| k.clone()).collect()
    }

    /// The cell that created widget `model_id`, and the names bound to it.
    pub fn widget_owner(&self, model_id: &str) -> Option<(&str, &BTreeSet<String>)> {
        self.cells.iter().find_map(|(k, n)| {
            n.widgets
                .iter()
                .find(|(id, _)| id == model_id)
                .map(|(_, names)| (k.as_str(), names))
        })
    }

    /// The graph as an HTML table and as text, for `:deps`; `rerun` says how a reactive cell
    /// reruns (wrapped, or compiled and why).
    pub fn render(&self, rerun: impl Fn(&str, &Node) -> String) -> (String, String) {
        let mut nodes: Vec<(&String, &Node)> = self.cells.iter().collect();
        nodes.sort_by_key(|(_, n)| n.ran_at);
        let mut html = String::from(
            "<table class=\"qplay-deps\"><thead><tr><th>#</th><th>cell</th><th>defines</th>\
             <th>uses (from cells)</th><th>widgets</th><th>reruns when a widget changes</th>\
             </tr></thead><tbody>",
        );
        let mut text = String::new();
        let index: BTreeMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_str(), i + 1))
            .collect();
        for (i, (key, node)) in nodes.iter().enumerate() {
            let first_line = node
                .code
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let uses: Vec<String> = self
                .definitions
                .sources(key, &node.syntax)
                .iter()
                .map(|(name, d)| format!("{name} (#{})", index[d.as_str()]))
                .collect();
            let defines: Vec<&str> = node.syntax.defines.iter().map(String::as_str).collect();
            let widgets: Vec<String> = node
                .widgets
                .iter()
                .filter(|(_, names)| !names.is_empty())
                .map(|(_, names)| names.iter().cloned().collect::<Vec<_>>().join("/"))
                .collect();
            let reruns = if self.is_reactive(key, &node.syntax) {
                rerun(key, node)
            } else {
                String::new()
            };
            html.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td></tr>",
                i + 1,
                escape_html(first_line.trim()),
                escape_html(&defines.join(", ")),
                escape_html(&uses.join(", ")),
                escape_html(&widgets.join(", ")),
                escape_html(&reruns),
            ));
            text.push_str(&format!(
                "#{} {}\n    defines: {}\n    uses: {}\n",
                i + 1,
                first_line.trim(),
                defines.join(", "),
                uses.join(", ")
            ));
            if !reruns.is_empty() {
                text.push_str(&format!("    reruns: {reruns}\n"));
            }
        }
        html.push_str("</tbody></table>");
        if nodes.is_empty() {
            text.push_str("no cells have run yet\n");
        }
        (html, text)
    }
}

/// For tests: the graph of `cells` (key, code) run in order.
#[cfg(test)]
pub(super) fn graph(cells: &[(&str, &str)]) -> Graph {
    let mut g = Graph::default();
    for (key, code) in cells {
        g.record(key, code, super::analyze(code));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactive::analyze;
    use crate::reactive::names;

    #[test]
    fn dependents_are_transitive_ordered_and_exclude_upstream() {
        let mut g = graph(&[
            ("model", "let model = load(\"m\");"),
            (
                "widgets",
                "let s = slider(\"s\", 0.0, 1.0, 0.5); let t = checkbox(\"t\", true);",
            ),
            ("a", "let acc = model.run(s.value());"),
            ("b", "let shown = format!(\"{acc}\");"),
            ("c", "let other = t.value();"),
            ("d", "let unrelated = 1;"),
        ]);
        g.get_mut("widgets").unwrap().widgets = vec![("w1".into(), names(&["s"]))];
        assert_eq!(
            g.dependents(&[("widgets".into(), names(&["s"]))]),
            ["a", "b"]
        );
        assert_eq!(g.dependents(&[("widgets".into(), names(&["t"]))]), ["c"]);
        assert!(g.is_reactive("b", &g.get("b").unwrap().syntax.clone()));
        assert!(!g.is_reactive("d", &g.get("d").unwrap().syntax.clone()));
        assert!(!g.is_reactive("model", &g.get("model").unwrap().syntax.clone()));
        // A cell the widget cell uses never reruns, even if it also uses the widget.
        let mut g = graph(&[
            ("w", "let s = slider(\"s\", 0.0, 1.0, 0.5); let y = base;"),
            ("base", "let base = s.value();"),
        ]);
        g.get_mut("w").unwrap().widgets = vec![("w1".into(), names(&["s"]))];
        assert!(g.dependents(&[("w".into(), names(&["s"]))]).is_empty());
    }

    /// The reproduction: W, B, C run in order, then B again by hand. C reads B's `z`,
    /// so B reruns first although C ran after it last.
    #[test]
    fn reruns_follow_the_dataflow_not_the_run_order() {
        let mut g = graph(&[
            ("W", "let w = slider(\"w\", 0.0, 10.0, 1.0); w"),
            ("B", "let z = w.value() + 100.0; z"),
            ("C", "println!(\"c sees {}\", z);"),
        ]);
        g.get_mut("W").unwrap().widgets = vec![("w1".into(), names(&["w"]))];
        let b = "let z = w.value() + 100.0; z";
        g.record("B", b, analyze(b));
        assert_eq!(g.dependents(&[("W".into(), names(&["w"]))]), ["B", "C"]);
        // A chain B → D → C whose run order is C, D, B.
        let mut g = graph(&[
            ("W", "let w = slider(\"w\", 0.0, 10.0, 1.0);"),
            ("C", "println!(\"{}\", d);"),
            ("D", "let d = z * 2.0;"),
            ("B", "let z = w.value();"),
        ]);
        g.get_mut("W").unwrap().widgets = vec![("w1".into(), names(&["w"]))];
        assert_eq!(
            g.dependents(&[("W".into(), names(&["w"]))]),
            ["B", "D", "C"]
        );
    }

    #[test]
    fn a_redefinition_moves_the_edges() {
        let mut g = graph(&[
            ("W", "let w = slider(\"w\", 0.0, 10.0, 1.0);"),
            ("A", "let x = w.value();"),
            ("U", "let y = x + 1.0;"),
        ]);
        g.get_mut("W").unwrap().widgets = vec![("w1".into(), names(&["w"]))];
        assert_eq!(g.dependents(&[("W".into(), names(&["w"]))]), ["A", "U"]);
        // Another cell now defines x (ran last): U reads that one, which does not use w.
        g.record("X", "let x = 5.0;", analyze("let x = 5.0;"));
        assert_eq!(g.definer("x"), Some("X"));
        assert_eq!(g.dependents(&[("W".into(), names(&["w"]))]), ["A"]);
        // Deleting X gives x back to A, and U follows again.
        g.forget("X");
        assert_eq!(g.dependents(&[("W".into(), names(&["w"]))]), ["A", "U"]);
    }

    /// Names inside a `fn` are its own locals or other items, never notebook variables: a
    /// helper that happens to name a local `m` does not rerun when the variable `m` changes,
    /// but a cell whose items call another cell's `fn` follows that cell.
    #[test]
    fn items_depend_on_items_only() {
        let mut g = graph(&[
            ("W", "let w = slider(\"w\", 0.0, 10.0, 1.0);"),
            ("M", "let m = w.value();"),
            (
                "H",
                "fn helper(m: f64) -> f64 { let p = m * 2.0; scale(p) }",
            ),
            ("S", "fn scale(x: f64) -> f64 { x * 3.0 }"),
            ("U", "let shown = helper(1.0);"),
        ]);
        g.get_mut("W").unwrap().widgets = vec![("w1".into(), names(&["w"]))];
        assert_eq!(g.dependents(&[("W".into(), names(&["w"]))]), ["M"]);
        let parents = |g: &Graph, key: &str| {
            let syntax = g.get(key).unwrap().syntax.clone();
            g.definitions.parents_of(key, &syntax)
        };
        assert_eq!(parents(&g, "H"), names(&["S"]));
        assert_eq!(parents(&g, "U"), names(&["H"]));
        // A widget's cell that also declares an item: the cells whose items call it follow.
        let mut g = graph(&[
            ("W", "let w = slider(\"w\", 0.0, 10.0, 1.0);"),
            (
                "K",
                "let k = w.value();\nfn twice(x: f64) -> f64 { x * 2.0 }",
            ),
            ("T", "fn four(x: f64) -> f64 { twice(twice(x)) }"),
            ("V", "let v = four(k);"),
        ]);
        g.get_mut("W").unwrap().widgets = vec![("w1".into(), names(&["w"]))];
        assert_eq!(
            g.dependents(&[("W".into(), names(&["w"]))]),
            ["K", "T", "V"]
        );
    }

    #[test]
    fn forgetting_a_cell_drops_its_definitions() {
        let mut g = graph(&[
            ("w", "let s = slider(\"s\", 0.0, 1.0, 0.5);"),
            ("a", "let x = s.value();"),
        ]);
        assert_eq!(g.dependents(&[("w".into(), names(&["s"]))]), ["a"]);
        g.forget("a");
        assert!(g.dependents(&[("w".into(), names(&["s"]))]).is_empty());
        assert_eq!(g.definer("x"), None);
    }
}
