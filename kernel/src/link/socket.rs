//! The kernel's end of the link: a Unix socket that carries the kernel's [`ToRuntime`] requests
//! to the evcxr runtime and every answer back (the runtime's end is `qplay::runtime::link`).
//!
//! A request — the browser's widget changes, closed widgets, a call of a wrapped cell — goes out
//! as one line; its answer comes back on the same socket as a stream of [`FromRuntime`] lines
//! ending with its `Done`, read by the connection's thread here: text, displays and the final
//! value go to the request's output sink, widget messages to the widgets. Compiled cells still
//! print their messages on evcxr's stdout, which the engine reads; both hand each message to
//! [`RuntimeLink::deliver`], the one place that routes them.
//!
//! The socket lives in the kernel's build slot (`crate::engine::slots`), which no other live
//! kernel uses, so a killed kernel leaves nothing behind that the next one does not replace;
//! its path reaches the runtime in `QPLAY_LINK`. A restarted runtime connects again and
//! replaces the old connection.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use qplay::runtime::protocol::{FromRuntime, Outcome, ToRuntime};

use crate::output::OutputSink;

/// How long a message waits for a runtime that has not connected yet.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// The socket's file name in the build slot.
const SOCKET: &str = "link.sock";
/// The longest socket path Linux takes (`sun_path` is 108 bytes with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where the runtime's widget messages (`comm_open`, `comm_msg`) go: the kernel's widgets.
pub trait WidgetMessages: Send + Sync {
    /// Publishes `message` with `sink`'s parent (or with none between requests).
    fn runtime_message(&self, message: FromRuntime, sink: Option<&dyn OutputSink>);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime's current connection and its number, with a signal for when it changes.
type Connection = (Mutex<Option<(u64, UnixStream)>>, Condvar);

/// What the connection's thread delivers answers to.
#[derive(Default)]
struct Answers {
    /// The number of the request being waited for (one at a time), with its outcome once it
    /// arrived; an answer to a request nobody waits for any more is dropped.
    outcome: Mutex<(u64, Option<Outcome>)>,
    arrived: Condvar,
    /// The outputs of the request being answered.
    sink: Mutex<Option<Arc<dyn OutputSink>>>,
    widgets: Mutex<Option<Weak<dyn WidgetMessages>>>,
}

/// The listening socket and the runtime's current connection.
pub struct RuntimeLink {
    path: PathBuf,
    /// A private folder for the socket when the build slot's path is too long for one.
    _fallback: Option<tempfile::TempDir>,
    /// The runtime's connection, numbered (a restarted runtime connects anew).
    current: Arc<Connection>,
    seq: AtomicU64,
    answers: Arc<Answers>,
    /// Held while a request is answered: one at a time.
    one_at_a_time: Mutex<()>,
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
        let answers: Arc<Answers> = Default::default();
        let (accepted, delivered) = (current.clone(), answers.clone());
        std::thread::Builder::new()
            .name("qplay-link".into())
            .spawn(move || {
                for (n, stream) in (1u64..).zip(listener.incoming().flatten()) {
                    if let Ok(answer) = stream.try_clone() {
                        let (gone, answers) = (accepted.clone(), delivered.clone());
                        std::thread::spawn(move || {
                            read_answers(answer, &answers);
                            let (slot, ready) = &*gone;
                            let mut slot = lock(slot);
                            if slot.as_ref().is_some_and(|(m, _)| *m == n) {
                                *slot = None;
                            }
                            ready.notify_all();
                            answers.arrived.notify_all();
                        });
                    }
                    let (slot, ready) = &*accepted;
                    *lock(slot) = Some((n, stream));
                    ready.notify_all();
                }
            })
            .context("cannot start the runtime link thread")?;
        Ok(RuntimeLink {
            path,
            _fallback: fallback,
            current,
            seq: AtomicU64::new(0),
            answers,
            one_at_a_time: Mutex::new(()),
        })
    }

    /// Where widget messages go from now on.
    pub fn deliver_widgets_to(&self, widgets: Weak<dyn WidgetMessages>) {
        *lock(&self.answers.widgets) = Some(widgets);
    }

    /// Routes one runtime message: an outcome to the request waiting for it, widget messages
    /// to the widgets, outputs to `sink` (the kernel's log when no cell or request has one).
    pub fn deliver(&self, message: FromRuntime, sink: Option<&dyn OutputSink>) {
        self.answers.deliver(message, sink);
    }

    /// The socket's path, for the runtime's environment.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether a runtime is connected now.
    pub fn connected(&self) -> bool {
        lock(&self.current.0).is_some()
    }

    /// Sends one message, waiting briefly for a runtime that is about to connect. Returns
    /// whether it was written.
    pub fn send(&self, message: &ToRuntime) -> bool {
        let (slot, ready) = &*self.current;
        let guard = lock(slot);
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
    /// runtime's answer, up to `wait` and while the runtime is connected; what the runtime
    /// prints meanwhile goes to `sink`. `None`: no runtime took it, or it did not answer.
    pub fn request(
        &self,
        make: impl FnOnce(u64) -> ToRuntime,
        sink: Option<Arc<dyn OutputSink>>,
        wait: Duration,
    ) -> Option<Outcome> {
        if !self.connected() {
            return None;
        }
        let _one = lock(&self.one_at_a_time);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let answers = &self.answers;
        *lock(&answers.outcome) = (seq, None);
        *lock(&answers.sink) = sink;
        let sent = self.send(&make(seq));
        let deadline = Instant::now() + wait;
        let mut waiting = lock(&answers.outcome);
        let answer = loop {
            if let Some(outcome) = waiting.1.take() {
                break Some(outcome);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !sent || left.is_zero() || !self.connected() {
                if sent {
                    eprintln!("qplay: the runtime did not answer request {seq}");
                }
                break None;
            }
            waiting = answers
                .arrived
                .wait_timeout(waiting, left.min(Duration::from_millis(200)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        *waiting = (0, None);
        drop(waiting);
        *lock(&answers.sink) = None;
        answer
    }
}

impl Answers {
    fn deliver(&self, message: FromRuntime, sink: Option<&dyn OutputSink>) {
        match (message, sink) {
            (FromRuntime::Done { seq, outcome }, _) => {
                let mut waiting = lock(&self.outcome);
                if waiting.0 == seq {
                    waiting.1 = Some(outcome);
                }
                drop(waiting);
                self.arrived.notify_all();
            }
            (m @ (FromRuntime::CommOpen { .. } | FromRuntime::CommMsg { .. }), sink) => {
                let widgets = lock(&self.widgets).as_ref().and_then(Weak::upgrade);
                match widgets {
                    Some(widgets) => widgets.runtime_message(m, sink),
                    None => eprintln!("qplay: a widget message with no widgets: {m:?}"),
                }
            }
            (FromRuntime::Display { data, display_id }, Some(sink)) => {
                sink.display(data, Some(display_id), false)
            }
            (FromRuntime::Update { data, display_id }, Some(sink)) => {
                sink.display(data, Some(display_id), true)
            }
            (FromRuntime::Clear { wait }, Some(sink)) => sink.clear_output(wait),
            (FromRuntime::Stream { name, text }, Some(sink)) => sink.stream(&name, &text),
            (FromRuntime::Result { data }, Some(sink)) => sink.result(data),
            (FromRuntime::Begin { .. }, _) => {}
            (other, None) => eprintln!("qplay: runtime output outside any cell: {other:?}"),
        }
    }
}

/// Delivers the answers the runtime sends on one connection until it closes, each to the
/// request being answered.
fn read_answers(stream: UnixStream, answers: &Answers) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        match FromRuntime::parse(&line) {
            Some(message) => {
                let sink = lock(&answers.sink).clone();
                answers.deliver(message, sink.as_deref());
            }
            None => eprintln!("qplay: not a runtime message on the link: {line}"),
        }
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
