//! The kernel's side of widgets: a record of every widget model (so the browser can get the
//! states back after a page reload, and so updates can be checked), the `jupyter.widget` and
//! `jupyter.widget.control` comm protocols, and the output areas of reactive cells.
//!
//! Models are created in the runtime (`qplay::widgets`), which announces them (on stdout in a
//! compiled cell, on the link while it answers a request); the link hands those messages to
//! [`Widgets::runtime_message`], which publishes the `comm_open` with the running request as
//! parent (so nbclient stores the state in the notebook) and answers on the [`RuntimeLink`]
//! with the state the widget starts from: when a cell runs again with unchanged code, its
//! widgets keep the values the user gave them. Updates from the browser are checked against
//! the model (type, range) before they reach the runtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qplay::runtime::protocol::{Change, Form, FromRuntime, ToRuntime};
use qplay::widgets::kinds;
use qplay::widgets::models::{self, State};
use serde_json::{json, Value};

mod area;
mod browser;

pub use area::OutputArea;
pub use browser::FromBrowser;

use crate::link::{RuntimeLink, WidgetMessages};
use crate::output::OutputSink;
use qplay_kernel::jupyter::backend::Iopub;

/// How long the kernel waits for the runtime to apply an update (live views included).
const APPLY_WAIT: Duration = Duration::from_secs(120);

fn log(text: std::fmt::Arguments) {
    eprintln!("qplay widgets: {text}");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One model as the browser knows it.
#[derive(Debug, Clone)]
struct Model {
    state: State,
}

impl Model {
    fn name(&self) -> &str {
        self.state
            .get("_model_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    fn description(&self) -> String {
        let d = self.state.get("description").and_then(Value::as_str);
        match d {
            Some(d) if !d.is_empty() => format!("{} {d:?}", self.name().trim_end_matches("Model")),
            _ => self.name().trim_end_matches("Model").to_string(),
        }
    }
}

/// The models one run of a cell created.
#[derive(Debug, Clone, Default)]
struct CellModels {
    code: String,
    /// Top-level models in creation order (what `reactive::CellSyntax::widget_bindings` counts).
    roots: Vec<String>,
    /// Every model, layouts and styles included.
    all: Vec<String>,
}

/// The cell now running.
#[derive(Debug)]
struct Run {
    key: String,
    previous: Option<CellModels>,
    created: CellModels,
}

/// What the kernel knows of the widgets: every model's state, which cell made which, and the
/// comms and forms of the browser.
#[derive(Debug, Default)]
struct Records {
    models: HashMap<String, Model>,
    cells: HashMap<String, CellModels>,
    run: Option<Run>,
    /// Form member → the form's submit button.
    forms: HashMap<String, String>,
    /// Submit button → member changes held until it is pressed.
    held: HashMap<String, BTreeMap<String, State>>,
    control_comms: HashSet<String>,
    /// Whether a frontend's widget manager has announced itself (the control comm).
    manager_seen: bool,
}

/// Every widget model of the kernel.
pub struct Widgets {
    records: Mutex<Records>,
    link: Arc<RuntimeLink>,
    /// Where runtime messages go when no request is being handled.
    detached: Mutex<Option<Iopub>>,
}

/// A change of a model's state made by the kernel: recorded, then sent to the browser.
fn update_from_kernel(records: &mut Records, iopub: &Iopub, id: &str, key: &str, value: Value) {
    if let Some(model) = records.models.get_mut(id) {
        model.state.insert(key.to_string(), value.clone());
    }
    let changes = json!({ key: value });
    iopub.comm_msg(
        id,
        json!({"method": "update", "state": changes, "buffer_paths": []}),
        protocol_metadata(),
        Vec::new(),
    );
}

fn comm_open_content(comm_id: &str, state: &State) -> Value {
    json!({
        "comm_id": comm_id, "target_name": models::TARGET,
        "data": {"state": state, "buffer_paths": []},
    })
}

fn protocol_metadata() -> Value {
    json!({"version": models::PROTOCOL_VERSION})
}

impl Widgets {
    /// The widgets, receiving the widget messages that reach `link`.
    pub fn new(link: Arc<RuntimeLink>) -> Arc<Widgets> {
        let widgets = Arc::new(Widgets {
            records: Mutex::default(),
            link: link.clone(),
            detached: Mutex::default(),
        });
        let weak = Arc::downgrade(&widgets);
        link.deliver_widgets_to(weak);
        widgets
    }

    /// Keeps a publisher for runtime messages that arrive between requests.
    pub fn set_detached(&self, iopub: Iopub) {
        *lock(&self.detached) = Some(iopub.with_parent(None));
    }

    /// A cell starts: widgets it creates are counted, and take their earlier values if the
    /// cell's code is the same as last time.
    pub fn begin_cell(&self, key: &str, code: &str) {
        let mut records = lock(&self.records);
        let previous = records.cells.get(key).filter(|c| c.code == code).cloned();
        records.run = Some(Run {
            key: key.to_string(),
            previous,
            created: CellModels {
                code: code.to_string(),
                ..Default::default()
            },
        });
    }

    /// The cell ended. Returns the top-level models it created and the earlier run's models
    /// that it replaced (to close); after a failure nothing is replaced.
    pub fn end_cell(&self, success: bool) -> (Vec<String>, Vec<String>) {
        let mut records = lock(&self.records);
        let Some(run) = records.run.take() else {
            return (Vec::new(), Vec::new());
        };
        let roots = run.created.roots.clone();
        let entry = records.cells.entry(run.key).or_default();
        if success {
            let replaced = std::mem::replace(entry, run.created);
            (roots, replaced.all)
        } else {
            entry.code = run.created.code;
            entry.all.extend(run.created.all);
            if !roots.is_empty() {
                entry.roots = roots.clone();
            }
            (roots, Vec::new())
        }
    }

    /// The models a cell created in its last run (for a deleted cell).
    pub fn cell_models(&self, key: &str) -> Vec<String> {
        lock(&self.records)
            .cells
            .remove(key)
            .map(|c| c.all)
            .unwrap_or_default()
    }

    /// Records a new model; returns the state entries it takes from the cell's earlier run.
    fn record_open(&self, id: &str, state: &mut State, form: Option<Form>) -> State {
        let mut guard = lock(&self.records);
        let records = &mut *guard;
        let kind = kinds::of_state(state);
        let mut overrides = State::new();
        let models_of = &records.models;
        if let Some(run) = records.run.as_mut() {
            run.created.all.push(id.to_string());
            if let Some(kind) = kind.filter(|k| k.is_top_level()) {
                let ordinal = run.created.roots.len();
                run.created.roots.push(id.to_string());
                let earlier = run.previous.as_ref().and_then(|p| p.roots.get(ordinal));
                if let Some(earlier) = earlier.and_then(|e| models_of.get(e)) {
                    if earlier.name() == kind.model {
                        for key in kind.kept() {
                            if let Some(v) = earlier.state.get(key) {
                                overrides.insert(key.to_string(), v.clone());
                            }
                        }
                    }
                }
            }
        }
        state.extend(overrides.clone());
        if let Some(form) = form {
            for member in form.members {
                records.forms.insert(member, form.submit.clone());
            }
        }
        records.models.insert(
            id.to_string(),
            Model {
                state: state.clone(),
            },
        );
        overrides
    }

    /// The runtime was restarted: the values and callbacks behind its widgets are gone. Their
    /// controls are shown disabled in the browser, so that nobody moves a slider that no longer
    /// does anything; returns their descriptions. Rerunning a widget's cell makes it anew with
    /// the value it had.
    pub fn disable_orphans(&self) -> Vec<String> {
        let Some(iopub) = lock(&self.detached).clone() else {
            return Vec::new();
        };
        let mut records = lock(&self.records);
        let mut enabled: Vec<(String, String)> = records
            .models
            .iter()
            .filter(|(_, m)| m.state.get("disabled") == Some(&Value::Bool(false)))
            .map(|(id, m)| (m.description(), id.clone()))
            .collect();
        enabled.sort();
        for (_, id) in &enabled {
            update_from_kernel(&mut records, &iopub, id, "disabled", Value::Bool(true));
        }
        enabled
            .into_iter()
            .map(|(description, _)| description)
            .collect()
    }

    /// Hands changes to the runtime and waits until it has applied them (and redrawn its live
    /// views, whose outputs go to `sink`). Returns false if no runtime took them.
    pub fn forward(&self, apply: &FromBrowser, sink: Arc<dyn OutputSink>) -> bool {
        let changes: Vec<Change> = apply
            .changes
            .iter()
            .map(|(id, state)| Change {
                comm_id: id.clone(),
                state: state.clone(),
            })
            .collect();
        let clicks = apply.clicks.clone();
        let answer = self.link.request(
            |seq| ToRuntime::Update {
                seq,
                changes,
                clicks,
            },
            Some(sink),
            APPLY_WAIT,
        );
        if answer.is_none() {
            log(format_args!(
                "no runtime holds these widgets (it was restarted); run their cell again"
            ));
        }
        answer.is_some()
    }

    /// Closes models in the browser and in the runtime.
    pub fn close(&self, ids: &[String], iopub: &Iopub) {
        if ids.is_empty() {
            return;
        }
        {
            let mut records = lock(&self.records);
            for id in ids {
                records.models.remove(id);
                records.forms.remove(id);
                records.held.remove(id);
            }
        }
        for id in ids {
            iopub.comm_close(id, json!({}));
        }
        let comm_ids = ids.to_vec();
        self.link
            .request(|seq| ToRuntime::Close { seq, comm_ids }, None, APPLY_WAIT);
    }

    /// Opens an output widget owned by the kernel (the output area of a reactive cell).
    pub fn open_output(&self, iopub: &Iopub) -> String {
        let layout_id = models::new_model_id();
        let id = models::new_model_id();
        let layout = kinds::layout();
        let output = kinds::output(&layout_id, Vec::new());
        for (id, state) in [(&layout_id, layout), (&id, output)] {
            iopub.send(
                "comm_open",
                comm_open_content(id, &state),
                protocol_metadata(),
            );
            let mut records = lock(&self.records);
            if let Some(run) = records.run.as_mut() {
                run.created.all.push(id.clone());
            }
            records.models.insert(id.clone(), Model { state });
        }
        id
    }

    /// Shows `outputs` in a kernel-owned output widget.
    pub fn set_outputs(&self, id: &str, outputs: Vec<Value>, iopub: &Iopub) {
        update_from_kernel(
            &mut lock(&self.records),
            iopub,
            id,
            "outputs",
            Value::Array(outputs),
        );
    }

    /// The outputs a kernel-owned output widget shows now.
    pub fn outputs_of(&self, id: &str) -> Vec<Value> {
        lock(&self.records)
            .models
            .get(id)
            .and_then(|m| m.state.get("outputs"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether a frontend with a widget manager has connected (JupyterLab opens the widget
    /// control comm as soon as it connects; nbclient never does).
    pub fn manager_seen(&self) -> bool {
        lock(&self.records).manager_seen
    }

    /// Whether the model exists (not closed).
    pub fn exists(&self, id: &str) -> bool {
        lock(&self.records).models.contains_key(id)
    }
}

impl WidgetMessages for Widgets {
    /// A widget message from the runtime (`comm_open`, `comm_msg`), published with `sink`'s
    /// parent, or with none between requests.
    fn runtime_message(&self, message: FromRuntime, sink: Option<&dyn OutputSink>) {
        let detached = lock(&self.detached).clone();
        let publish = |msg_type: &str, content: Value, metadata: Value| match sink {
            Some(sink) => sink.comm(msg_type, content, metadata),
            None => {
                if let Some(iopub) = &detached {
                    iopub.send(msg_type, content, metadata);
                }
            }
        };
        match message {
            FromRuntime::CommOpen {
                comm_id,
                mut state,
                wait,
                form,
            } => {
                let overrides = self.record_open(&comm_id, &mut state, form);
                publish(
                    "comm_open",
                    comm_open_content(&comm_id, &state),
                    protocol_metadata(),
                );
                if wait {
                    self.link.send(&ToRuntime::Opened {
                        comm_id,
                        state: overrides,
                    });
                }
            }
            FromRuntime::CommMsg { comm_id, state } => {
                if let Some(model) = lock(&self.records).models.get_mut(&comm_id) {
                    model.state.extend(state.clone());
                }
                publish(
                    "comm_msg",
                    json!({"comm_id": comm_id, "data": {"method": "update", "state": state,
                                                   "buffer_paths": []}}),
                    protocol_metadata(),
                );
            }
            other => log(format_args!("not a widget message: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests;
