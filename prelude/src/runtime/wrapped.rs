//! Wrapped cells: a cell compiled once into a function of the notebook's variables, which the
//! kernel calls again when a widget it depends on changes — no compile, no new library.
//!
//! The kernel writes the wrapper (see its `wrap` module) and has evcxr compile and run it once,
//! as a cell that only registers it here with [`define`]. The function takes the cell's inputs
//! out of evcxr's variable store, runs the cell's code, shows its final value as evcxr would,
//! stores what the cell defines, and puts the inputs back (also after a panic, so nothing is
//! lost). The kernel asks for a call on the link ([`super::protocol::ToRuntime::Run`]); the
//! link's executor thread makes it, between evcxr's cells, so the store is not in use.
//!
//! The table of wrapped cells and the store's address live in a process slot, so every cell's
//! copy of this crate sees them. A function stays valid as long as the runtime process: evcxr
//! never unloads a cell's library.

use std::collections::HashMap;
use std::ffi::c_void;
use std::io::Write;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use super::protocol::Outcome;

/// A wrapped cell: given evcxr's variable store, runs the cell; false if it panicked.
pub type CellFn = fn(*mut c_void) -> bool;

#[derive(Default)]
struct Wrapped {
    store: AtomicPtr<c_void>,
    cells: Mutex<HashMap<String, CellFn>>,
    /// The message of the last panic [`guard`] caught.
    panic: Mutex<String>,
}

fn wrapped() -> &'static Wrapped {
    super::process::shared(super::process::Slot::Wrapped, Wrapped::default)
}

/// Registers `cell` as the wrapped form of the cell the kernel calls `key`, and the address of
/// evcxr's variable store (generated code calls this).
#[doc(hidden)]
pub fn define(key: &str, store: *mut c_void, cell: CellFn) {
    let w = wrapped();
    w.store.store(store, Ordering::Release);
    w.cells
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.to_string(), cell);
}

/// Runs a cell's body, catching a panic (its message has gone to stderr); true if it ran to
/// the end (generated code calls this).
#[doc(hidden)]
pub fn guard(body: impl FnOnce()) -> bool {
    let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) else {
        return true;
    };
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    *wrapped().panic.lock().unwrap_or_else(|e| e.into_inner()) = message;
    false
}

/// Flushes what the cell printed without a newline. Generated code calls it last, so that it
/// runs in the cell's own copy of `std`, whose buffer that is.
#[doc(hidden)]
pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// Calls wrapped cell `key` with the notebook's variables.
pub(crate) fn call(key: &str) -> Outcome {
    let w = wrapped();
    let cell = w
        .cells
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .copied();
    let store = w.store.load(Ordering::Acquire);
    let Some(cell) = cell.filter(|_| !store.is_null()) else {
        return Outcome::Unknown;
    };
    std::mem::take(&mut *w.panic.lock().unwrap_or_else(|e| e.into_inner()));
    match std::panic::catch_unwind(|| cell(store)) {
        Ok(true) => Outcome::Ok,
        Ok(false) | Err(_) => Outcome::Panicked {
            message: std::mem::take(&mut *w.panic.lock().unwrap_or_else(|e| e.into_inner())),
        },
    }
}
