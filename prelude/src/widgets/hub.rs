//! The runtime's side of the widget link: every widget of the process, and the channel on which
//! the kernel sends what the user did in the browser.
//!
//! Widget states travel two ways (see docs/ARCHITECTURE.md, "Widgets"), as the messages of
//! [`crate::protocol`]:
//! - runtime → kernel: [`FromRuntime`] lines on stdout, so they stay in order with the cell's
//!   other output — or on stderr from the link's own thread, since evcxr reads the runtime's
//!   stdout only while a cell runs;
//! - kernel → runtime: [`ToRuntime`] lines on a Unix socket whose path the kernel puts in
//!   [`CHANNEL_ENV`]: `opened` (the state a new widget starts with, e.g. the value the user had
//!   set before the cell was re-run), `update` (new values and button clicks; live views rerun,
//!   then the runtime answers `done`), `close`, and `run` (call a wrapped cell, see
//!   [`crate::reactive`]; the executor thread does it, so that the link stays free to answer
//!   the widgets the cell makes).
//!
//! Without [`CHANNEL_ENV`] (qplay used as a plain library) widgets are ordinary values and
//! print nothing. The hub lives in a process slot, so every cell's copy of this crate sees the
//! same widgets.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::display::emit_on;
use crate::protocol::{Change, Form, FromRuntime, Outcome, State, ToRuntime};

/// Environment variable naming the kernel's Unix socket.
pub const CHANNEL_ENV: &str = "QPLAY_CHANNEL";

/// How long a new widget waits for the kernel's `opened` answer.
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// One widget model in the runtime.
pub struct Core {
    pub(crate) id: String,
    pub(crate) model: String,
    state: Mutex<State>,
    clicks: AtomicU64,
}

impl Core {
    /// A copy of one state entry.
    pub(crate) fn get(&self, key: &str) -> Value {
        lock(&self.state).get(key).cloned().unwrap_or(Value::Null)
    }

    /// Changes state entries here and in the browser.
    pub(crate) fn set(&self, changes: State) {
        lock(&self.state).extend(changes.clone());
        let hub = hub();
        if hub.linked() {
            hub.emit(&FromRuntime::CommMsg {
                comm_id: self.id.clone(),
                state: changes,
            });
        }
    }

    pub(crate) fn clicks(&self) -> u64 {
        self.clicks.load(Ordering::SeqCst)
    }
}

type Render = Box<dyn Fn() -> Vec<Value> + Send + Sync>;

/// A live view: an output widget redrawn by a closure when one of its widgets changes.
pub(crate) struct LiveView {
    pub(crate) on: Vec<String>,
    pub(crate) output: Arc<Core>,
    pub(crate) render: Render,
}

impl LiveView {
    pub(crate) fn redraw(&self) {
        let outputs = (self.render)();
        let mut changes = State::new();
        changes.insert("outputs".into(), Value::Array(outputs));
        self.output.set(changes);
    }
}

#[derive(Default)]
struct Link {
    /// Whether a kernel socket was looked for (and `connected`, whether one was found).
    tried: bool,
    connected: bool,
}

/// Every widget of this runtime.
#[derive(Default)]
pub struct Hub {
    link: Mutex<Link>,
    widgets: Mutex<HashMap<String, Arc<Core>>>,
    waiters: Mutex<HashMap<String, mpsc::Sender<State>>>,
    lives: Mutex<Vec<Arc<LiveView>>>,
    /// The thread that reads the link (`pthread_self`; a `std` thread id would differ between
    /// the copies of `std` in each cell's library).
    reader: Mutex<Option<libc::pthread_t>>,
    /// Requests for the executor thread, which calls wrapped cells.
    executor: Mutex<Option<mpsc::Sender<(u64, String)>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's hub.
pub(crate) fn hub() -> &'static Hub {
    crate::process::shared(crate::process::Slot::Widgets, Hub::default)
}

impl Hub {
    /// Whether a kernel listens; connects on first use.
    pub(crate) fn linked(&self) -> bool {
        let mut link = lock(&self.link);
        if !link.tried {
            link.tried = true;
            if let Some(path) = std::env::var_os(CHANNEL_ENV) {
                match std::os::unix::net::UnixStream::connect(&path) {
                    Ok(stream) => {
                        link.connected = true;
                        std::thread::Builder::new()
                            .name("qplay-widgets".into())
                            .spawn(move || {
                                // SAFETY: pthread_self has no preconditions.
                                *lock(&hub().reader) = Some(unsafe { libc::pthread_self() });
                                read_loop(stream)
                            })
                            .expect("cannot start the widget thread");
                        let (tx, rx) = mpsc::channel();
                        *lock(&self.executor) = Some(tx);
                        std::thread::Builder::new()
                            .name("qplay-cells".into())
                            .spawn(move || execute_loop(rx))
                            .expect("cannot start the wrapped-cell thread");
                    }
                    Err(e) => eprintln!(
                        "qplay: widgets will not reach the kernel ({}: {e})",
                        std::path::Path::new(&path).display()
                    ),
                }
            }
        }
        link.connected
    }

    /// Prints a message for the kernel: on stdout from a cell, on stderr from the link thread.
    pub(crate) fn emit(&self, message: &FromRuntime) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let on_reader = lock(&self.reader).is_some_and(|r| r == me);
        emit_on(message, on_reader);
    }

    /// Creates a model: announces it to the kernel and, with `wait`, takes the state the kernel
    /// answers with (a value kept from the cell's previous run).
    pub(crate) fn open(&self, state: State, wait: bool, form: Option<Form>) -> Arc<Core> {
        let id = super::models::new_model_id();
        let model = state
            .get("_model_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let core = Arc::new(Core {
            id: id.clone(),
            model,
            state: Mutex::new(state.clone()),
            clicks: AtomicU64::new(0),
        });
        lock(&self.widgets).insert(id.clone(), core.clone());
        if self.linked() {
            let answer = wait.then(|| {
                let (tx, rx) = mpsc::channel();
                lock(&self.waiters).insert(id.clone(), tx);
                rx
            });
            self.emit(&FromRuntime::CommOpen {
                comm_id: id.clone(),
                state,
                wait,
                form,
            });
            if let Some(rx) = answer {
                if let Ok(overrides) = rx.recv_timeout(OPEN_WAIT) {
                    lock(&core.state).extend(overrides);
                }
                lock(&self.waiters).remove(&id);
            }
        }
        core
    }

    pub(crate) fn add_live(&self, view: Arc<LiveView>) {
        lock(&self.lives).push(view);
    }

    /// Applies the browser's changes, counts clicks, redraws the live views that watch any of
    /// the changed widgets.
    pub(crate) fn apply(&self, changes: &[Change], clicks: &[String]) {
        let mut touched: Vec<&str> = Vec::new();
        {
            let widgets = lock(&self.widgets);
            for change in changes {
                if let Some(core) = widgets.get(&change.comm_id) {
                    lock(&core.state).extend(change.state.clone());
                    touched.push(&change.comm_id);
                }
            }
            for id in clicks {
                if let Some(core) = widgets.get(id) {
                    core.clicks.fetch_add(1, Ordering::SeqCst);
                    touched.push(id);
                }
            }
        }
        let views: Vec<Arc<LiveView>> = lock(&self.lives)
            .iter()
            .filter(|v| v.on.iter().any(|id| touched.contains(&id.as_str())))
            .cloned()
            .collect();
        for view in views {
            view.redraw();
        }
    }

    /// Forgets closed models and the live views drawing into them.
    fn close(&self, ids: &[String]) {
        let mut widgets = lock(&self.widgets);
        for id in ids {
            widgets.remove(id);
        }
        lock(&self.lives).retain(|v| !ids.contains(&v.output.id));
    }

    /// How many live views are registered.
    pub(crate) fn live_count(&self) -> usize {
        lock(&self.lives).len()
    }
}

/// Handles the kernel's messages until the socket closes.
fn read_loop(stream: std::os::unix::net::UnixStream) {
    let hub = hub();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Some(message) = ToRuntime::parse(&line) else {
            eprintln!("qplay: ignoring a malformed widget message");
            continue;
        };
        match message {
            ToRuntime::Opened { comm_id, state } => {
                if let Some(tx) = lock(&hub.waiters).remove(&comm_id) {
                    let _ = tx.send(state);
                }
            }
            ToRuntime::Update {
                seq,
                changes,
                clicks,
            } => {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    hub.apply(&changes, &clicks)
                }));
                if run.is_err() {
                    eprintln!("qplay: a live view panicked");
                }
                hub.emit(&FromRuntime::Done {
                    seq,
                    outcome: Outcome::Ok,
                });
            }
            ToRuntime::Close { seq, comm_ids } => {
                hub.close(&comm_ids);
                hub.emit(&FromRuntime::Done {
                    seq,
                    outcome: Outcome::Ok,
                });
            }
            ToRuntime::Run { seq, cell } => {
                let sent = lock(&hub.executor)
                    .as_ref()
                    .is_some_and(|tx| tx.send((seq, cell)).is_ok());
                if !sent {
                    hub.emit(&FromRuntime::Done {
                        seq,
                        outcome: Outcome::Unknown,
                    });
                }
            }
        }
    }
}

/// Calls wrapped cells, one at a time. What a cell prints goes to stdout, where the runtime's
/// relay passes it to the kernel between `Begin` and `Done`.
fn execute_loop(requests: mpsc::Receiver<(u64, String)>) {
    for (seq, cell) in requests {
        emit_on(&FromRuntime::Begin { seq }, false);
        let outcome = crate::reactive::call(&cell);
        emit_on(&FromRuntime::Done { seq, outcome }, false);
    }
}
