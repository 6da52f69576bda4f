//! State shared by every copy of this crate inside one process.
//!
//! In the kernel's evcxr runtime, the notebook cells link this crate as a dylib
//! (`libqplay.so`), while the runtime executable, `qplay` itself, links its own static copy; a
//! `static` therefore exists twice, and a model registry per copy would load models twice. The
//! executable exports an array of pointer slots under [`SLOTS_SYMBOL`]; every copy of the crate
//! finds it with `dlsym` and keeps its process-wide state there. Where no such symbol exists
//! (qplay used as an ordinary library), a static of this copy serves instead.
//!
//! All copies that share a slot are compiled from the same source of this crate (the
//! executable's and the build slot's), so they agree on the layout of what the slot points to.

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

/// Name of the exported slot array (`[AtomicPtr<c_void>; SLOT_COUNT]`).
pub const SLOTS_SYMBOL: &str = "QPLAY_PROCESS_SLOTS";

/// Number of slots the executable exports.
pub const SLOT_COUNT: usize = 8;

/// What each slot holds.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Slot {
    /// The model registry.
    Registry = 0,
    /// The widgets of the runtime (`crate::widgets::registry`).
    Widgets = 1,
    /// Wrapped cells (`crate::runtime::wrapped`).
    Wrapped = 2,
    /// Recent evaluation results in memory (`crate::quant::cache`).
    Evaluations = 3,
    /// The runtime's end of the link to the kernel (`crate::runtime::link`).
    Link = 4,
}

type Slots = [AtomicPtr<c_void>; SLOT_COUNT];

fn slots() -> &'static Slots {
    static FOUND: OnceLock<usize> = OnceLock::new();
    static LOCAL: Slots = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOT_COUNT];
    let address = *FOUND.get_or_init(|| {
        let name = std::ffi::CString::new(SLOTS_SYMBOL).expect("no NUL in symbol name");
        // SAFETY: dlsym with RTLD_DEFAULT and a valid C string only looks a symbol up.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
    });
    if address == 0 {
        &LOCAL
    } else {
        // SAFETY: the executable defines the symbol as a `Slots` that lives for the process.
        unsafe { &*(address as *const Slots) }
    }
}

/// The process-wide value in `slot`, created by `init` on first use (by whichever copy of the
/// crate gets there first).
pub fn shared<T: Send + Sync + 'static>(slot: Slot, init: impl FnOnce() -> T) -> &'static T {
    let cell = &slots()[slot as usize];
    let mut current = cell.load(Ordering::Acquire);
    if current.is_null() {
        let fresh = Box::into_raw(Box::new(init())) as *mut c_void;
        match cell.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => current = fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from Box::into_raw above and was never shared.
                drop(unsafe { Box::from_raw(fresh as *mut T) });
                current = winner;
            }
        }
    }
    // SAFETY: the slot only ever holds a leaked Box<T> for this slot's T.
    unsafe { &*(current as *const T) }
}
