//! The kernel's end of the runtime socket: a Unix socket on which the kernel sends the evcxr
//! runtime [`ToRuntime`] messages — what the user did in the browser, and calls of wrapped
//! cells (the runtime's end is `qplay::widgets::hub`).
//!
//! evcxr owns the runtime's stdin and stdout, so this second channel carries kernel → runtime
//! messages; the runtime answers on stdout or stderr, in order with the rest of its output, and
//! the engine hands each answer (`Done`) to [`RuntimeLink::finished`]. The socket
//! lives in the kernel's build slot (`crate::engine::slots`), which no other live kernel uses, so
//! a killed kernel leaves nothing behind that the next one does not replace; its path reaches
//! the runtime in `QPLAY_CHANNEL`. A restarted runtime connects again and replaces the old
//! connection.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use qplay::protocol::{Outcome, ToRuntime};

/// How long a message waits for a runtime that has not connected yet.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// The socket's file name in the build slot.
const SOCKET: &str = "link.sock";
/// The longest socket path Linux takes (`sun_path` is 108 bytes with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The runtime's current connection and its number, with a signal for when it changes.
type Connection = (Mutex<Option<(u64, UnixStream)>>, Condvar);

/// The listening socket and the runtime's current connection.
pub struct RuntimeLink {
    path: PathBuf,
    /// A private folder for the socket when the build slot's path is too long for one.
    _fallback: Option<tempfile::TempDir>,
    /// The runtime's connection, numbered (a restarted runtime connects anew).
    current: Arc<Connection>,
    seq: AtomicU64,
    /// The requests being waited for, by number, with their answer once it arrived; an answer
    /// to a request nobody waits for any more is dropped.
    answers: (Mutex<HashMap<u64, Option<Outcome>>>, Condvar),
}

impl RuntimeLink {
    /// Listens on a socket in `slot` (the kernel's own build directory, replacing what a killed
    /// kernel left there) and accepts runtimes in the background.
    pub fn listen(slot: &Path) -> Result<RuntimeLink> {
        let mut path = slot.join(SOCKET);
        let mut fallback = None;
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            let dir = tempfile::Builder::new()
                .prefix("qplay-link-")
                .tempdir()
                .context("cannot create the widget link folder")?;
            path = dir.path().join(SOCKET);
            fallback = Some(dir);
        } else {
            std::fs::create_dir_all(slot)
                .with_context(|| format!("cannot create {}", slot.display()))?;
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()));
                }
                _ => {}
            }
        }
        let listener = UnixListener::bind(&path).with_context(|| {
            format!("cannot listen on the widget link socket {}", path.display())
        })?;
        let current: Arc<Connection> = Default::default();
        let accepted = current.clone();
        std::thread::Builder::new()
            .name("qplay-link".into())
            .spawn(move || {
                for (n, stream) in (1u64..).zip(listener.incoming().flatten()) {
                    // The runtime never writes here: a read returns only when it has gone.
                    if let Ok(mut watch) = stream.try_clone() {
                        let gone = accepted.clone();
                        std::thread::spawn(move || {
                            let _ = std::io::Read::read(&mut watch, &mut [0u8; 1]);
                            let (slot, ready) = &*gone;
                            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                            if slot.as_ref().is_some_and(|(m, _)| *m == n) {
                                *slot = None;
                            }
                            ready.notify_all();
                        });
                    }
                    let (slot, ready) = &*accepted;
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((n, stream));
                    ready.notify_all();
                }
            })
            .context("cannot start the widget link thread")?;
        Ok(RuntimeLink {
            path,
            _fallback: fallback,
            current,
            seq: AtomicU64::new(0),
            answers: Default::default(),
        })
    }

    /// The socket's path, for the runtime's environment.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether a runtime is connected now.
    pub fn connected(&self) -> bool {
        self.current
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Sends one message, waiting briefly for a runtime that is about to connect. Returns
    /// whether it was written.
    pub fn send(&self, message: &ToRuntime) -> bool {
        let (slot, ready) = &*self.current;
        let guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = ready
            .wait_timeout_while(guard, CONNECT_WAIT, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        let Some((_, stream)) = guard.as_mut() else {
            return false;
        };
        let mut line = message.line();
        line.push('\n');
        if stream.write_all(line.as_bytes()).is_err() {
            // The runtime ended (an interrupt or a crash); a new one will connect.
            *guard = None;
            return false;
        }
        true
    }

    /// Sends the request that `make` builds with a new sequence number and waits for the
    /// runtime's answer, up to `wait` and while the runtime is connected. `None`: no runtime
    /// took it, or it did not answer.
    pub fn request(&self, make: impl FnOnce(u64) -> ToRuntime, wait: Duration) -> Option<Outcome> {
        if !self.connected() {
            return None;
        }
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let (answers, cv) = &self.answers;
        answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(seq, None);
        let sent = self.send(&make(seq));
        let deadline = Instant::now() + wait;
        let mut waiting = answers.lock().unwrap_or_else(|e| e.into_inner());
        let answer = loop {
            if let Some(outcome) = waiting.get_mut(&seq).and_then(Option::take) {
                break Some(outcome);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !sent || left.is_zero() || !self.connected() {
                if sent {
                    eprintln!("qplay: the runtime did not answer request {seq}");
                }
                break None;
            }
            waiting = cv
                .wait_timeout(waiting, left.min(Duration::from_millis(200)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        waiting.remove(&seq);
        answer
    }

    /// The runtime answered request `seq`.
    pub fn finished(&self, seq: u64, outcome: Outcome) {
        let (answers, cv) = &self.answers;
        if let Some(slot) = answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&seq)
        {
            *slot = Some(outcome);
        }
        cv.notify_all();
    }
}

impl Drop for RuntimeLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl std::fmt::Debug for RuntimeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuntimeLink({})", Path::display(&self.path()))
    }
}
