//! The dataflow graph of a notebook: which cell defines which names and which cells use them.
//!
//! Every executed cell is parsed with `syn` for the names it defines at its top level (`let`
//! patterns and items) and the names it refers to anywhere (paths, and identifiers inside
//! macro calls and their inline format arguments). A name's *definer* is the cell that most
//! recently ran a definition of it — the one whose value the runtime holds. When a widget
//! changes, [`Graph::dependents`] gives the cells to rerun: those that use the widget's
//! variable, then those that use what they define, and so on, in the order the cells were run;
//! never the widget's own cell, never a cell it depends on.
//!
//! The analysis is syntactic and errs on the side of rerunning: a local variable inside a
//! closure that shadows a notebook variable still counts as a use.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

use qplay::display::escape_html;

/// Prelude functions that create widget models, with how many top-level models each creates
/// (a form is a box plus its submit button). Layout and style models are not counted.
pub const WIDGET_CONSTRUCTORS: [(&str, usize); 12] = [
    ("slider", 1),
    ("int_slider", 1),
    ("dropdown", 1),
    ("checkbox", 1),
    ("button", 1),
    ("text", 1),
    ("progress", 1),
    ("hbox", 1),
    ("vbox", 1),
    ("output", 1),
    ("live", 1),
    ("form", 2),
];

/// What one cell defines and uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellSyntax {
    /// Names bound at the cell's top level: `let` patterns, `fn`, `struct`, `use`, ….
    pub defines: BTreeSet<String>,
    /// Names used anywhere in the cell.
    pub references: BTreeSet<String>,
    /// For each widget model the cell creates, in creation order, the names its statement
    /// binds (empty for a widget that is only displayed).
    pub widget_bindings: Vec<BTreeSet<String>>,
    /// Whether the cell parsed; if not, `references` holds every identifier.
    pub parsed: bool,
}

/// Parses a cell. evcxr's `:commands` lines are skipped.
pub fn analyze(code: &str) -> CellSyntax {
    let rust: String = code
        .lines()
        .map(|l| {
            if l.trim_start().starts_with(':') {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    match syn::parse_str::<syn::Block>(&format!("{{\n{rust}\n}}")) {
        Ok(block) => {
            let mut out = CellSyntax {
                parsed: true,
                ..Default::default()
            };
            for stmt in &block.stmts {
                let mut uses = Uses::default();
                let mut bound = BTreeSet::new();
                match stmt {
                    syn::Stmt::Local(local) => {
                        pattern_names(&local.pat, &mut bound);
                        if let Some(init) = &local.init {
                            uses.visit_expr(&init.expr);
                            if let Some((_, diverge)) = &init.diverge {
                                uses.visit_expr(diverge);
                            }
                        }
                    }
                    syn::Stmt::Item(item) => {
                        item_names(item, &mut bound);
                        uses.visit_item(item);
                    }
                    syn::Stmt::Expr(expr, _) => uses.visit_expr(expr),
                    syn::Stmt::Macro(m) => uses.visit_macro(&m.mac),
                }
                for _ in 0..uses.widgets {
                    out.widget_bindings.push(bound.clone());
                }
                out.defines.extend(bound);
                out.references.extend(uses.names);
            }
            out
        }
        Err(_) => {
            let mut names = BTreeSet::new();
            if let Ok(tokens) = rust.parse::<TokenStream>() {
                token_names(tokens, &mut names);
            }
            CellSyntax {
                references: names,
                ..Default::default()
            }
        }
    }
}

fn pattern_names(pat: &syn::Pat, out: &mut BTreeSet<String>) {
    struct Binds<'a>(&'a mut BTreeSet<String>);
    impl<'ast> Visit<'ast> for Binds<'_> {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0.insert(p.ident.to_string());
            syn::visit::visit_pat_ident(self, p);
        }
        // Paths in patterns (enum variants, constants) are not bindings.
        fn visit_path(&mut self, _: &'ast syn::Path) {}
    }
    Binds(out).visit_pat(pat);
}

fn item_names(item: &syn::Item, out: &mut BTreeSet<String>) {
    let ident = match item {
        syn::Item::Const(i) => Some(&i.ident),
        syn::Item::Enum(i) => Some(&i.ident),
        syn::Item::Fn(i) => Some(&i.sig.ident),
        syn::Item::Macro(i) => i.ident.as_ref(),
        syn::Item::Mod(i) => Some(&i.ident),
        syn::Item::Static(i) => Some(&i.ident),
        syn::Item::Struct(i) => Some(&i.ident),
        syn::Item::Trait(i) => Some(&i.ident),
        syn::Item::Type(i) => Some(&i.ident),
        syn::Item::Union(i) => Some(&i.ident),
        syn::Item::Use(u) => {
            use_names(&u.tree, out);
            None
        }
        _ => None,
    };
    if let Some(ident) = ident {
        out.insert(ident.to_string());
    }
}

fn use_names(tree: &syn::UseTree, out: &mut BTreeSet<String>) {
    match tree {
        syn::UseTree::Path(p) => use_names(&p.tree, out),
        syn::UseTree::Name(n) if n.ident != "self" => {
            out.insert(n.ident.to_string());
        }
        syn::UseTree::Rename(r) => {
            out.insert(r.rename.to_string());
        }
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_names(t, out)),
        _ => {}
    }
}

/// Collects used names and counts widget constructor calls.
#[derive(Default)]
struct Uses {
    names: BTreeSet<String>,
    widgets: usize,
}

impl<'ast> Visit<'ast> for Uses {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            if let Some(first) = path.segments.first() {
                self.names.insert(first.ident.to_string());
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        // Arguments are evaluated (and their widgets created) before the call itself.
        syn::visit::visit_expr_call(self, call);
        if let syn::Expr::Path(p) = &*call.func {
            if let Some(last) = p.path.segments.last() {
                if let Some((_, n)) = WIDGET_CONSTRUCTORS.iter().find(|(c, _)| last.ident == c) {
                    self.widgets += n;
                }
            }
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        syn::visit::visit_macro(self, mac);
        token_names(mac.tokens.clone(), &mut self.names);
    }
}

/// Identifiers in a token stream, and `{name}` arguments inside its string literals.
fn token_names(tokens: TokenStream, out: &mut BTreeSet<String>) {
    for token in tokens {
        match token {
            TokenTree::Ident(i) => {
                out.insert(i.to_string());
            }
            TokenTree::Group(g) => token_names(g.stream(), out),
            TokenTree::Literal(lit) => {
                let text = lit.to_string();
                if text.starts_with('"') || text.starts_with('r') {
                    format_arguments(&text, out);
                }
            }
            TokenTree::Punct(_) => {}
        }
    }
}

/// Inline format arguments: `"{acc:.2} {n}"` uses `acc` and `n`.
fn format_arguments(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if rest.starts_with('{') {
            rest = &rest[1..];
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
        {
            out.insert(name);
        }
    }
}

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
    cells: BTreeMap<String, Node>,
    clock: u64,
}

impl Graph {
    /// Records a run of `key` (replacing what the cell was before) and returns its node.
    pub fn record(&mut self, key: &str, code: &str, syntax: CellSyntax) -> &mut Node {
        self.clock += 1;
        let node = self.cells.entry(key.to_string()).or_default();
        node.code = code.to_string();
        node.syntax = syntax;
        node.ran_at = self.clock;
        node.widgets.clear();
        node
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
        self.cells.remove(key)
    }

    /// The cell whose value of `name` the runtime holds.
    pub fn definer(&self, name: &str) -> Option<&str> {
        self.cells
            .iter()
            .filter(|(_, n)| n.syntax.defines.contains(name))
            .max_by_key(|(_, n)| n.ran_at)
            .map(|(k, _)| k.as_str())
    }

    /// Cells that `key` uses, directly or through others.
    pub fn upstream(&self, key: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![key.to_string()];
        while let Some(k) = todo.pop() {
            let Some(node) = self.cells.get(&k) else {
                continue;
            };
            for name in &node.syntax.references {
                if let Some(d) = self.definer(name) {
                    if d != key && seen.insert(d.to_string()) {
                        todo.push(d.to_string());
                    }
                }
            }
        }
        seen
    }

    /// The cells to rerun when the values of `names` (defined by `source`) change, in run order.
    pub fn dependents(&self, source: &str, names: &BTreeSet<String>) -> Vec<String> {
        let upstream = self.upstream(source);
        let mut dirty: BTreeSet<String> = names
            .iter()
            .filter(|n| self.definer(n) == Some(source))
            .cloned()
            .collect();
        let mut chosen: BTreeSet<String> = BTreeSet::new();
        loop {
            let mut grew = false;
            for (key, node) in &self.cells {
                if key == source || upstream.contains(key) || chosen.contains(key) {
                    continue;
                }
                if node.syntax.references.iter().any(|r| dirty.contains(r)) {
                    chosen.insert(key.clone());
                    dirty.extend(
                        node.syntax
                            .defines
                            .iter()
                            .filter(|n| self.definer(n) == Some(key.as_str()))
                            .cloned(),
                    );
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        let mut order: Vec<String> = chosen.into_iter().collect();
        order.sort_by_key(|k| self.cells[k].ran_at);
        order
    }

    /// Whether a cell with these references would depend on a widget (directly or through
    /// other cells), so that its outputs must be replaceable in place.
    pub fn is_reactive(&self, key: &str, syntax: &CellSyntax) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = syntax
            .references
            .iter()
            .filter_map(|r| self.definer(r))
            .filter(|d| *d != key)
            .map(str::to_string)
            .collect();
        while let Some(k) = todo.pop() {
            if !seen.insert(k.clone()) {
                continue;
            }
            let Some(node) = self.cells.get(&k) else {
                continue;
            };
            if !node.widgets.is_empty() {
                return true;
            }
            todo.extend(
                node.syntax
                    .references
                    .iter()
                    .filter_map(|r| self.definer(r))
                    .filter(|d| *d != k && *d != key)
                    .map(str::to_string),
            );
        }
        false
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

    /// The graph as an HTML table and as text, for `:deps`.
    pub fn render(&self) -> (String, String) {
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
            let uses: Vec<String> = node
                .syntax
                .references
                .iter()
                .filter_map(|r| {
                    let d = self.definer(r)?;
                    (d != key.as_str()).then(|| format!("{r} (#{})", index[d]))
                })
                .collect();
            let defines: Vec<&str> = node.syntax.defines.iter().map(String::as_str).collect();
            let widgets: Vec<String> = node
                .widgets
                .iter()
                .filter(|(_, names)| !names.is_empty())
                .map(|(_, names)| names.iter().cloned().collect::<Vec<_>>().join("/"))
                .collect();
            let reactive = if self.is_reactive(key, &node.syntax) {
                "yes"
            } else {
                ""
            };
            html.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{reactive}</td></tr>",
                i + 1,
                escape_html(first_line.trim()),
                escape_html(&defines.join(", ")),
                escape_html(&uses.join(", ")),
                escape_html(&widgets.join(", ")),
            ));
            text.push_str(&format!(
                "#{} {}\n    defines: {}\n    uses: {}\n",
                i + 1,
                first_line.trim(),
                defines.join(", "),
                uses.join(", ")
            ));
        }
        html.push_str("</tbody></table>");
        if nodes.is_empty() {
            text.push_str("no cells have run yet\n");
        }
        (html, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_definitions_and_uses() {
        let s = analyze(
            ":dep foo = \"1\"\nlet (a, mut b) = (x + 1, y.len());\nfn f(v: f64) -> f64 { v * k }\n\
             use std::collections::{HashMap as Map, BTreeSet};\nprintln!(\"{acc:.2} {}\", z);",
        );
        assert!(s.parsed);
        assert_eq!(s.defines, names(&["a", "b", "f", "Map", "BTreeSet"]));
        for used in ["x", "y", "k", "acc", "z", "println"] {
            assert!(s.references.contains(used), "{used}");
        }
        assert!(!s.references.contains("len"));
    }

    #[test]
    fn maps_widget_constructors_to_their_bindings() {
        let s = analyze(
            "let scale = slider(\"s\", 0.0, 1.0, 0.5).step(0.1);\nlet zp = int_slider(\"z\", 0, 9, 0);\n\
             let f = form(&[&scale], \"Apply\");\nhbox(&[&scale, &zp])",
        );
        assert_eq!(
            s.widget_bindings,
            vec![
                names(&["scale"]),
                names(&["zp"]),
                names(&["f"]),
                names(&["f"]),
                names(&[])
            ]
        );
    }

    #[test]
    fn unparsable_cells_use_every_identifier() {
        let s = analyze("let x = ;\nfoo(bar)");
        assert!(!s.parsed);
        assert!(s.references.contains("bar"));
        assert!(s.defines.is_empty());
    }

    fn graph(cells: &[(&str, &str)]) -> Graph {
        let mut g = Graph::default();
        for (key, code) in cells {
            g.record(key, code, analyze(code));
        }
        g
    }

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
        assert_eq!(g.dependents("widgets", &names(&["s"])), ["a", "b"]);
        assert_eq!(g.dependents("widgets", &names(&["t"])), ["c"]);
        assert!(g.is_reactive("b", &g.get("b").unwrap().syntax.clone()));
        assert!(!g.is_reactive("d", &g.get("d").unwrap().syntax.clone()));
        assert!(!g.is_reactive("model", &g.get("model").unwrap().syntax.clone()));
        // A cell the widget cell uses never reruns, even if it also uses the widget.
        let mut g = graph(&[
            ("w", "let s = slider(\"s\", 0.0, 1.0, 0.5); let y = base;"),
            ("base", "let base = s.value();"),
        ]);
        g.get_mut("w").unwrap().widgets = vec![("w1".into(), names(&["s"]))];
        assert!(g.dependents("w", &names(&["s"])).is_empty());
    }

    #[test]
    fn forgetting_a_cell_drops_its_definitions() {
        let mut g = graph(&[
            ("w", "let s = slider(\"s\", 0.0, 1.0, 0.5);"),
            ("a", "let x = s.value();"),
        ]);
        assert_eq!(g.dependents("w", &names(&["s"])), ["a"]);
        g.forget("a");
        assert!(g.dependents("w", &names(&["s"])).is_empty());
        assert_eq!(g.definer("x"), None);
    }
}
