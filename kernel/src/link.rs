//! The kernel's end of the widget link: a Unix socket on which the kernel sends the evcxr
//! runtime what the user did in the browser (the runtime's end is `qplay::widgets::hub`).
//!
//! evcxr owns the runtime's stdin and stdout, so this second channel carries kernel → runtime
//! messages; the runtime answers on stdout, in order with the rest of its output. The socket
//! lives in the kernel's build slot (`kernel/src/slots.rs`), which no other live kernel uses, so
//! a killed kernel leaves nothing behind that the next one does not replace; its path reaches
//! the runtime in `QPLAY_CHANNEL`. A restarted runtime connects again and replaces the old
//! connection.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// How long a message waits for a runtime that has not connected yet.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// The socket's file name in the build slot.
const SOCKET: &str = "link.sock";
/// The longest socket path Linux takes (`sun_path` is 108 bytes with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The listening socket and the runtime's current connection.
pub struct RuntimeLink {
    path: PathBuf,
    /// A private folder for the socket when the build slot's path is too long for one.
    _fallback: Option<tempfile::TempDir>,
    current: Arc<(Mutex<Option<UnixStream>>, Condvar)>,
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
        let current: Arc<(Mutex<Option<UnixStream>>, Condvar)> = Default::default();
        let accepted = current.clone();
        std::thread::Builder::new()
            .name("qplay-link".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (slot, ready) = &*accepted;
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream);
                    ready.notify_all();
                }
            })
            .context("cannot start the widget link thread")?;
        Ok(RuntimeLink {
            path,
            _fallback: fallback,
            current,
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
    pub fn send(&self, message: &Value) -> bool {
        let (slot, ready) = &*self.current;
        let guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = ready
            .wait_timeout_while(guard, CONNECT_WAIT, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        let Some(stream) = guard.as_mut() else {
            return false;
        };
        let mut line = message.to_string();
        line.push('\n');
        if stream.write_all(line.as_bytes()).is_err() {
            // The runtime ended (an interrupt or a crash); a new one will connect.
            *guard = None;
            return false;
        }
        true
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
