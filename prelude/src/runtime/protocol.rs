//! The messages between the kernel and its evcxr runtime, defined once for both sides: one
//! line each, [`PREFIX`] and the JSON for runtime → kernel, the JSON alone for kernel → runtime.
//!
//! - Kernel → runtime ([`ToRuntime`]): requests on the link, a Unix socket (see
//!   [`super::link`]).
//! - Runtime → kernel ([`FromRuntime`]): the answers to those requests on the link, each
//!   request's ending with its `Done`; and, while evcxr runs a compiled cell, the cell's
//!   displays and widget messages on the runtime's stdout, in order with its text.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Marks a line that carries a [`FromRuntime`] message.
pub const PREFIX: &str = "QPLAY_FROM_RUNTIME ";

/// Output data keyed by MIME type (`text/plain`, `text/html`, `image/svg+xml`, …).
pub type MimeBundle = Map<String, Value>;

/// A widget model's state (or part of it), as ipywidgets sends it.
pub type State = Map<String, Value>;

/// What the runtime tells the kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FromRuntime {
    /// `display()`: a new output of the running cell.
    Display {
        data: MimeBundle,
        display_id: String,
    },
    /// `DisplayHandle::update`: replaces the output shown under `display_id`.
    Update {
        data: MimeBundle,
        display_id: String,
    },
    /// `clear_output()`; with `wait`, when the next output arrives.
    Clear { wait: bool },
    /// A new widget model. With `wait` the runtime waits for [`ToRuntime::Opened`].
    CommOpen {
        comm_id: String,
        state: State,
        wait: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        form: Option<Form>,
    },
    /// A widget's state changed in the runtime (`set`, a live view redrawn).
    CommMsg { comm_id: String, state: State },
    /// The runtime starts answering request `seq`: what it prints until `Done` belongs to it
    /// (printed on stdout for the runtime's relay, which sends the rest of the answer on the
    /// link; never sent to the kernel).
    Begin { seq: u64 },
    /// Text printed on stdout or stderr while answering a request.
    Stream { name: String, text: String },
    /// A wrapped cell's final value.
    Result { data: MimeBundle },
    /// The kernel's [`ToRuntime`] request `seq` is finished.
    Done {
        seq: u64,
        #[serde(default)]
        outcome: Outcome,
    },
}

/// The members and submit button of a `form`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Form {
    pub submit: String,
    pub members: Vec<String>,
}

/// How a request ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Ok,
    /// The wrapped cell panicked (the panic also printed on its stderr); its inputs were put
    /// back.
    Panicked {
        #[serde(default)]
        message: String,
    },
    /// The runtime holds no wrapped function for the cell (the kernel then compiles it).
    Unknown,
}

/// One widget's new state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub comm_id: String,
    pub state: State,
}

/// What the kernel asks of the runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToRuntime {
    /// The state widget `comm_id` starts from (e.g. the value the user had set before its cell
    /// ran again).
    Opened { comm_id: String, state: State },
    /// New values from the browser and button clicks; live views redraw.
    Update {
        seq: u64,
        changes: Vec<Change>,
        clicks: Vec<String>,
    },
    /// Widgets closed in the browser.
    Close { seq: u64, comm_ids: Vec<String> },
    /// Call wrapped cell `cell` with the notebook's current variables.
    Run { seq: u64, cell: String },
}

impl FromRuntime {
    /// The message as one line for the kernel: [`PREFIX`] and the JSON, with `EVCXR_` escaped
    /// (as `EVCXR\u005f`) so that evcxr, which scans every stdout line for its own markers,
    /// never mistakes the payload for one.
    pub fn line(&self) -> String {
        let json = serde_json::to_string(self)
            .unwrap_or_default()
            .replace("EVCXR_", "EVCXR\\u005f");
        format!("{PREFIX}{json}")
    }

    /// The message a line carries, if it is one.
    pub fn parse(line: &str) -> Option<FromRuntime> {
        serde_json::from_str(line.strip_prefix(PREFIX)?).ok()
    }
}

impl ToRuntime {
    /// The request's number (`opened` has none: nothing answers it).
    pub fn seq(&self) -> u64 {
        match self {
            ToRuntime::Opened { .. } => 0,
            ToRuntime::Update { seq, .. }
            | ToRuntime::Close { seq, .. }
            | ToRuntime::Run { seq, .. } => *seq,
        }
    }

    /// The message as one line (without the newline).
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(line: &str) -> Option<ToRuntime> {
        serde_json::from_str(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_round_trip_and_hide_evcxr_markers() {
        let mut data = MimeBundle::new();
        data.insert("text/plain".into(), "EVCXR_BEGIN_CONTENT x".into());
        let m = FromRuntime::Display {
            data,
            display_id: "d".into(),
        };
        let line = m.line();
        assert!(
            line.starts_with(PREFIX) && !line.contains("EVCXR_"),
            "{line}"
        );
        assert_eq!(FromRuntime::parse(&line), Some(m));
        let done = FromRuntime::parse(&format!("{PREFIX}{}", json!({"kind": "done", "seq": 3})));
        assert_eq!(
            done,
            Some(FromRuntime::Done {
                seq: 3,
                outcome: Outcome::Ok
            })
        );
        assert_eq!(FromRuntime::parse("plain text"), None);
        let run = ToRuntime::Run {
            seq: 1,
            cell: "c".into(),
        };
        assert_eq!(ToRuntime::parse(&run.line()), Some(run));
    }
}
