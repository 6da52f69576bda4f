//! Stopping a running cell: cooperatively first, by restarting the runtime only if it must.
//!
//! The kernel and the runtime share one word of memory, a file of the kernel's build slot
//! mapped by both (`qplay::interrupt` reads it in the runtime). An interrupt raises it; every
//! long operation of the prelude checks it between batches and returns `Interrupted`, so the
//! cell ends and the runtime, its variables and its widgets survive. A cell that does not stop
//! within [`GRACE`] (a loop that never checks) is stopped the old way: the runtime process is
//! killed, and evcxr starts a new one for the next cell.
//!
//! The kernel lowers the flag before each cell or rerun. Because both sides read and write the
//! same memory, there is no message to lose or to reorder.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

/// How long an interrupted cell has to stop by itself before the runtime is killed.
pub const GRACE: Duration = Duration::from_secs(2);

/// The flag's file in the build slot.
const FILE: &str = "interrupt.flag";

/// One shared word, mapped from a file.
struct SharedFlag {
    word: *const AtomicU32,
}

// SAFETY: the mapping is never unmapped while the flag lives, and the word is atomic.
unsafe impl Send for SharedFlag {}
unsafe impl Sync for SharedFlag {}

impl SharedFlag {
    fn map(path: &Path) -> Result<SharedFlag> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let word = map_word(&file).with_context(|| format!("cannot map {}", path.display()))?;
        Ok(SharedFlag { word })
    }

    fn get(&self) -> &AtomicU32 {
        // SAFETY: see `map_word`.
        unsafe { &*self.word }
    }
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

/// The runtime's end: the address of the shared word, which every cell's copy of the prelude
/// finds by name (`qplay::interrupt::FLAG_SYMBOL`); exported dynamically by build.rs.
#[no_mangle]
pub static QPLAY_INTERRUPT: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());

/// In the runtime process: maps the kernel's flag file named in the environment. Must run
/// before `evcxr::runtime_hook`; elsewhere does nothing.
pub fn map_in_runtime() {
    let Some(path) = std::env::var_os(qplay::interrupt::FLAG_FILE_ENV) else {
        return;
    };
    let mapped = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .and_then(|file| map_word(&file));
    match mapped {
        Ok(word) => QPLAY_INTERRUPT.store(word as *mut AtomicU32, Ordering::Release),
        Err(e) => eprintln!(
            "qplay: interrupts will restart the runtime ({}: {e})",
            Path::new(&path).display()
        ),
    }
}

/// Stops the cell now running, from the control thread, while the engine runs it on the shell
/// thread.
#[derive(Clone)]
pub struct Interrupter {
    flag: Arc<SharedFlag>,
    /// The runtime's pid while a cell or rerun runs.
    pid: Arc<Mutex<Option<u32>>>,
    /// Which run is going (bumped at every start), so that a late kill never hits the next.
    run: Arc<AtomicU64>,
    /// Whether the current run was interrupted.
    interrupted: Arc<AtomicBool>,
}

impl Interrupter {
    /// The flag in `slot` (the kernel's build directory), whose path the runtime gets in
    /// [`Interrupter::file_env`].
    pub fn new(slot: &Path) -> Result<Interrupter> {
        std::fs::create_dir_all(slot)
            .with_context(|| format!("cannot create {}", slot.display()))?;
        Ok(Interrupter {
            flag: Arc::new(SharedFlag::map(&slot.join(FILE))?),
            pid: Arc::default(),
            run: Arc::default(),
            interrupted: Arc::default(),
        })
    }

    /// The variable and value that tell the runtime where the flag is.
    pub fn file_env(slot: &Path) -> (&'static str, std::path::PathBuf) {
        (qplay::interrupt::FLAG_FILE_ENV, slot.join(FILE))
    }

    /// Forgets an interrupt of earlier work: what runs next was not interrupted.
    pub fn reset(&self) {
        self.interrupted.store(false, Ordering::SeqCst);
    }

    /// A cell or rerun starts in runtime process `pid`: the flag goes down.
    pub fn begin(&self, pid: Option<u32>) {
        let mut current = self.pid.lock().unwrap_or_else(|e| e.into_inner());
        self.run.fetch_add(1, Ordering::SeqCst);
        self.flag.get().store(0, Ordering::SeqCst);
        *current = pid;
    }

    /// The run ended.
    pub fn end(&self) {
        *self.pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Asks the running cell to stop without killing anything (a newer widget value).
    pub fn cancel(&self) {
        self.flag.get().store(1, Ordering::SeqCst);
    }

    /// Interrupts the cell now running, if any: raises the flag, and kills the runtime if the
    /// cell has not ended after [`GRACE`].
    pub fn interrupt(&self) {
        if self.pid.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return;
        }
        self.interrupted.store(true, Ordering::SeqCst);
        self.cancel();
        let this = self.clone();
        let run = self.run.load(Ordering::SeqCst);
        std::thread::spawn(move || {
            std::thread::sleep(GRACE);
            // Holding the lock keeps the next run from starting meanwhile.
            let current = this.pid.lock().unwrap_or_else(|e| e.into_inner());
            if this.run.load(Ordering::SeqCst) != run {
                return;
            }
            if let Some(pid) = *current {
                // SAFETY: kill(2) on the runtime we spawned; a stale pid fails with ESRCH.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        });
    }

    /// Whether the current run was interrupted by the user.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}
