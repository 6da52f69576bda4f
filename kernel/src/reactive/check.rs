//! Static checks of a notebook's dataflow (`qplay check`): what reactive reruns cannot follow,
//! found before anything runs. The code cells are recorded into a [`Graph`] in document order,
//! as Run All runs them; then:
//!
//! - **error**: cells in a cycle (each reads a name another of them defines). A Run All from
//!   the top cannot give all of them their inputs, and a rerun has no order to follow.
//! - **warning**: a name defined by several cells, where some reader sits between two
//!   definitions (or reads the name and redefines it): a Run All gives it the definition just
//!   above it, a rerun the one that ran last.
//! - **warning**: a cell that changes another cell's variable (assigns it, `x = …`, `x += …`,
//!   or takes `&mut x`). The graph follows definitions (`let`, items), not changes: the readers
//!   of the variable do not rerun when the cell changes it, and the cell reruns from the value
//!   its last run left, not from the defining cell's. A change through a method (`x.push(…)` on
//!   another cell's `let mut x`) is not seen: without types, a method that changes its receiver
//!   looks like one that reads it.
//! - **warning**: a cell that reads a name only a later cell defines (a Run All stops there).
//!
//! A cell reads the names it uses before binding them itself (`free_references`; a cell that
//! pushes to its own `let mut rows` does not read another cell's `rows`). The analysis is
//! syntactic ([`super::syntax`]): a closure's parameter named like a notebook variable counts
//! as a use of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{analyze, Graph};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, about the cells numbered in `cells` (1-based, among code cells).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub cells: Vec<usize>,
    pub message: String,
}

/// Checks the code cells of a notebook, given in document order; findings errors first, then
/// by cell.
pub fn check(cells: &[&str]) -> Vec<Finding> {
    let keys: Vec<String> = (1..=cells.len()).map(|n| n.to_string()).collect();
    let mut graph = Graph::default();
    for (key, code) in keys.iter().zip(cells) {
        let mut syntax = analyze(code);
        syntax.references = std::mem::take(&mut syntax.free_references);
        graph.record(key, code, syntax);
    }
    let mut found = cycles(&graph, &keys);
    found.extend(redefinitions(&graph, &keys));
    found.extend(changes_and_reads_ahead(&graph, &keys));
    found.sort_by(|a, b| (a.severity, &a.cells).cmp(&(b.severity, &b.cells)));
    found
}

fn list(cells: impl IntoIterator<Item = usize>) -> String {
    let cells: Vec<String> = cells.into_iter().map(|c| c.to_string()).collect();
    match cells.len() {
        0 => String::new(),
        1 => format!("cell {}", cells[0]),
        _ => format!("cells {}", cells.join(", ")),
    }
}

/// Strongly connected groups of two or more cells, each reported once with its edges.
fn cycles(graph: &Graph, keys: &[String]) -> Vec<Finding> {
    let number = |key: &str| key.parse::<usize>().expect("keys are cell numbers");
    let none = BTreeSet::new();
    let reach: BTreeMap<&str, BTreeSet<String>> = keys
        .iter()
        .map(|k| (k.as_str(), graph.topology.descendants([k.as_str()], &none)))
        .collect();
    let mut reported = BTreeSet::new();
    let mut found = Vec::new();
    for key in keys {
        if reported.contains(key) || !reach[key.as_str()].contains(key) {
            continue;
        }
        let group: BTreeSet<&str> = reach[key.as_str()]
            .iter()
            .map(String::as_str)
            .filter(|other| reach[*other].contains(key))
            .collect();
        let mut edges = Vec::new();
        for member in &group {
            let node = graph.get(member).expect("recorded");
            for (name, from) in graph.definitions.sources(member, &node.syntax) {
                if group.contains(from.as_str()) {
                    edges.push(format!(
                        "cell {} reads `{name}` from cell {}",
                        number(member),
                        number(&from)
                    ));
                }
            }
        }
        let mut cells: Vec<usize> = group.iter().map(|k| number(k)).collect();
        cells.sort_unstable();
        reported.extend(group.iter().map(|k| k.to_string()));
        found.push(Finding {
            severity: Severity::Error,
            message: format!(
                "{} form a cycle ({}): a Run All cannot give each its inputs, and a rerun has \
                 no order to follow; define each name in one cell that the others come after",
                list(cells.iter().copied()),
                edges.join("; ")
            ),
            cells,
        });
    }
    found
}

/// The cell whose definition of `name` a Run All gives cell `at` (indexes into `keys`): the
/// nearest earlier cell defining it (`None`: no earlier one).
fn run_all_definer(graph: &Graph, keys: &[String], at: usize, name: &str) -> Option<usize> {
    (0..at).rev().find(|&i| {
        graph
            .get(&keys[i])
            .is_some_and(|n| n.syntax.defines.contains(name))
    })
}

fn redefinitions(graph: &Graph, keys: &[String]) -> Vec<Finding> {
    let mut definers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        for name in &graph.get(key).expect("recorded").syntax.defines {
            definers.entry(name).or_default().push(i);
        }
    }
    let mut found = Vec::new();
    for (name, at) in definers.into_iter().filter(|(_, at)| at.len() > 1) {
        let last = *at.last().expect("two or more");
        let mut misled = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let node = graph.get(key).expect("recorded");
            if !node.syntax.references.contains(name) {
                continue;
            }
            // Misled: a Run All gives it another definition than the last one (a reader before
            // the last definition, or the last definer reading the one before its own).
            if let Some(d) = run_all_definer(graph, keys, i, name).filter(|&d| d != last) {
                misled.push((i, d));
            }
        }
        if misled.is_empty() {
            continue;
        }
        let readers: Vec<String> = misled
            .iter()
            .map(|&(i, d)| format!("cell {} reads cell {}'s", i + 1, d + 1))
            .collect();
        let mut cells: Vec<usize> = at.iter().map(|i| i + 1).collect();
        cells.extend(misled.iter().map(|(i, _)| i + 1));
        cells.sort_unstable();
        cells.dedup();
        found.push(Finding {
            severity: Severity::Warning,
            message: format!(
                "`{name}` is defined by {}; in a Run All {}, but on a rerun every reader gets \
                 the value of cell {} (the last to run it); give each definition its own name",
                list(at.iter().map(|i| i + 1)),
                readers.join(", "),
                last + 1
            ),
            cells,
        });
    }
    found
}

/// Per cell: assignments to another cell's variable, and reads of names only a later cell
/// defines.
fn changes_and_reads_ahead(graph: &Graph, keys: &[String]) -> Vec<Finding> {
    let mut found = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let syntax = &graph.get(key).expect("recorded").syntax;
        let (cell, earlier) = (i + 1, |name: &str| run_all_definer(graph, keys, i, name));
        for name in syntax.assigns.difference(&syntax.defines) {
            if let Some(d) = earlier(name) {
                found.push(Finding {
                    severity: Severity::Warning,
                    message: format!(
                        "cell {cell} changes `{name}`, which cell {} defines: reruns follow \
                         definitions, not changes, so the cells reading `{name}` do not rerun \
                         when cell {cell} changes it, and cell {cell} reruns from the value its \
                         last run left",
                        d + 1
                    ),
                    cells: vec![d + 1, cell],
                });
            }
        }
        for name in syntax.references.difference(&syntax.defines) {
            if earlier(name).is_some() {
                continue;
            }
            let later = (i + 1..keys.len()).find(|&j| {
                graph
                    .get(&keys[j])
                    .is_some_and(|n| n.syntax.defines.contains(name))
            });
            if let Some(j) = later {
                found.push(Finding {
                    severity: Severity::Warning,
                    message: format!(
                        "cell {cell} reads `{name}`, which only a later cell ({}) defines: a \
                         Run All stops at cell {cell}",
                        j + 1
                    ),
                    cells: vec![cell, j + 1],
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_and_warnings(found: &[Finding]) -> (usize, usize) {
        let errors = found
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        (errors, found.len() - errors)
    }

    #[test]
    fn a_clean_chain_has_no_findings() {
        let found = check(&[
            "let s = slider(\"s\", 0.0, 1.0, 0.5);",
            "let x = s.value() * 2.0;",
            "let mut total = 0.0;\ntotal += x;\ntotal",
            "println!(\"{x} {total}\");",
        ]);
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn a_cycle_is_an_error_naming_its_cells_and_names() {
        let found = check(&["let a = b + 1;", "let unrelated = 3;", "let b = a * 2;"]);
        assert_eq!(errors_and_warnings(&found).0, 1, "{found:#?}");
        let cycle = &found[0];
        assert_eq!(cycle.cells, [1, 3]);
        assert!(
            cycle.message.contains("cell 1 reads `b` from cell 3"),
            "{}",
            cycle.message
        );
        assert!(
            cycle.message.contains("cell 3 reads `a` from cell 1"),
            "{}",
            cycle.message
        );
        // The read ahead that makes it is also named.
        assert!(found
            .iter()
            .any(|f| f.message.contains("only a later cell (3)")));
    }

    #[test]
    fn a_redefinition_says_which_value_each_reader_gets() {
        let found = check(&["let v = 1;", "let w = v + 1;", "let v = 10;", "let z = v;"]);
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(
            (f.severity, f.cells.clone()),
            (Severity::Warning, vec![1, 2, 3])
        );
        assert!(f.message.contains("cell 2 reads cell 1's"), "{}", f.message);
        assert!(f.message.contains("value of cell 3"), "{}", f.message);
        // Readers only after the last definition are not misled: no finding.
        assert!(check(&["let v = 1;", "let v = 10;", "let z = v;"]).is_empty());
        // A cell that reads and redefines a name reruns from its own last value.
        let found = check(&["let n = 1;", "let n = n + 1;"]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].message.contains("cell 2 reads cell 1's"),
            "{}",
            found[0].message
        );
        // A cell that uses only what it bound itself reads nobody's `rows`: its redefinition
        // misleads only the reader between the two.
        let own = "let mut rows = Vec::new();\nrows.push(1);";
        assert!(check(&[own, own]).is_empty());
        let found = check(&[own, "let z = rows.len();", own]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0]
            .message
            .contains("in a Run All cell 2 reads cell 1's,"));
    }

    #[test]
    fn changing_another_cells_variable_is_a_warning() {
        let found = check(&[
            "let mut seen = 0u64;\nlet mut log = vec![0];",
            "seen = 3;",
            "log[0] += 1;",
            "let n = log.len();",
            "let r = &mut seen;",
        ]);
        let cells: Vec<Vec<usize>> = found.iter().map(|f| f.cells.clone()).collect();
        assert_eq!(cells, [vec![1, 2], vec![1, 3], vec![1, 5]], "{found:#?}");
        assert!(found[0]
            .message
            .contains("cell 2 changes `seen`, which cell 1 defines"));
        // Its own variables: nothing.
        assert_eq!(
            errors_and_warnings(&check(&["let mut a = 1; a += 1;", "let b = a;"])),
            (0, 0)
        );
    }
}
