//! Stopping a running cell: cooperatively first, by restarting the runtime only if it must.
//!
//! The kernel and the runtime share one word of memory ([`crate::link::flag`]). An interrupt
//! raises it; every long operation of the prelude checks it between batches and returns
//! `Interrupted`, so the cell ends and the runtime, its variables and its widgets survive. A cell that does not stop
//! within [`GRACE`] (a loop that never checks) is stopped the old way: the runtime process is
//! killed, and evcxr starts a new one for the next cell.
//!
//! The kernel lowers the flag before each cell or rerun.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::link::flag::SharedFlag;

/// How long an interrupted cell has to stop by itself before the runtime is killed.
pub const GRACE: Duration = Duration::from_secs(2);

/// Stops the cell now running, from the control thread, while the engine runs it on the shell
/// thread.
#[derive(Clone)]
pub struct Stopper {
    flag: Arc<SharedFlag>,
    /// The runtime's pid while a cell or rerun runs.
    pid: Arc<Mutex<Option<u32>>>,
    /// Which run is going (bumped at every start), so that a late kill never hits the next.
    run: Arc<AtomicU64>,
    /// Whether the current run was interrupted.
    interrupted: Arc<AtomicBool>,
}

impl Stopper {
    /// The flag in `slot` (the kernel's build directory), whose path the runtime gets in
    /// [`crate::link::flag::file_env`].
    pub fn new(slot: &Path) -> Result<Stopper> {
        std::fs::create_dir_all(slot)
            .with_context(|| format!("cannot create {}", slot.display()))?;
        Ok(Stopper {
            flag: Arc::new(SharedFlag::map(slot)?),
            pid: Arc::default(),
            run: Arc::default(),
            interrupted: Arc::default(),
        })
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
