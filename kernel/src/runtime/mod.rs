//! What runs in the evcxr *runtime*: the child process in which evcxr loads and runs the cells'
//! libraries. It is this same `qplay` binary, started by evcxr with its marker variable;
//! [`enter`] sets it up and hands it to evcxr's loop, which never returns there. In the kernel
//! and the other subcommands it does nothing.
//!
//! - [`relay`]: the runtime's stdout, one output per evcxr content block, and the output of
//!   wrapped cells as messages to the kernel;
//! - [`trim`]: freed memory handed back to the system once the notebook is at rest;
//! - the interrupt flag: the word of memory the kernel raises to stop a cell
//!   ([`crate::link::flag`]), found by the prelude as [`QPLAY_INTERRUPT`];
//! - the process-state slots every copy of the prelude finds by name ([`QPLAY_PROCESS_SLOTS`]).

pub mod relay;
pub mod trim;

use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// The process-wide state slots that every copy of the qplay crate in the evcxr runtime finds
/// by name (see `qplay::runtime::process`); exported dynamically by build.rs.
#[no_mangle]
pub static QPLAY_PROCESS_SLOTS: [AtomicPtr<std::ffi::c_void>; qplay::runtime::process::SLOT_COUNT] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; qplay::runtime::process::SLOT_COUNT];

/// The address of the shared interrupt word, which every cell's copy of the prelude finds by
/// name (`qplay::runtime::interrupt::FLAG_SYMBOL`); exported dynamically by build.rs.
#[no_mangle]
pub static QPLAY_INTERRUPT: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());

/// In the runtime process: routes stdout through the relay, maps the interrupt flag, and runs
/// evcxr's loop (which never returns). Elsewhere does nothing.
pub fn enter() {
    relay::install_in_runtime();
    map_interrupt_flag();
    evcxr::runtime_hook();
}

/// Maps the kernel's flag file named in the environment (a runtime started by the kernel has
/// one).
fn map_interrupt_flag() {
    let Some(path) = std::env::var_os(qplay::runtime::interrupt::FLAG_FILE_ENV) else {
        return;
    };
    match crate::link::flag::map_existing(Path::new(&path)) {
        Ok(word) => QPLAY_INTERRUPT.store(word as *mut AtomicU32, Ordering::Release),
        Err(e) => eprintln!(
            "qplay: interrupts will restart the runtime ({}: {e})",
            Path::new(&path).display()
        ),
    }
}
