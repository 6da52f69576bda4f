//! Which cells define each name, and which cells use it.
//!
//! A name may be defined by several cells; its *definer* is the one that ran a definition of
//! it last, whose value the runtime holds.

use std::collections::{BTreeMap, BTreeSet};

use super::syntax::CellSyntax;

#[derive(Debug, Default)]
pub struct Definitions {
    /// name → the cells that define it → when each last ran.
    definers: BTreeMap<String, BTreeMap<String, u64>>,
    /// name → the cells that use it.
    users: BTreeMap<String, BTreeSet<String>>,
}

impl Definitions {
    /// Adds what cell `key` (run at `ran_at`) defines and uses.
    pub fn add(&mut self, key: &str, syntax: &CellSyntax, ran_at: u64) {
        for name in &syntax.defines {
            self.definers
                .entry(name.clone())
                .or_default()
                .insert(key.to_string(), ran_at);
        }
        for name in &syntax.references {
            self.users
                .entry(name.clone())
                .or_default()
                .insert(key.to_string());
        }
    }

    /// Removes what `add` added for `key` with this syntax.
    pub fn remove(&mut self, key: &str, syntax: &CellSyntax) {
        for name in &syntax.defines {
            if let Some(cells) = self.definers.get_mut(name) {
                cells.remove(key);
                if cells.is_empty() {
                    self.definers.remove(name);
                }
            }
        }
        for name in &syntax.references {
            if let Some(cells) = self.users.get_mut(name) {
                cells.remove(key);
                if cells.is_empty() {
                    self.users.remove(name);
                }
            }
        }
    }

    /// The cell whose value of `name` the runtime holds.
    pub fn definer(&self, name: &str) -> Option<&str> {
        self.definers
            .get(name)?
            .iter()
            .max_by_key(|(_, ran_at)| **ran_at)
            .map(|(key, _)| key.as_str())
    }

    /// The cells that use `name`.
    pub fn users(&self, name: &str) -> impl Iterator<Item = &str> {
        self.users
            .get(name)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The cells that `syntax` (of cell `key`) reads values from: the definers of the names it
    /// uses, other than itself.
    pub fn parents_of(&self, key: &str, syntax: &CellSyntax) -> BTreeSet<String> {
        syntax
            .references
            .iter()
            .filter_map(|name| self.definer(name))
            .filter(|definer| *definer != key)
            .map(str::to_string)
            .collect()
    }
}
