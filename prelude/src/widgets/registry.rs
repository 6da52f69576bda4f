//! Every widget model of the runtime process: its state, the clicks it received, and the live
//! views that redraw when it changes. A model announces itself to the kernel when it is made,
//! and every change made here (`set`, a live view redrawn) goes to the browser; what the user
//! does in the browser arrives as the link's `update` requests (see
//! [`crate::runtime::link`]), which [`Registry::apply`] takes.
//!
//! The registry lives in a process slot, so every cell's copy of this crate sees the same
//! widgets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::display::emit;
use crate::runtime::link::link;
use crate::runtime::protocol::{Change, Form, FromRuntime, Outcome, State, ToRuntime};

/// How long a new widget waits for the kernel's `opened` answer.
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// One widget model in the runtime.
pub struct WidgetModel {
    pub(crate) id: String,
    pub(crate) model: String,
    state: Mutex<State>,
    clicks: AtomicU64,
}

impl WidgetModel {
    /// A copy of one state entry.
    pub(crate) fn get(&self, key: &str) -> Value {
        lock(&self.state).get(key).cloned().unwrap_or(Value::Null)
    }

    /// Changes state entries here and in the browser.
    pub(crate) fn set(&self, changes: State) {
        lock(&self.state).extend(changes.clone());
        if link().connected(answer) {
            emit(&FromRuntime::CommMsg {
                comm_id: self.id.clone(),
                state: changes,
            });
        }
    }

    /// Its declared kind (by model name and, for anywidget models, their id).
    pub(crate) fn kind(&self) -> Option<&'static super::kind::Kind> {
        super::kinds::of_state(&lock(&self.state))
    }

    pub(crate) fn clicks(&self) -> u64 {
        self.clicks.load(Ordering::SeqCst)
    }
}

type Render = Box<dyn Fn() -> Vec<Value> + Send + Sync>;

/// A live view: an output widget redrawn by a closure when one of its widgets changes.
pub(crate) struct LiveView {
    pub(crate) on: Vec<String>,
    pub(crate) output: Arc<WidgetModel>,
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

/// Every widget of this runtime.
#[derive(Default)]
pub struct Registry {
    widgets: Mutex<HashMap<String, Arc<WidgetModel>>>,
    lives: Mutex<Vec<Arc<LiveView>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's widgets.
pub(crate) fn registry() -> &'static Registry {
    crate::runtime::process::shared(crate::runtime::process::Slot::Widgets, Registry::default)
}

impl Registry {
    /// Creates a model: announces it to the kernel and, with `wait`, takes the state the kernel
    /// answers with (a value kept from the cell's previous run).
    pub(crate) fn open(&self, state: State, wait: bool, form: Option<Form>) -> Arc<WidgetModel> {
        let id = super::models::new_model_id();
        let model = state
            .get("_model_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let core = Arc::new(WidgetModel {
            id: id.clone(),
            model,
            state: Mutex::new(state.clone()),
            clicks: AtomicU64::new(0),
        });
        lock(&self.widgets).insert(id.clone(), core.clone());
        let link = link();
        if link.connected(answer) {
            let message = FromRuntime::CommOpen {
                comm_id: id.clone(),
                state,
                wait,
                form,
            };
            if let Some(overrides) = link.open(&id, wait, OPEN_WAIT, || emit(&message)) {
                lock(&core.state).extend(overrides);
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

/// What the runtime does for the kernel's requests on the link: the browser's changes applied
/// (live views redrawn), closed widgets forgotten, a wrapped cell called.
fn answer(request: ToRuntime) -> Outcome {
    let registry = registry();
    match request {
        ToRuntime::Update {
            changes, clicks, ..
        } => {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                registry.apply(&changes, &clicks)
            }));
            if run.is_err() {
                eprintln!("qplay: a live view panicked");
            }
            Outcome::Ok
        }
        ToRuntime::Close { comm_ids, .. } => {
            registry.close(&comm_ids);
            Outcome::Ok
        }
        ToRuntime::Run { cell, .. } => crate::runtime::wrapped::call(&cell),
        ToRuntime::Opened { .. } => Outcome::Ok,
    }
}
