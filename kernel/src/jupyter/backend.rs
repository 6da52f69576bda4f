//! The boundary between the protocol layer and the engine that runs cells.
//!
//! The layer owns sockets, signing, `status` busy/idle, `execute_input`, execution counts and
//! replies; a [`Backend`] only evaluates. Its methods are called one at a time, in request
//! order, on one dedicated thread, and may block (execution is synchronous). An
//! [`Interrupter`] is called from the control channel while `execute` is running.
//!
//! Cursor positions given to and returned by a backend are **byte offsets** into `code` (on
//! `char` boundaries); the layer converts from and to the protocol's Unicode code points.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

pub use super::iopub::{CapturedIopub, Iopub, MimeBundle};
pub use jupyter_protocol::{ExpressionResult, HelpLink};

/// What the engine asks of the kernel. Calls come one at a time from one thread.
pub trait Backend: Send + 'static {
    /// Language version, banner and help links for `kernel_info_reply`; asked once at start.
    fn kernel_info(&self) -> KernelInfo;

    /// Runs a cell. Publish its output through `ctx.iopub` (from any thread, while this call
    /// runs); the layer sends `execute_input` before and, for an error, the `error` message
    /// after. Should return soon after [`Interrupter::interrupt`] is called.
    fn execute(&mut self, code: &str, ctx: &ExecuteContext) -> ExecuteOutcome;

    /// Completions at byte offset `cursor_pos`.
    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completion {
        let _ = code;
        Completion {
            matches: Vec::new(),
            cursor_start: cursor_pos,
            cursor_end: cursor_pos,
            metadata: MimeBundle::new(),
        }
    }

    /// Documentation for what is at byte offset `cursor_pos`, as a MIME bundle; `None` when
    /// nothing is found. `detail_level` is 0 or 1.
    fn inspect(&mut self, code: &str, cursor_pos: usize, detail_level: u8) -> Option<MimeBundle> {
        let _ = (code, cursor_pos, detail_level);
        None
    }

    /// Whether `code` is a complete cell (used by consoles to decide on Enter).
    fn is_complete(&mut self, code: &str) -> IsComplete {
        let _ = code;
        IsComplete::Unknown
    }

    /// A frontend opened a comm. The default closes it again, as the protocol asks for an
    /// unknown target.
    fn comm_open(&mut self, comm_id: &str, target_name: &str, data: Value, ctx: &CommContext) {
        let _ = (target_name, data);
        ctx.iopub
            .comm_close(comm_id, Value::Object(Default::default()));
    }

    /// A message on a comm (e.g. a widget `update`).
    fn comm_msg(&mut self, comm_id: &str, data: Value, ctx: &CommContext) {
        let _ = (comm_id, data, ctx);
    }

    /// The frontend closed a comm.
    fn comm_close(&mut self, comm_id: &str, data: Value, ctx: &CommContext) {
        let _ = (comm_id, data, ctx);
    }

    /// Open comms as comm id → target name, only those of `target_name` when given.
    fn comm_info(&self, target_name: Option<&str>) -> HashMap<String, String> {
        let _ = target_name;
        HashMap::new()
    }

    /// No request has come for a moment (the last reply and its `idle` status are out). A
    /// backend may do deferred work here; a request that arrives meanwhile waits for it, so
    /// keep it short.
    fn idle(&mut self) {}

    /// The kernel is shutting down (`restart`: the client will start a new one). Release child
    /// processes and files here; the process exits soon after.
    fn shutdown(&mut self, restart: bool) {
        let _ = restart;
    }
}

/// Stops a running `execute`. Handed to the control channel, which calls it on
/// `interrupt_request` while the backend thread may be inside `execute`; it must not wait for
/// the backend.
pub trait Interrupter: Send + Sync + 'static {
    fn interrupt(&self);
}

impl<F: Fn() + Send + Sync + 'static> Interrupter for F {
    fn interrupt(&self) {
        self()
    }
}

/// The engine's part of `kernel_info_reply`.
#[derive(Debug, Clone, Default)]
pub struct KernelInfo {
    /// `language_info.version`, e.g. the rustc version (see [`rustc_version`]); may be empty.
    pub language_version: String,
    pub banner: String,
    pub help_links: Vec<HelpLink>,
}

/// Everything about an `execute_request` besides its code.
#[derive(Debug, Clone)]
pub struct ExecuteContext {
    /// Publish nothing and do not count (the layer sends no `execute_input` then).
    pub silent: bool,
    pub store_history: bool,
    pub allow_stdin: bool,
    pub stop_on_error: bool,
    /// Expressions to evaluate after the code, name → expression.
    pub user_expressions: HashMap<String, String>,
    /// The request's message metadata; JupyterLab puts `cellId` and `deletedCells` here.
    pub metadata: Value,
    /// The count shown for this cell (already incremented when it is stored in history).
    pub execution_count: usize,
    /// `msg_id` of the execute request.
    pub msg_id: String,
    /// IOPub with this request as parent.
    pub iopub: Iopub,
}

impl ExecuteContext {
    /// JupyterLab's id of the cell being run (`metadata.cellId`).
    pub fn cell_id(&self) -> Option<&str> {
        self.metadata.get("cellId")?.as_str()
    }

    /// Ids of cells deleted since the last request (`metadata.deletedCells`).
    pub fn deleted_cells(&self) -> Vec<&str> {
        self.metadata
            .get("deletedCells")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// How a cell ended.
#[derive(Debug, Clone)]
pub enum ExecuteOutcome {
    Ok {
        /// Results of `ExecuteContext::user_expressions`, by name.
        user_expressions: HashMap<String, ExpressionResult>,
    },
    /// The layer publishes an `error` message and replies with status `error`.
    Error {
        ename: String,
        evalue: String,
        traceback: Vec<String>,
    },
}

impl ExecuteOutcome {
    /// Success without user expressions.
    pub fn ok() -> Self {
        ExecuteOutcome::Ok {
            user_expressions: HashMap::new(),
        }
    }

    pub fn error(
        ename: impl Into<String>,
        evalue: impl Into<String>,
        traceback: Vec<String>,
    ) -> Self {
        ExecuteOutcome::Error {
            ename: ename.into(),
            evalue: evalue.into(),
            traceback,
        }
    }
}

/// Completion candidates replacing `code[cursor_start..cursor_end]` (byte offsets).
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
    /// E.g. `_jupyter_types_experimental`.
    pub metadata: MimeBundle,
}

/// Answer to `is_complete_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsComplete {
    Complete,
    /// More input expected; `indent` is a hint for the next line.
    Incomplete {
        indent: String,
    },
    Invalid,
    Unknown,
}

/// Everything about a comm message besides the comm id and data.
#[derive(Debug, Clone)]
pub struct CommContext {
    /// IOPub with the comm message as parent (echo updates here).
    pub iopub: Iopub,
    /// The message metadata (ipywidgets puts its protocol `version` here).
    pub metadata: Value,
    /// Binary buffers (ipywidgets `buffer_paths`).
    pub buffers: Vec<Vec<u8>>,
    /// For a `comm_msg`: whether a newer message for the same comm is already waiting (so
    /// work for this one may be skipped).
    pub superseded: Superseded,
}

/// Tells whether a comm message has been superseded by a newer one on the same comm.
#[derive(Clone)]
pub struct Superseded(Arc<dyn Fn() -> bool + Send + Sync>);

impl Superseded {
    pub fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> Superseded {
        Superseded(Arc::new(check))
    }

    /// Never superseded.
    pub fn never() -> Superseded {
        Superseded::new(|| false)
    }

    /// Whether a newer message for the same comm has arrived.
    pub fn check(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Superseded({})", self.check())
    }
}

/// The version of `rustc` on `PATH` (`"1.95.0"`), or `""` if it cannot be run.
pub fn rustc_version() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            out.split_whitespace().nth(1).map(str::to_string)
        })
        .unwrap_or_default()
}

/// Byte offset of Unicode code point `cp` in `s` (clamped to `s.len()`).
pub fn code_point_to_byte(s: &str, cp: usize) -> usize {
    s.char_indices().nth(cp).map_or(s.len(), |(b, _)| b)
}

/// Number of code points in `s[..byte]` (`byte` is clamped and rounded down to a boundary).
pub fn byte_to_code_point(s: &str, byte: usize) -> usize {
    let mut byte = byte.min(s.len());
    while !s.is_char_boundary(byte) {
        byte -= 1;
    }
    s[..byte].chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_convert_between_code_points_and_bytes() {
        let s = "é🦀x";
        assert_eq!(code_point_to_byte(s, 0), 0);
        assert_eq!(code_point_to_byte(s, 1), 2);
        assert_eq!(code_point_to_byte(s, 2), 6);
        assert_eq!(code_point_to_byte(s, 3), 7);
        assert_eq!(code_point_to_byte(s, 99), 7);
        assert_eq!(byte_to_code_point(s, 6), 2);
        assert_eq!(byte_to_code_point(s, 4), 1);
        assert_eq!(byte_to_code_point(s, 99), 3);
    }

    #[test]
    fn context_reads_jupyterlab_cell_metadata() {
        let (iopub, _rx) = Iopub::capture();
        let ctx = ExecuteContext {
            silent: false,
            store_history: true,
            allow_stdin: false,
            stop_on_error: true,
            user_expressions: HashMap::new(),
            metadata: serde_json::json!({"cellId": "abc", "deletedCells": ["x", "y"]}),
            execution_count: 1,
            msg_id: "m".into(),
            iopub,
        };
        assert_eq!(ctx.cell_id(), Some("abc"));
        assert_eq!(ctx.deleted_cells(), ["x", "y"]);
    }
}
