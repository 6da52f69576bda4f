//! In the evcxr runtime: hands freed memory back to the system once the notebook is at rest.
//!
//! Cells allocate and free hundreds of MB (captured activations, batches of images, ONNX
//! Runtime's tensors, which it allocates with malloc: `qplay::onnx` uses no arena). glibc keeps
//! what was freed in its heaps for the next allocation, so without this the runtime would stay
//! as large as the most any cell ever needed. The relay ([`super::relay::relay`]) reports the
//! end of every compiled cell and wrapped call; once none has ended for [`QUIET`], the runtime
//! calls `malloc_trim(0)`. While a slider is being dragged, the freed memory stays for the next
//! rerun (a trim after every move cost about 30 ms a move in an earlier measurement); a
//! notebook at rest gives it back (the playground's runtime after slider moves: 429 → 251 MiB
//! PSS).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

/// How long the runtime waits after the last cell or wrapped call ended.
pub const QUIET: Duration = Duration::from_secs(1);

/// Calls `trim` once after each burst of [`Trimmer::ended`] calls, when `quiet` has passed
/// without another.
pub struct Trimmer {
    ended: Sender<()>,
}

impl Trimmer {
    pub fn start(quiet: Duration, trim: impl Fn() + Send + 'static) -> Trimmer {
        let (ended, rx) = mpsc::channel();
        std::thread::spawn(move || {
            while rx.recv().is_ok() {
                loop {
                    match rx.recv_timeout(quiet) {
                        Ok(()) => continue,
                        Err(RecvTimeoutError::Timeout) => break trim(),
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        });
        Trimmer { ended }
    }

    /// A cell or a wrapped call ended.
    pub fn ended(&self) {
        let _ = self.ended.send(());
    }
}

/// Returns the free memory of every malloc heap to the system.
pub fn malloc_trim() {
    // SAFETY: malloc_trim only releases free pages; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn one_trim_after_each_burst_and_none_during_it() {
        let trims = Arc::new(AtomicUsize::new(0));
        let counted = trims.clone();
        let quiet = Duration::from_millis(500);
        let t = Trimmer::start(quiet, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        for _ in 0..5 {
            t.ended();
            std::thread::sleep(quiet / 50);
        }
        assert_eq!(
            trims.load(Ordering::SeqCst),
            0,
            "trimmed while cells kept ending"
        );
        std::thread::sleep(quiet * 4);
        assert_eq!(trims.load(Ordering::SeqCst), 1);
        t.ended();
        std::thread::sleep(quiet * 4);
        assert_eq!(trims.load(Ordering::SeqCst), 2);
    }
}
