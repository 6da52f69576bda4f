//! The interrupt flag: one word of memory shared by the kernel and the runtime, a file of the
//! kernel's build slot mapped by both. The kernel raises it to stop a cell
//! ([`crate::engine::interrupt`]); the prelude reads it in the runtime (`qplay::runtime::interrupt`,
//! through [`crate::runtime::QPLAY_INTERRUPT`]). Because both sides read and write the same
//! memory, there is no message to lose or to reorder.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;

use anyhow::{Context, Result};

/// The flag's file in the build slot.
const FILE: &str = "interrupt.flag";

/// The flag's file in build slot `slot`, and the variable that tells the runtime where it is.
pub fn file_env(slot: &Path) -> (&'static str, PathBuf) {
    (qplay::runtime::interrupt::FLAG_FILE_ENV, slot.join(FILE))
}

/// The kernel's end: the shared word, mapped from the slot's file (created if needed).
pub struct SharedFlag {
    word: *const AtomicU32,
}

// SAFETY: the mapping is never unmapped while the flag lives, and the word is atomic.
unsafe impl Send for SharedFlag {}
unsafe impl Sync for SharedFlag {}

impl SharedFlag {
    /// Maps the flag of build slot `slot`.
    pub fn map(slot: &Path) -> Result<SharedFlag> {
        let path = slot.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let word = map_word(&file).with_context(|| format!("cannot map {}", path.display()))?;
        Ok(SharedFlag { word })
    }

    /// The word.
    pub fn get(&self) -> &AtomicU32 {
        // SAFETY: see `map_word`.
        unsafe { &*self.word }
    }
}

/// The runtime's end: maps the flag file the kernel made.
pub fn map_existing(path: &Path) -> std::io::Result<*const AtomicU32> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    map_word(&file)
}

/// Maps the first page of `file` (growing it to a page) shared, and returns its first word.
/// The mapping is never unmapped: it lives as long as the process.
fn map_word(file: &std::fs::File) -> std::io::Result<*const AtomicU32> {
    use std::os::fd::AsRawFd;
    const PAGE: usize = 4096;
    if file.metadata()?.len() < PAGE as u64 {
        file.set_len(PAGE as u64)?;
    }
    // SAFETY: a fresh shared mapping of a file we opened read-write; checked for failure.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(address as *const AtomicU32)
}
