//! Which cells define each name, and which cells use it.
//!
//! A name may be defined by several cells; its *definer* is the one that ran a definition of
//! it last, whose value the runtime holds. Names used inside items count only where their
//! definer defines them as an item: an item cannot read a variable.

use std::collections::{BTreeMap, BTreeSet};

use super::syntax::CellSyntax;

#[derive(Debug, Default)]
pub struct Definitions {
    /// name → the cells that define it → when each last ran, and whether as an item.
    definers: BTreeMap<String, BTreeMap<String, (u64, bool)>>,
    /// name → the cells that use it outside items.
    users: BTreeMap<String, BTreeSet<String>>,
    /// name → the cells that use it inside items.
    item_users: BTreeMap<String, BTreeSet<String>>,
}

fn link(map: &mut BTreeMap<String, BTreeSet<String>>, names: &BTreeSet<String>, key: &str) {
    for name in names {
        map.entry(name.clone()).or_default().insert(key.to_string());
    }
}

fn unlink(map: &mut BTreeMap<String, BTreeSet<String>>, names: &BTreeSet<String>, key: &str) {
    for name in names {
        if let Some(cells) = map.get_mut(name) {
            cells.remove(key);
            if cells.is_empty() {
                map.remove(name);
            }
        }
    }
}

impl Definitions {
    /// Adds what cell `key` (run at `ran_at`) defines and uses.
    pub fn add(&mut self, key: &str, syntax: &CellSyntax, ran_at: u64) {
        for name in &syntax.defines {
            let item = syntax.item_defines.contains(name);
            self.definers
                .entry(name.clone())
                .or_default()
                .insert(key.to_string(), (ran_at, item));
        }
        link(&mut self.users, &syntax.references, key);
        link(&mut self.item_users, &syntax.item_references, key);
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
        unlink(&mut self.users, &syntax.references, key);
        unlink(&mut self.item_users, &syntax.item_references, key);
    }

    /// The cell whose value of `name` the runtime holds, and whether it defines it as an item.
    fn latest(&self, name: &str) -> Option<(&str, bool)> {
        self.definers
            .get(name)?
            .iter()
            .max_by_key(|(_, (ran_at, _))| *ran_at)
            .map(|(key, (_, item))| (key.as_str(), *item))
    }

    /// The cell whose value of `name` the runtime holds.
    pub fn definer(&self, name: &str) -> Option<&str> {
        self.latest(name).map(|(key, _)| key)
    }

    /// The cells that use `name` outside items (where it can be a variable).
    pub fn users(&self, name: &str) -> impl Iterator<Item = &str> {
        self.users
            .get(name)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The cells that use `name` anywhere, inside items too.
    pub fn all_users(&self, name: &str) -> impl Iterator<Item = &str> {
        self.users(name).chain(
            self.item_users
                .get(name)
                .into_iter()
                .flatten()
                .map(String::as_str),
        )
    }

    /// The names `syntax` (of cell `key`) reads from other cells, each with the cell it reads
    /// it from: the definers of the names it uses, and of the items its items use.
    pub fn sources(&self, key: &str, syntax: &CellSyntax) -> BTreeMap<String, String> {
        let values = syntax
            .references
            .iter()
            .filter_map(|name| Some((name, self.definer(name)?)));
        let items = syntax.item_references.iter().filter_map(|name| {
            let (definer, item) = self.latest(name)?;
            item.then_some((name, definer))
        });
        values
            .chain(items)
            .filter(|(_, definer)| *definer != key)
            .map(|(name, definer)| (name.clone(), definer.to_string()))
            .collect()
    }

    /// The cells that `syntax` (of cell `key`) reads values or items from.
    pub fn parents_of(&self, key: &str, syntax: &CellSyntax) -> BTreeSet<String> {
        self.sources(key, syntax).into_values().collect()
    }
}
