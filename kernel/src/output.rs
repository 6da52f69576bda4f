//! Where a cell's outputs go, and how a cell fails: shared by the engine (which produces
//! outputs), the widgets (whose output areas receive them) and the backend.

use std::sync::Mutex;

use qplay::protocol::MimeBundle;
use serde_json::Value;

/// Where a running cell's outputs go (the kernel publishes them on IOPub).
pub trait OutputSink: Send + Sync {
    /// Text on `stdout` or `stderr`.
    fn stream(&self, name: &str, text: &str);
    /// A rich output; `update` replaces the output shown earlier under `display_id`.
    fn display(&self, data: MimeBundle, display_id: Option<String>, update: bool);
    /// Clears the cell's outputs (`wait`: when the next output arrives).
    fn clear_output(&self, wait: bool);
    /// A comm message (`comm_open`, `comm_msg`, `comm_close`) of a widget the cell made.
    fn comm(&self, msg_type: &str, content: Value, metadata: Value);
    /// The final value of a wrapped cell (a compiled cell's comes back from evcxr instead).
    fn result(&self, data: MimeBundle) {
        self.display(data, None, false);
    }
}

/// Whether a cell's value has nothing to show: a cell ending in a block, loop or call that
/// returns `()`, or in a value that showed itself already (a live view).
pub fn is_unit(bundle: &MimeBundle) -> bool {
    bundle.is_empty()
        || (bundle.len() == 1
            && matches!(
                bundle.get("text/plain").and_then(Value::as_str),
                Some("()" | "")
            ))
}

/// Why a cell failed, in the shape of a Jupyter `error` message.
#[derive(Debug, Clone)]
pub struct CellError {
    /// Short kind of error (`CompilationError`, `Panic`, `Interrupted`, …).
    pub ename: String,
    /// One-line description.
    pub evalue: String,
    /// Lines to show, ANSI colours allowed.
    pub traceback: Vec<String>,
}

/// An [`OutputSink`] that keeps what it is given (for start-up, where nothing is shown).
#[derive(Default)]
pub struct Collect(Mutex<String>);

impl Collect {
    /// Everything streamed so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl OutputSink for Collect {
    fn stream(&self, _name: &str, text: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }
    fn display(&self, _data: MimeBundle, _id: Option<String>, _update: bool) {}
    fn clear_output(&self, _wait: bool) {}
    fn comm(&self, _msg_type: &str, _content: Value, _metadata: Value) {}
}
