//! The browser's side of the widget protocols: the `jupyter.widget.control` comm (states after a
//! page reload), and `comm_msg` updates of models, checked against their kind before anything
//! reaches the runtime; what must reach it comes back as [`FromBrowser`].

use std::collections::HashMap;

use qplay::widgets::kinds;
use qplay::widgets::models::{self, State};
use serde_json::{json, Value};

use super::{lock, log, protocol_metadata, Model, Widgets};
use qplay_kernel::jupyter::backend::Iopub;

/// What a message from the browser asks the kernel to do next.
#[derive(Debug, Default, PartialEq)]
pub struct FromBrowser {
    /// New states to hand to the runtime.
    pub changes: Vec<(String, State)>,
    /// Buttons clicked.
    pub clicks: Vec<String>,
}

impl FromBrowser {
    /// The models whose change may make cells rerun.
    pub fn sources(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.changes.iter().map(|(id, _)| id.clone()).collect();
        ids.extend(self.clicks.iter().cloned());
        ids
    }
}

impl Widgets {
    /// The browser opened a comm: the control comm is kept, anything else is closed.
    pub fn frontend_open(&self, comm_id: &str, target: &str, iopub: &Iopub) {
        if target == models::CONTROL_TARGET {
            let mut records = lock(&self.records);
            records.control_comms.insert(comm_id.to_string());
            records.manager_seen = true;
        } else {
            log(format_args!("closing a comm for unknown target {target:?}"));
            iopub.comm_close(comm_id, json!({}));
        }
    }

    /// The browser closed a comm.
    pub fn frontend_close(&self, comm_id: &str) {
        let mut records = lock(&self.records);
        records.control_comms.remove(comm_id);
        records.models.remove(comm_id);
    }

    /// Open comms by id → target name.
    pub fn comm_info(&self, target: Option<&str>) -> HashMap<String, String> {
        let records = lock(&self.records);
        let widgets = records.models.keys().map(|id| (id.clone(), models::TARGET));
        let control = records
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
    pub fn frontend_message(&self, comm_id: &str, data: &Value, iopub: &Iopub) -> FromBrowser {
        let mut records = lock(&self.records);
        let method = data["method"].as_str().unwrap_or_default();
        if records.control_comms.contains(comm_id) {
            if method == "request_states" {
                let states: serde_json::Map<String, Value> = records
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
            return FromBrowser::default();
        }
        let Some(model) = records.models.get(comm_id).cloned() else {
            log(format_args!("message for unknown comm {comm_id}"));
            return FromBrowser::default();
        };
        let send = |data: Value| {
            iopub.comm_msg(comm_id, data, protocol_metadata(), Vec::new());
        };
        match method {
            "update" => {
                let Some(changes) = data["state"].as_object() else {
                    log(format_args!("update for {comm_id} without a state object"));
                    return FromBrowser::default();
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
                    return FromBrowser::default();
                }
                if let Some(m) = records.models.get_mut(comm_id) {
                    m.state.extend(changes.clone());
                }
                send(json!({"method": "echo_update", "state": changes, "buffer_paths": []}));
                if let Some(submit) = records.forms.get(comm_id).cloned() {
                    let held = records.held.entry(submit).or_default();
                    held.entry(comm_id.to_string())
                        .or_default()
                        .extend(changes.clone());
                    return FromBrowser::default();
                }
                FromBrowser {
                    changes: vec![(comm_id.to_string(), changes.clone())],
                    clicks: Vec::new(),
                }
            }
            "request_state" => {
                send(json!({"method": "update", "state": model.state, "buffer_paths": []}));
                FromBrowser::default()
            }
            "custom" if data["content"]["event"] == "click" && model.name() == "ButtonModel" => {
                let held = records.held.remove(comm_id).unwrap_or_default();
                FromBrowser {
                    changes: held.into_iter().collect(),
                    clicks: vec![comm_id.to_string()],
                }
            }
            other => {
                log(format_args!(
                    "ignoring method {other:?} on {}",
                    model.description()
                ));
                FromBrowser::default()
            }
        }
    }
}

/// Checks a browser update against the model's kind ([`kinds::Kind::check_update`]). Every
/// model qplay makes is of a declared kind (the prelude's tests walk every constructor).
fn validate(model: &Model, changes: &State) -> Result<(), String> {
    let Some(kind) = kinds::of_state(&model.state) else {
        return Err(format!(
            "{} is not a widget kind qplay declares",
            model.name()
        ));
    };
    kind.check_update(&model.state, changes)
}
