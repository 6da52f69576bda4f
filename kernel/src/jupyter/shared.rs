//! What the socket tasks and the backend thread share: the kernel's signing key and session,
//! its parentless IOPub, whether the backend is busy, the arrival order of widget updates, and
//! the jobs and stop reasons that pass between them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;
use zeromq::ZmqMessage;

use super::iopub::Iopub;
use super::wire::{Message, ReplayGuard, Signer, WireError};

pub(super) fn log(text: std::fmt::Arguments) {
    eprintln!("[qplay kernel] {text}");
}

/// State shared by the socket tasks and the backend thread.
pub(super) struct Kernel {
    pub(super) signer: Signer,
    pub(super) replay: Mutex<ReplayGuard>,
    pub(super) session: Arc<str>,
    /// IOPub without a parent; `with_parent` gives per-request handles.
    pub(super) iopub: Iopub,
    pub(super) kernel_info: Value,
    /// Whether the backend thread is handling a request.
    pub(super) busy: AtomicBool,
    /// The newest `comm_msg` received per comm id (a number from `comm_counter`), so that a
    /// backend can tell when a widget update it is working on has been superseded.
    pub(super) comm_latest: Arc<Mutex<HashMap<String, u64>>>,
    pub(super) comm_counter: AtomicU64,
    /// The number each queued `comm_msg` got on arrival, by message id.
    pub(super) comm_arrival: Mutex<HashMap<String, u64>>,
}

impl Kernel {
    /// Verifies and parses frames from `channel`; logs and returns `None` on failure.
    pub(super) fn decode(&self, channel: &str, frames: ZmqMessage) -> Option<Message> {
        let frames = frames.into_vec();
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        match Message::decode(frames, &self.signer, Some(&mut replay)) {
            Ok(msg) => Some(msg),
            Err(e) => {
                let what = match e {
                    WireError::MissingSignature
                    | WireError::BadSignature
                    | WireError::ReplayedSignature => "rejected unauthenticated message",
                    _ => "rejected malformed message",
                };
                log(format_args!("{channel}: {what}: {e}"));
                None
            }
        }
    }

    pub(super) fn frames(&self, msg: &Message) -> ZmqMessage {
        ZmqMessage::try_from(msg.encode(&self.signer)).expect("a message has frames")
    }

    pub(super) fn reply(&self, request: &Message, msg_type: &str, content: Value) -> Message {
        Message::reply_to(request, msg_type, content, &self.session)
    }
}

/// Why the kernel stops.
pub(super) enum Stop {
    /// `shutdown_request` on shell: the backend thread has already shut the backend down.
    Shell,
    /// `shutdown_request` on control: the backend still has to be shut down.
    Control { restart: bool },
}

pub(super) enum Job {
    Request(Message),
    /// A queued execute request cancelled by an earlier error.
    Abort(Message),
    Shutdown {
        restart: bool,
        done: oneshot::Sender<()>,
    },
}
