//! Reactivity: the notebook's dataflow graph, and the reruns it drives when a widget changes.
//!
//! - [`syntax`] parses one cell: the names it defines and uses, its widget constructors.
//! - [`definitions`] indexes names → the cells defining and using them; a name's *definer* is
//!   the cell that ran a definition of it last (whose value the runtime holds).
//! - [`topology`] keeps the edges (a child uses a name its parent is the definer of) and gives
//!   ancestors, descendants and a topological order.
//! - [`graph`] records the cells as they run and answers which cells rerun, and in what order;
//!   [`picture`] draws it for `:deps`.
//! - [`check`] finds, before anything runs, what reruns cannot follow (`qplay check`).
//! - [`wrap`] turns a reactive cell into a function the runtime calls again on every change.
//! - [`scheduler`] runs the user's cells, records them, and reruns the dependents of a changed
//!   widget, wrapped or compiled.

pub mod check;
pub mod definitions;
pub mod graph;
pub mod picture;
pub mod scheduler;
pub mod syntax;
pub mod topology;
pub mod wrap;

pub use graph::{Graph, Node};
pub use scheduler::Scheduler;
pub use syntax::{analyze, CellSyntax};

/// For tests: a set of names.
#[cfg(test)]
pub fn names(list: &[&str]) -> std::collections::BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}
