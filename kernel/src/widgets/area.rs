//! The output areas of reactive cells: kernel-owned output widgets that a rerun redraws in place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{lock, Widgets};
use crate::output::{is_unit, OutputSink};
use qplay_kernel::jupyter::backend::{Iopub, MimeBundle};

/// The output area of a reactive cell: everything the cell shows goes into a kernel-owned
/// output widget, which a rerun can replace in place. A rerun starts from the outputs the area
/// shows and overwrites them one by one as the cell produces new ones (the quick table replaces
/// the old quick table, then the histogram the old histogram); what is left over goes when the
/// cell ends. So nothing flickers, and the first new result shows as soon as it exists.
pub struct OutputArea {
    widgets: Arc<Widgets>,
    id: String,
    iopub: Iopub,
    state: Mutex<AreaState>,
}

#[derive(Default)]
struct AreaState {
    outputs: Vec<Value>,
    /// How many of `outputs` this run has written; the rest are the previous run's.
    written: usize,
    display_ids: HashMap<String, usize>,
    clear_on_next: bool,
    dirty: bool,
    last_sent: Option<Instant>,
}

impl AreaState {
    /// A new output of this run, in the next place.
    fn put(&mut self, output: Value) {
        match self.outputs.get_mut(self.written) {
            Some(old) => *old = output,
            None => self.outputs.push(output),
        }
        self.written += 1;
    }

    fn clear(&mut self) {
        self.outputs.clear();
        self.display_ids.clear();
        self.written = 0;
    }
}

/// Redraws of an output area while a cell runs, at most this often.
const AREA_REDRAW: Duration = Duration::from_millis(50);

impl OutputArea {
    /// An area drawing into output widget `id`, starting from what it shows now.
    pub fn new(widgets: Arc<Widgets>, id: String, iopub: Iopub) -> OutputArea {
        let shown = widgets.outputs_of(&id);
        OutputArea {
            widgets,
            id,
            iopub,
            state: Mutex::new(AreaState {
                outputs: shown,
                ..Default::default()
            }),
        }
    }

    /// Applies a change and redraws: at once when it adds an output (a new result shows as
    /// soon as it exists), at most every [`AREA_REDRAW`] for text appended or a display
    /// updated in place (a loop that prints or moves a progress bar).
    fn change(&self, f: impl FnOnce(&mut AreaState)) {
        let mut s = lock(&self.state);
        if s.clear_on_next {
            s.clear_on_next = false;
            s.clear();
        }
        let written = s.written;
        f(&mut s);
        s.dirty = true;
        if s.written != written || s.last_sent.is_none_or(|t| t.elapsed() >= AREA_REDRAW) {
            self.send(&mut s);
        }
    }

    fn send(&self, s: &mut AreaState) {
        s.dirty = false;
        s.last_sent = Some(Instant::now());
        self.widgets
            .set_outputs(&self.id, s.outputs.clone(), &self.iopub);
    }

    /// Adds the cell's result or error.
    pub fn push(&self, output: Value) {
        self.change(|s| s.put(output));
    }

    /// Drops what is left of the previous run, sends what is not sent yet; returns the area's
    /// bundle for the notebook (`crate::output::area_bundle`).
    pub fn finish(&self) -> MimeBundle {
        let mut s = lock(&self.state);
        let written = s.written;
        if s.outputs.len() > written {
            s.outputs.truncate(written);
            s.dirty = true;
        }
        if s.dirty || s.last_sent.is_none() {
            self.send(&mut s);
        }
        crate::output::area_bundle(&self.id, &s.outputs)
    }

    /// The Jupyter display id under which the area is shown in its cell.
    pub fn display_id(&self) -> String {
        format!("qplay-area-{}", self.id)
    }

    /// Finishes the area and refreshes what its cell holds for viewers without widgets (and for
    /// the saved notebook).
    pub fn finish_and_publish(&self) {
        let bundle = self.finish();
        self.iopub
            .update_display_data(bundle, MimeBundle::new(), &self.display_id());
    }
}

impl OutputSink for OutputArea {
    fn stream(&self, name: &str, text: &str) {
        self.change(|s| {
            if let Some(last) = s.written.checked_sub(1).and_then(|i| s.outputs.get_mut(i)) {
                if last["output_type"] == "stream" && last["name"] == name {
                    let joined = format!("{}{text}", last["text"].as_str().unwrap_or_default());
                    last["text"] = joined.into();
                    return;
                }
            }
            s.put(json!({"output_type": "stream", "name": name, "text": text}));
        });
    }

    fn display(&self, data: MimeBundle, display_id: Option<String>, update: bool) {
        let output = json!({"output_type": "display_data", "data": data, "metadata": {}});
        self.change(|s| match (update, display_id) {
            (true, Some(id)) => {
                if let Some(&i) = s.display_ids.get(&id) {
                    s.outputs[i] = output;
                }
            }
            (_, id) => {
                if let Some(id) = id {
                    s.display_ids.insert(id, s.written);
                }
                s.put(output);
            }
        });
    }

    fn clear_output(&self, wait: bool) {
        if wait {
            lock(&self.state).clear_on_next = true;
        } else {
            self.change(AreaState::clear);
        }
    }

    fn comm(&self, msg_type: &str, content: Value, metadata: Value) {
        self.iopub.send(msg_type, content, metadata);
    }

    fn result(&self, data: MimeBundle) {
        if !is_unit(&data) {
            self.push(
                json!({"output_type": "execute_result", "data": data, "metadata": {},
                             "execution_count": Value::Null}),
            );
        }
    }
}
