//! Cooperative interrupts: long operations stop early when the user interrupts the kernel.
//!
//! On `interrupt_request` the kernel raises a flag that the runtime process can read, then gives
//! the running cell a grace period to return before it falls back to restarting the runtime
//! (losing its variables). Every long operation of the prelude — evaluation, capture, SQNR,
//! sensitivity and parameter sweeps — calls [`check`] between batches and returns an
//! [`Interrupted`] error, so the cell ends at once and the session (models, data, versions,
//! widgets) survives. A user's own loop does the same with one call:
//!
//! ```no_run
//! # use qplay::prelude::*;
//! # fn main() -> anyhow::Result<()> {
//! for step in 0..1_000_000 {
//!     check_interrupt()?;
//!     // … work …
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The kernel also raises the flag when a newer widget value arrives while cells rerun for an
//! older one, so that the stale chain stops early.
//!
//! Where the flag lives: the kernel maps a small file of its build slot into memory and writes
//! the flag there; the runtime executable maps the same file and exports the address under
//! [`FLAG_SYMBOL`] (`AtomicPtr<AtomicU32>`), which every cell's copy of this crate finds with
//! `dlsym`, as [`crate::runtime::process`] does. Without it (qplay used as a plain library) a flag of
//! this process serves, set by [`request`].

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::OnceLock;

/// Name of the executable's exported pointer to the shared flag.
pub const FLAG_SYMBOL: &str = "QPLAY_INTERRUPT";

/// Environment variable naming the file that holds the flag (set by the kernel for the
/// runtime).
pub const FLAG_FILE_ENV: &str = "QPLAY_INTERRUPT_FILE";

/// The error long operations return when the user interrupted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted (Kernel ▸ Interrupt, or a newer widget value)")
    }
}

impl std::error::Error for Interrupted {}

static LOCAL: AtomicU32 = AtomicU32::new(0);

fn flag() -> &'static AtomicU32 {
    static FOUND: OnceLock<usize> = OnceLock::new();
    let address = *FOUND.get_or_init(|| {
        let name = std::ffi::CString::new(FLAG_SYMBOL).expect("no NUL in symbol name");
        // SAFETY: dlsym with RTLD_DEFAULT and a valid C string only looks a symbol up.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
    });
    if address != 0 {
        // SAFETY: the executable defines the symbol as an `AtomicPtr<AtomicU32>` that lives for
        // the process; what it points to (a shared mapping) is never unmapped.
        let shared = unsafe { &*(address as *const AtomicPtr<AtomicU32>) };
        let word = shared.load(Ordering::Acquire);
        if !word.is_null() {
            // SAFETY: see above.
            return unsafe { &*word };
        }
    }
    &LOCAL
}

/// Whether the user asked to stop.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed) != 0
}

/// `Err(Interrupted)` once the user asked to stop: call it in long loops and return the error.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Raises the flag (what the kernel does on an interrupt; for tests and plain-library use).
pub fn request() {
    flag().store(1, Ordering::Relaxed);
}

/// Lowers the flag.
pub fn clear() {
    flag().store(0, Ordering::Relaxed);
}

/// Whether `error` (or what caused it) is an [`Interrupted`].
pub fn is_interrupted(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Interrupted>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_stops_and_clears() {
        clear();
        assert!(check().is_ok());
        request();
        let e = anyhow::Error::from(check().unwrap_err()).context("evaluating");
        assert!(is_interrupted(&e));
        assert!(e.root_cause().to_string().contains("interrupted"));
        clear();
        assert!(!requested());
    }
}
