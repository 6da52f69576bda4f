//! The kernel's side of widgets: a record of every widget model (so the browser can get the
//! states back after a page reload, and so updates can be checked), the `jupyter.widget` and
//! `jupyter.widget.control` comm protocols, and the output areas of reactive cells.
//!
//! Models are created in the runtime (`qplay::widgets`), which announces them on stdout; the
//! engine hands those lines to [`Widgets::runtime_message`], which publishes the `comm_open`
//! with the running request as parent (so nbclient stores the state in the notebook) and
//! answers on the [`RuntimeLink`] with the state the widget starts from: when a cell runs again
//! with unchanged code, its widgets keep the values the user gave them. Updates from the
//! browser are checked against the model (type, range) before they reach the runtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qplay::protocol::{Change, Form, FromRuntime, ToRuntime};
use qplay::widgets::kinds;
use qplay::widgets::models::{self, State};
use serde_json::{json, Value};

mod area;

pub use area::OutputArea;

use crate::link::RuntimeLink;
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
    /// Top-level models in creation order (what `dataflow::CellSyntax::widget_bindings` counts).
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

#[derive(Debug, Default)]
struct Book {
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

/// What a message from the browser asks the kernel to do next.
#[derive(Debug, Default, PartialEq)]
pub struct Apply {
    /// New states to hand to the runtime.
    pub changes: Vec<(String, State)>,
    /// Buttons clicked.
    pub clicks: Vec<String>,
}

impl Apply {
    /// The models whose change may make cells rerun.
    pub fn sources(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.changes.iter().map(|(id, _)| id.clone()).collect();
        ids.extend(self.clicks.iter().cloned());
        ids
    }
}

/// Every widget model of the kernel.
pub struct Widgets {
    book: Mutex<Book>,
    link: Arc<RuntimeLink>,
    /// Where runtime messages go when no request is being handled.
    detached: Mutex<Option<Iopub>>,
}

/// A change of a model's state made by the kernel: recorded, then sent to the browser.
fn update_from_kernel(book: &mut Book, iopub: &Iopub, id: &str, key: &str, value: Value) {
    if let Some(model) = book.models.get_mut(id) {
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
    pub fn new(link: Arc<RuntimeLink>) -> Widgets {
        Widgets {
            book: Mutex::default(),
            link,
            detached: Mutex::default(),
        }
    }

    /// Keeps a publisher for runtime messages that arrive between requests.
    pub fn set_detached(&self, iopub: Iopub) {
        *lock(&self.detached) = Some(iopub.with_parent(None));
    }

    /// A cell starts: widgets it creates are counted, and take their earlier values if the
    /// cell's code is the same as last time.
    pub fn begin_cell(&self, key: &str, code: &str) {
        let mut book = lock(&self.book);
        let previous = book.cells.get(key).filter(|c| c.code == code).cloned();
        book.run = Some(Run {
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
        let mut book = lock(&self.book);
        let Some(run) = book.run.take() else {
            return (Vec::new(), Vec::new());
        };
        let roots = run.created.roots.clone();
        let entry = book.cells.entry(run.key).or_default();
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
        lock(&self.book)
            .cells
            .remove(key)
            .map(|c| c.all)
            .unwrap_or_default()
    }

    /// A widget message the runtime printed (`comm_open`, `comm_msg`), published with `sink`'s
    /// parent, or with none between requests.
    pub fn runtime_message(&self, message: FromRuntime, sink: Option<&dyn OutputSink>) {
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
                if let Some(model) = lock(&self.book).models.get_mut(&comm_id) {
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

    /// Records a new model; returns the state entries it takes from the cell's earlier run.
    fn record_open(&self, id: &str, state: &mut State, form: Option<Form>) -> State {
        let mut guard = lock(&self.book);
        let book = &mut *guard;
        let kind = kinds::of_state(state);
        let mut overrides = State::new();
        let models_of = &book.models;
        if let Some(run) = book.run.as_mut() {
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
                book.forms.insert(member, form.submit.clone());
            }
        }
        book.models.insert(
            id.to_string(),
            Model {
                state: state.clone(),
            },
        );
        overrides
    }

    /// The browser opened a comm: the control comm is kept, anything else is closed.
    pub fn frontend_open(&self, comm_id: &str, target: &str, iopub: &Iopub) {
        if target == models::CONTROL_TARGET {
            let mut book = lock(&self.book);
            book.control_comms.insert(comm_id.to_string());
            book.manager_seen = true;
        } else {
            log(format_args!("closing a comm for unknown target {target:?}"));
            iopub.comm_close(comm_id, json!({}));
        }
    }

    /// The browser closed a comm.
    pub fn frontend_close(&self, comm_id: &str) {
        let mut book = lock(&self.book);
        book.control_comms.remove(comm_id);
        book.models.remove(comm_id);
    }

    /// Open comms by id → target name.
    pub fn comm_info(&self, target: Option<&str>) -> HashMap<String, String> {
        let book = lock(&self.book);
        let widgets = book.models.keys().map(|id| (id.clone(), models::TARGET));
        let control = book
            .control_comms
            .iter()
            .map(|id| (id.clone(), models::CONTROL_TARGET));
        widgets
            .chain(control)
            .filter(|(_, t)| target.is_none_or(|want| want == *t))
            .map(|(id, t)| (id, t.to_string()))
            .collect()
    }

    /// A `comm_msg` from the browser. Answers what can be answered here (echo, state requests,
    /// errors) and returns what must reach the runtime.
    pub fn frontend_message(&self, comm_id: &str, data: &Value, iopub: &Iopub) -> Apply {
        let mut book = lock(&self.book);
        let method = data["method"].as_str().unwrap_or_default();
        if book.control_comms.contains(comm_id) {
            if method == "request_states" {
                let states: serde_json::Map<String, Value> = book
                    .models
                    .iter()
                    .map(|(id, m)| {
                        (
                            id.clone(),
                            json!({"model_name": m.name(),
                                   "model_module": m.state.get("_model_module"),
                                   "model_module_version": m.state.get("_model_module_version"),
                                   "state": m.state}),
                        )
                    })
                    .collect();
                iopub.comm_msg(
                    comm_id,
                    json!({"method": "update_states", "states": states, "buffer_paths": []}),
                    json!({}),
                    Vec::new(),
                );
            } else {
                log(format_args!("control comm: ignoring method {method:?}"));
            }
            return Apply::default();
        }
        let Some(model) = book.models.get(comm_id).cloned() else {
            log(format_args!("message for unknown comm {comm_id}"));
            return Apply::default();
        };
        let send = |data: Value| {
            iopub.comm_msg(comm_id, data, protocol_metadata(), Vec::new());
        };
        match method {
            "update" => {
                let Some(changes) = data["state"].as_object() else {
                    log(format_args!("update for {comm_id} without a state object"));
                    return Apply::default();
                };
                if let Err(why) = validate(&model, changes) {
                    log(format_args!(
                        "rejected update of {}: {why}",
                        model.description()
                    ));
                    // Put the browser back in step with the kernel.
                    let current: State = changes
                        .keys()
                        .filter_map(|k| Some((k.clone(), model.state.get(k)?.clone())))
                        .collect();
                    send(json!({"method": "update", "state": current, "buffer_paths": []}));
                    return Apply::default();
                }
                if let Some(m) = book.models.get_mut(comm_id) {
                    m.state.extend(changes.clone());
                }
                send(json!({"method": "echo_update", "state": changes, "buffer_paths": []}));
                if let Some(submit) = book.forms.get(comm_id).cloned() {
                    let held = book.held.entry(submit).or_default();
                    held.entry(comm_id.to_string())
                        .or_default()
                        .extend(changes.clone());
                    return Apply::default();
                }
                Apply {
                    changes: vec![(comm_id.to_string(), changes.clone())],
                    clicks: Vec::new(),
                }
            }
            "request_state" => {
                send(json!({"method": "update", "state": model.state, "buffer_paths": []}));
                Apply::default()
            }
            "custom" if data["content"]["event"] == "click" && model.name() == "ButtonModel" => {
                let held = book.held.remove(comm_id).unwrap_or_default();
                Apply {
                    changes: held.into_iter().collect(),
                    clicks: vec![comm_id.to_string()],
                }
            }
            other => {
                log(format_args!(
                    "ignoring method {other:?} on {}",
                    model.description()
                ));
                Apply::default()
            }
        }
    }

    /// The runtime was restarted: the values and callbacks behind its widgets are gone. Their
    /// controls are shown disabled in the browser, so that nobody moves a slider that no longer
    /// does anything; returns their descriptions. Rerunning a widget's cell makes it anew with
    /// the value it had.
    pub fn disable_orphans(&self) -> Vec<String> {
        let Some(iopub) = lock(&self.detached).clone() else {
            return Vec::new();
        };
        let mut book = lock(&self.book);
        let mut enabled: Vec<(String, String)> = book
            .models
            .iter()
            .filter(|(_, m)| m.state.get("disabled") == Some(&Value::Bool(false)))
            .map(|(id, m)| (m.description(), id.clone()))
            .collect();
        enabled.sort();
        for (_, id) in &enabled {
            update_from_kernel(&mut book, &iopub, id, "disabled", Value::Bool(true));
        }
        enabled
            .into_iter()
            .map(|(description, _)| description)
            .collect()
    }

    /// Hands changes to the runtime and waits until it has applied them (and redrawn its live
    /// views). Returns false if no runtime took them.
    pub fn forward(&self, apply: &Apply) -> bool {
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
            let mut book = lock(&self.book);
            for id in ids {
                book.models.remove(id);
                book.forms.remove(id);
                book.held.remove(id);
            }
        }
        for id in ids {
            iopub.comm_close(id, json!({}));
        }
        let comm_ids = ids.to_vec();
        self.link
            .request(|seq| ToRuntime::Close { seq, comm_ids }, APPLY_WAIT);
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
            let mut book = lock(&self.book);
            if let Some(run) = book.run.as_mut() {
                run.created.all.push(id.clone());
            }
            book.models.insert(id.clone(), Model { state });
        }
        id
    }

    /// Shows `outputs` in a kernel-owned output widget.
    pub fn set_outputs(&self, id: &str, outputs: Vec<Value>, iopub: &Iopub) {
        update_from_kernel(
            &mut lock(&self.book),
            iopub,
            id,
            "outputs",
            Value::Array(outputs),
        );
    }

    /// The outputs a kernel-owned output widget shows now.
    pub fn outputs_of(&self, id: &str) -> Vec<Value> {
        lock(&self.book)
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
        lock(&self.book).manager_seen
    }

    /// Whether the model exists (not closed).
    pub fn exists(&self, id: &str) -> bool {
        lock(&self.book).models.contains_key(id)
    }
}

/// Checks a browser update against the model's kind ([`kinds::Kind::check_update`]). Every
/// model qplay makes is of a declared kind (the prelude's tests walk every constructor).
fn validate(model: &Model, changes: &State) -> Result<(), String> {
    let Some(kind) = kinds::of(model.name()) else {
        return Err(format!(
            "{} is not a widget kind qplay declares",
            model.name()
        ));
    };
    kind.check_update(&model.state, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinds::{Kind, Rule, Type};
    use qplay_kernel::jupyter::iopub::CapturedIopub;

    fn state(v: Value) -> State {
        v.as_object().unwrap().clone()
    }

    /// A model of `kind` as its constructor would make it: a range of 0 to 10 at 5, the options
    /// "a" and "b" with "a" chosen.
    fn example(kind: &Kind) -> State {
        let mut values = json!({"layout": models::reference("L")});
        if kind.style.is_some() {
            values["style"] = models::reference("S");
        }
        for rule in kind.rules {
            match *rule {
                Rule::Range { min, max, value } => {
                    values[min] = 0.into();
                    values[max] = 10.into();
                    values[value] = 5.into();
                }
                Rule::Choice { index, options } => {
                    values[options] = json!(["a", "b"]);
                    values[index] = 0.into();
                }
                Rule::Member { value, among } => {
                    values[among] = match kind.prop(among).map(|p| p.ty) {
                        Some(Type::Object) => json!({"a": {}, "b": {}}),
                        _ => json!(["a", "b"]),
                    };
                    values[value] = "a".into();
                }
                Rule::Positive(_) => {}
            }
        }
        for p in kind.props() {
            if p.initial == kinds::Initial::Given && values.get(p.name).is_none() {
                values[p.name] = match p.ty {
                    Type::Texts => json!([]),
                    Type::Object => json!({}),
                    _ => json!(""),
                };
            }
        }
        kind.state(values)
    }

    /// Another value the browser may give property `name` of a model in state `s`, and one of
    /// the wrong type.
    fn good_and_bad(kind: &Kind, s: &State, name: &str) -> (Value, Value) {
        let p = kind.prop(name).unwrap();
        let current = &s[name];
        let choice = kind
            .rules
            .iter()
            .any(|r| matches!(r, Rule::Choice { index, .. } if *index == name));
        let member = kind
            .rules
            .iter()
            .any(|r| matches!(r, Rule::Member { value, .. } if *value == name));
        let among = kind
            .rules
            .iter()
            .any(|r| matches!(r, Rule::Member { among, .. } if *among == name));
        let good = match p.ty {
            _ if choice => json!(1),
            _ if member => json!("b"),
            _ if among => current.clone(),
            Type::Float => json!(current.as_f64().unwrap_or(0.0) + 0.5),
            Type::Int => json!(current.as_i64().unwrap_or(0) + 1),
            Type::Bool => json!(!current.as_bool().unwrap_or(false)),
            Type::Text => json!("typed"),
            Type::Texts => json!(["typed", "more"]),
            Type::Model => models::reference("other"),
            Type::Models => json!([models::reference("other")]),
            Type::Outputs => json!([]),
            Type::Object => json!({"typed": 1}),
        };
        let bad = match p.ty {
            Type::Float | Type::Int | Type::Bool => json!("x"),
            _ => json!(3.5),
        };
        (good, bad)
    }

    struct Bench {
        widgets: Widgets,
        iopub: Iopub,
        published: CapturedIopub,
        _dir: tempfile::TempDir,
    }

    fn bench() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let link = Arc::new(RuntimeLink::listen(dir.path()).unwrap());
        let widgets = Widgets::new(link);
        let (iopub, published) = Iopub::capture();
        widgets.set_detached(iopub.clone());
        Bench {
            widgets,
            iopub,
            published,
            _dir: dir,
        }
    }

    impl Bench {
        /// Runs cell `key` with `code`, which creates `state`; returns the state the model
        /// was opened with in the browser.
        fn run_cell(&mut self, key: &str, code: &str, id: &str, state: &State) -> State {
            self.widgets.begin_cell(key, code);
            let open = FromRuntime::CommOpen {
                comm_id: id.into(),
                state: state.clone(),
                wait: false,
                form: None,
            };
            self.widgets.runtime_message(open, None);
            self.widgets.end_cell(true);
            let opened = self.published.drain().pop().unwrap();
            assert_eq!(opened.header.msg_type, "comm_open");
            state_of(&opened.content["data"]["state"])
        }

        /// Sends a browser update; returns what it asks of the runtime and the kernel's answer
        /// to the browser.
        fn update(&mut self, id: &str, changes: Value) -> (Apply, Value) {
            let data = json!({"method": "update", "state": changes});
            let apply = self.widgets.frontend_message(id, &data, &self.iopub);
            let answer = self.published.drain().pop().unwrap();
            (apply, answer.content["data"].clone())
        }
    }

    fn state_of(v: &Value) -> State {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_kind_is_checked_against_its_declaration_and_keeps_its_values() {
        for kind in kinds::ALL.into_iter().filter(|k| k.is_top_level()) {
            let mut b = bench();
            let fresh = example(kind);
            let id = format!("{}-1", kind.model);
            let opened = b.run_cell("cell", "code", &id, &fresh);
            assert_eq!(
                opened, fresh,
                "{}: a first run opens the state as made",
                kind.model
            );
            let mut expected = fresh.clone();
            for p in kind.props() {
                let (good, bad) = good_and_bad(kind, &expected, p.name);
                let (apply, answer) = b.update(&id, json!({p.name: good}));
                assert_eq!(answer["method"], "echo_update", "{} {}", kind.model, p.name);
                assert_eq!(apply.changes.len(), 1, "{} {}", kind.model, p.name);
                expected.insert(p.name.into(), good);
                let (apply, answer) = b.update(&id, json!({p.name: bad.clone()}));
                assert_eq!(apply, Apply::default(), "{} {} = {bad}", kind.model, p.name);
                assert_eq!(answer["method"], "update", "the browser is put back");
                assert_eq!(answer["state"][p.name], expected[p.name]);
            }
            let (apply, _) = b.update(&id, json!({"no_such_property": 1}));
            assert_eq!(apply, Apply::default());
            // The same code again: a new model takes the kept values the user gave the old one.
            let again = b.run_cell("cell", "code", &format!("{}-2", kind.model), &fresh);
            for p in kind.props() {
                let want = if p.kept { &expected } else { &fresh };
                assert_eq!(again[p.name], want[p.name], "{} {}", kind.model, p.name);
            }
            // Other code starts over.
            let other = b.run_cell("cell", "other code", &format!("{}-3", kind.model), &fresh);
            assert_eq!(other, fresh, "{}", kind.model);
        }
    }

    #[test]
    fn a_browser_update_cannot_break_a_kinds_rules() {
        let mut b = bench();
        let slider = example(&kinds::FLOAT_SLIDER);
        b.run_cell("c", "code", "s", &slider);
        for (changes, error) in [
            (json!({"value": 11.0}), "outside"),
            (json!({"min": 6.0}), "outside"),
            (json!({"min": 20.0}), "above"),
            (json!({"max": -1.0}), "above"),
            (json!({"step": 0.0}), "above 0"),
        ] {
            let kind = &kinds::FLOAT_SLIDER;
            let e = kind
                .check_update(&slider, &state(changes.clone()))
                .unwrap_err();
            assert!(e.contains(error), "{changes}: {e}");
            let (apply, answer) = b.update("s", changes);
            assert_eq!(apply, Apply::default());
            assert_eq!(answer["method"], "update");
        }
        // The slider still takes every value in its range (a rejected `min` left it intact).
        let (apply, _) = b.update("s", json!({"value": 0.0}));
        assert_eq!(apply.changes.len(), 1);
        let int = example(&kinds::INT_SLIDER);
        b.run_cell("i", "code", "i", &int);
        let (apply, _) = b.update("i", json!({"value": 1.5}));
        assert_eq!(apply, Apply::default(), "an int slider takes integers only");
        let dropdown = example(&kinds::DROPDOWN);
        b.run_cell("d", "code", "d", &dropdown);
        let e = kinds::DROPDOWN
            .check_update(&dropdown, &state(json!({"index": 2})))
            .unwrap_err();
        assert!(e.contains("from 0 to 1"), "{e}");
        let (apply, _) = b.update("d", json!({"_options_labels": ["only"], "index": 0}));
        assert_eq!(apply.changes.len(), 1, "options and index change together");
    }
}
