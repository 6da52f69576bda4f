//! Wrapped cells: a reactive cell compiled once into a function of its inputs, which the runtime
//! calls again on every widget change — no evcxr compile, no new library (Pluto.jl's
//! function-wrapped cells; Observable's cells as definitions over named inputs).
//!
//! A cell is wrapped after it has run once the ordinary way, when evcxr knows the type of every
//! variable it reads and defines. Its *signature* is its code, those variables with their types,
//! the runtime process and the epoch of items it was compiled against (see
//! [`Wrappers::ran_by_hand`]). The kernel
//! writes a function (see [`registration`]) that
//! - takes the cell's inputs (the notebook variables it uses and does not define) out of
//!   evcxr's variable store, with their types,
//! - runs the cell's statements, shows its final expression as evcxr does (`evcxr_display`),
//!   and stores every variable it defines,
//! - puts the inputs back, also after a panic, so that assignments to them persist and nothing
//!   is lost,
//!
//! and has evcxr compile one cell that registers it in the runtime
//! (`qplay::runtime::wrapped::define`).
//! Several cells are registered by one compile. A widget change then calls the functions in
//! dataflow order; a cell whose signature no longer holds (its code, a variable's type, the
//! runtime or the items changed) is wrapped again, and a cell that cannot be wrapped reruns
//! compiled, as before, with the reason shown by `:deps`.

use std::collections::BTreeMap;

use super::{CellSyntax, Node};

/// What a wrapper was compiled for; it is used only while all of it still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub code: String,
    /// Variables taken from the store and put back: (name, type).
    pub inputs: Vec<(String, String)>,
    /// Variables the cell defines: (name, type).
    pub outputs: Vec<(String, String)>,
    /// The runtime process (`Engine::generation`).
    pub generation: u64,
    pub epoch: u64,
}

#[derive(Debug, Clone)]
enum State {
    Wrapped {
        signature: Signature,
        calls: u64,
    },
    /// Cannot be wrapped with this code in this epoch.
    Unwrappable {
        code: String,
        epoch: u64,
        reason: String,
    },
}

/// The kernel's record of which cells are wrapped.
#[derive(Debug, Default)]
pub struct Wrappers {
    cells: BTreeMap<String, State>,
    epoch: u64,
    /// `QPLAY_WRAP=0`: every rerun compiles (the reference of `qplay bench reactive`).
    off: bool,
}

/// Environment variable that turns wrapping off when set to `0`.
pub const WRAP_ENV: &str = "QPLAY_WRAP";

impl Wrappers {
    /// Wrapping on, unless [`WRAP_ENV`] is `0`.
    pub fn from_env() -> Wrappers {
        Wrappers {
            off: std::env::var(WRAP_ENV).is_ok_and(|v| v == "0"),
            ..Default::default()
        }
    }

    /// A cell ran by hand. One that declares items or runs evcxr commands changes what every
    /// wrapper was compiled against (a type may have been redefined): all are wrapped anew.
    pub fn ran_by_hand(&mut self, syntax: &CellSyntax) {
        if !syntax.items.is_empty() || syntax.commands {
            self.epoch += 1;
        }
    }

    /// Forgets a deleted cell.
    pub fn forget(&mut self, key: &str) {
        self.cells.remove(key);
    }

    /// The signature cell `key` would be wrapped with now, or why it cannot be wrapped.
    pub fn plan(
        &self,
        node: &Node,
        variables: &BTreeMap<String, String>,
        generation: u64,
    ) -> Result<Signature, String> {
        if self.off {
            return Err(format!("wrapping is off ({WRAP_ENV}=0)"));
        }
        if let Some(obstacle) = node.syntax.wrap_obstacle() {
            return Err(obstacle);
        }
        let typed = |name: &String| -> Result<(String, String), String> {
            let ty = variables
                .get(name)
                .ok_or_else(|| format!("evcxr keeps no value of `{name}`"))?;
            if ty.contains("impl ") || ty.contains('{') {
                return Err(format!("the type of `{name}` ({ty}) cannot be named"));
            }
            Ok((name.clone(), ty.clone()))
        };
        let outputs = node
            .syntax
            .defines
            .iter()
            .map(typed)
            .collect::<Result<Vec<_>, _>>()?;
        let inputs: Vec<(String, String)> = node
            .syntax
            .references
            .difference(&node.syntax.defines)
            .filter(|name| variables.contains_key(*name))
            .map(typed)
            .collect::<Result<_, _>>()?;
        Ok(Signature {
            code: node.code.clone(),
            inputs,
            outputs,
            generation,
            epoch: self.epoch,
        })
    }

    /// Whether the runtime holds a wrapper of `key` compiled for exactly `signature`.
    pub fn is_current(&self, key: &str, signature: &Signature) -> bool {
        matches!(self.cells.get(key), Some(State::Wrapped { signature: s, .. }) if s == signature)
    }

    /// Why `key` with this code cannot be wrapped, if that was found out in this epoch.
    pub fn known_obstacle(&self, key: &str, code: &str) -> Option<&str> {
        match self.cells.get(key) {
            Some(State::Unwrappable {
                code: c,
                epoch,
                reason,
            }) if c == code && *epoch == self.epoch => Some(reason),
            _ => None,
        }
    }

    pub fn wrapped(&mut self, key: &str, signature: Signature) {
        self.cells.insert(
            key.to_string(),
            State::Wrapped {
                signature,
                calls: 0,
            },
        );
    }

    pub fn unwrappable(&mut self, key: &str, code: &str, reason: String) {
        self.cells.insert(
            key.to_string(),
            State::Unwrappable {
                code: code.to_string(),
                epoch: self.epoch,
                reason,
            },
        );
    }

    /// The runtime no longer holds `key`'s wrapper.
    pub fn invalidate(&mut self, key: &str) {
        if matches!(self.cells.get(key), Some(State::Wrapped { .. })) {
            self.cells.remove(key);
        }
    }

    /// Counts a call of `key`'s wrapper.
    pub fn called(&mut self, key: &str) {
        if let Some(State::Wrapped { calls, .. }) = self.cells.get_mut(key) {
            *calls += 1;
        }
    }

    /// How cell `key` (with `code`) reruns, for `:deps`.
    pub fn describe(&self, key: &str, code: &str) -> String {
        match self.cells.get(key) {
            Some(State::Wrapped { signature, calls }) if signature.code == code => {
                format!("wrapped, called {calls} time(s) without compiling")
            }
            Some(State::Unwrappable {
                code: c, reason, ..
            }) if c == code => {
                format!("compiled: {reason}")
            }
            _ => "compiled until it is wrapped (when the kernel is idle or at the next change)"
                .into(),
        }
    }
}

/// The source of one evcxr cell that registers the wrappers of `cells` (key, syntax,
/// signature) in the runtime. It defines no variables and no items; the functions are nested
/// in a block, and find evcxr's variable store through the generated function's local
/// `evcxr_variable_store`, whose address stays the same for the runtime's life.
pub fn registration(cells: &[(&str, &CellSyntax, &Signature)]) -> String {
    let mut out = String::from(
        "{\nlet __qplay_store = &mut *evcxr_variable_store as *mut _ as *mut ::std::ffi::c_void;\n",
    );
    for (key, syntax, signature) in cells {
        out.push_str(&format!(
            "::qplay::runtime::wrapped::define({key:?}, __qplay_store, {{\n{}\n__qplay_cell\n}});\n",
            function(syntax, signature)
        ));
    }
    out.push('}');
    out
}

/// The wrapped function of one cell.
fn function(syntax: &CellSyntax, signature: &Signature) -> String {
    let mut f = String::from(
        "#[allow(unused_mut, unused_variables, unused_assignments, unused_parens, \
         unreachable_code, clippy::all)]\n\
         fn __qplay_cell(__qplay_store: *mut ::std::ffi::c_void) -> bool {\n\
         // SAFETY: evcxr's variable store; the kernel calls this only between evcxr's cells.\n\
         let __qplay_store = unsafe { &mut *(__qplay_store as *mut \
         crate::evcxr_internal_runtime::VariableStore) };\n",
    );
    for (name, ty) in &signature.inputs {
        f.push_str(&format!(
            "let mut {name} = __qplay_store.take_variable::<{ty}>(stringify!({name}));\n"
        ));
    }
    f.push_str("let __qplay_ok = ::qplay::runtime::wrapped::guard(|| {\n");
    f.push_str(&syntax.body);
    if let Some(tail) = &syntax.tail {
        f.push_str(&format!("({tail}).evcxr_display();\n"));
    }
    for (name, ty) in &signature.outputs {
        f.push_str(&format!(
            "__qplay_store.put_variable::<{ty}>(stringify!({name}), {name});\n"
        ));
    }
    f.push_str("});\n");
    for (name, ty) in &signature.inputs {
        f.push_str(&format!(
            "__qplay_store.put_variable::<{ty}>(stringify!({name}), {name});\n"
        ));
    }
    f.push_str("::qplay::runtime::wrapped::flush();\n__qplay_ok\n}\n");
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactive::analyze;

    fn node(code: &str) -> Node {
        Node {
            code: code.into(),
            syntax: analyze(code),
            ..Default::default()
        }
    }

    fn vars(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn a_plan_takes_inputs_and_stores_outputs_with_their_types() {
        let w = Wrappers::default();
        let code =
            "if reset.clicks() > seen { seen = reset.clicks(); }\nlet z = w.value() + 1.0;\nz";
        let variables = vars(&[
            ("w", "FloatSlider"),
            ("z", "f64"),
            ("seen", "u64"),
            ("reset", "Button"),
            ("unrelated", "i32"),
        ]);
        let plan = w.plan(&node(code), &variables, 3).unwrap();
        let names =
            |v: &Vec<(String, String)>| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&plan.inputs), ["reset", "seen", "w"]);
        assert_eq!(plan.outputs, [("z".to_string(), "f64".to_string())]);
        let source = registration(&[("cell-1", &analyze(code), &plan)]);
        for part in [
            "take_variable::<u64>(stringify!(seen))",
            "put_variable::<f64>(stringify!(z), z)",
            "put_variable::<u64>(stringify!(seen), seen)",
            "(z).evcxr_display();",
            "::qplay::runtime::wrapped::define(\"cell-1\"",
        ] {
            assert!(source.contains(part), "{part} missing in\n{source}");
        }
        // Inputs go back after the guarded body, outputs inside it.
        let body_end = source
            .find("});\n__qplay_store.put_variable::<Button>")
            .unwrap();
        assert!(source.find("put_variable::<f64>").unwrap() < body_end);
    }

    #[test]
    fn what_cannot_be_wrapped_says_why() {
        let w = Wrappers::default();
        let variables = vars(&[("w", "FloatSlider"), ("f", "impl Fn()")]);
        let err = w.plan(&node("let f = || 1;"), &variables, 0).unwrap_err();
        assert!(err.contains("cannot be named"), "{err}");
        let err = w
            .plan(&node("let q = w.value();"), &variables, 0)
            .unwrap_err();
        assert!(err.contains("no value of `q`"), "{err}");
        let err = w
            .plan(&node("struct S;\nlet q = w.value();"), &variables, 0)
            .unwrap_err();
        assert!(err.contains("items"), "{err}");
    }

    #[test]
    fn signatures_go_stale() {
        let mut w = Wrappers::default();
        let variables = vars(&[("w", "FloatSlider"), ("z", "f64")]);
        let n = node("let z = w.value();");
        let plan = w.plan(&n, &variables, 0).unwrap();
        w.wrapped("c", plan.clone());
        assert!(w.is_current("c", &plan));
        // A redefined variable type, a new runtime, new items: no longer current.
        let retyped = vars(&[("w", "IntSlider"), ("z", "f64")]);
        assert!(!w.is_current("c", &w.plan(&n, &retyped, 0).unwrap()));
        assert!(!w.is_current("c", &w.plan(&n, &variables, 1).unwrap()));
        w.ran_by_hand(&analyze("fn helper() {}"));
        assert!(!w.is_current("c", &w.plan(&n, &variables, 0).unwrap()));
        assert!(w.describe("c", "let z = w.value();").starts_with("wrapped"));
    }
}
