//! The backend thread: shell requests one at a time, in order, each wrapped in `status: busy`
//! and `status: idle`, handed to the [`Backend`] through a table of handlers by message type
//! (as ipykernel keeps its `shell_handlers`). A backend call that panics is answered as an
//! error and the kernel goes on.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};

use jupyter_protocol::{
    CommClose, CommInfoRequest, CommMsg, CommOpen, CompleteRequest, ExecuteReply, ExecuteRequest,
    ExecutionCount, InspectRequest, IsCompleteReply, IsCompleteRequest, ReplyError, ReplyStatus,
    ShutdownRequest,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::backend::{
    byte_to_code_point, code_point_to_byte, Backend, CommContext, ExecuteContext, ExecuteOutcome,
    IsComplete, Superseded,
};
use super::history::History;
use super::iopub::{Iopub, Outgoing};
use super::shared::{log, Job, Kernel, Stop};
use super::wire::Message;

/// How long the shell must be quiet before the backend's [`Backend::idle`] runs.
const IDLE_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// What the backend thread does after a request.
enum Flow {
    Continue,
    Stop,
}

/// A handler of one shell message type.
type Handler<B> = fn(&mut Worker<B>, &Message, &Iopub) -> serde_json::Result<Flow>;

/// The backend thread.
pub(super) struct Worker<B> {
    backend: B,
    kernel: Arc<Kernel>,
    shell: mpsc::UnboundedSender<Outgoing>,
    stop: mpsc::UnboundedSender<Stop>,
    execution_count: usize,
    history: History,
    jobs: std_mpsc::Receiver<Job>,
    /// Jobs taken from `jobs` ahead of their turn (to abort them), in order.
    pending: VecDeque<Job>,
}

impl<B: Backend> Worker<B> {
    pub(super) fn new(
        backend: B,
        kernel: Arc<Kernel>,
        shell: mpsc::UnboundedSender<Outgoing>,
        stop: mpsc::UnboundedSender<Stop>,
        jobs: std_mpsc::Receiver<Job>,
    ) -> Self {
        Worker {
            backend,
            kernel,
            shell,
            stop,
            execution_count: 0,
            history: History::default(),
            jobs,
            pending: VecDeque::new(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let job = match self.pending.pop_front() {
                Some(job) => job,
                None => match self.jobs.try_recv() {
                    Ok(job) => job,
                    Err(std_mpsc::TryRecvError::Disconnected) => return,
                    // Deferred work waits for a pause: a client running a notebook sends the
                    // next cell right after each reply.
                    Err(std_mpsc::TryRecvError::Empty) => {
                        match self.jobs.recv_timeout(IDLE_AFTER) {
                            Ok(job) => job,
                            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                                let _ = guarded("idle", || self.backend.idle());
                                match self.jobs.recv() {
                                    Ok(job) => job,
                                    Err(_) => return,
                                }
                            }
                        }
                    }
                },
            };
            self.kernel.busy.store(true, Ordering::SeqCst);
            let flow = match job {
                Job::Request(request) => self.handle(&request),
                Job::Abort(request) => {
                    self.abort(&request);
                    Flow::Continue
                }
                Job::Shutdown { restart, done } => {
                    let _ = guarded("shutdown", || self.backend.shutdown(restart));
                    let _ = done.send(());
                    return;
                }
            };
            self.kernel.busy.store(false, Ordering::SeqCst);
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    /// An execute failed with `stop_on_error`: the execute requests already queued are to be
    /// aborted. Called before the failing request's reply goes out, so that a request the client
    /// sends after reading that reply is not among them.
    fn abort_queued(&mut self) {
        self.pending.extend(self.jobs.try_iter());
        for job in self.pending.iter_mut() {
            if let Job::Request(r) = job {
                if r.msg_type() == "execute_request" {
                    *job = Job::Abort(r.clone());
                }
            }
        }
    }

    fn send_reply(&self, request: &Message, msg_type: &str, content: Value) {
        let reply = self.kernel.reply(request, msg_type, content);
        let _ = self.shell.send(Outgoing::Message(Box::new(reply)));
    }

    /// One shell request, wrapped in busy/idle.
    fn handle(&mut self, request: &Message) -> Flow {
        let iopub = self.kernel.iopub.with_parent(Some(&request.header));
        iopub.status("busy");
        let flow = match self.dispatch(request, &iopub) {
            Ok(flow) => flow,
            Err(e) => {
                let msg_type = request.msg_type();
                log(format_args!("shell: bad {msg_type}: {e}"));
                if let Some(base) = msg_type.strip_suffix("_request") {
                    let content = json!({
                        "status": "error", "ename": "BadRequest", "evalue": e.to_string(),
                        "traceback": [],
                    });
                    self.send_reply(request, &format!("{base}_reply"), content);
                }
                Flow::Continue
            }
        };
        iopub.status("idle");
        flow
    }

    /// The handler of each shell message type.
    const HANDLERS: [(&'static str, Handler<B>); 11] = [
        ("execute_request", Self::execute_request),
        ("kernel_info_request", Self::kernel_info_request),
        ("complete_request", Self::complete_request),
        ("inspect_request", Self::inspect_request),
        ("is_complete_request", Self::is_complete_request),
        ("history_request", Self::history_request),
        ("comm_info_request", Self::comm_info_request),
        ("comm_open", Self::comm_open),
        ("comm_msg", Self::comm_msg),
        ("comm_close", Self::comm_close),
        ("shutdown_request", Self::shutdown_request),
    ];

    fn dispatch(&mut self, request: &Message, iopub: &Iopub) -> serde_json::Result<Flow> {
        let msg_type = request.msg_type();
        match Self::HANDLERS.iter().find(|(t, _)| *t == msg_type) {
            Some((_, handler)) => handler(self, request, iopub),
            None => {
                log(format_args!("shell: ignoring unsupported {msg_type}"));
                Ok(Flow::Continue)
            }
        }
    }

    /// What a comm handler hands the backend.
    fn comm_context(request: &Message, iopub: &Iopub) -> CommContext {
        CommContext {
            iopub: iopub.clone(),
            metadata: request.metadata.clone(),
            buffers: request.buffers.iter().map(|b| b.to_vec()).collect(),
            superseded: Superseded::never(),
        }
    }

    fn kernel_info_request(&mut self, request: &Message, _: &Iopub) -> serde_json::Result<Flow> {
        let info = self.kernel.kernel_info.clone();
        self.send_reply(request, "kernel_info_reply", info);
        Ok(Flow::Continue)
    }

    fn complete_request(&mut self, request: &Message, _: &Iopub) -> serde_json::Result<Flow> {
        let r: CompleteRequest = parse(request)?;
        let cursor = code_point_to_byte(&r.code, r.cursor_pos);
        let c = guarded("complete", || self.backend.complete(&r.code, cursor)).unwrap_or_default();
        let content = json!({
            "status": "ok",
            "matches": c.matches,
            "cursor_start": byte_to_code_point(&r.code, c.cursor_start),
            "cursor_end": byte_to_code_point(&r.code, c.cursor_end),
            "metadata": c.metadata,
        });
        self.send_reply(request, "complete_reply", content);
        Ok(Flow::Continue)
    }

    fn inspect_request(&mut self, request: &Message, _: &Iopub) -> serde_json::Result<Flow> {
        let r: InspectRequest = parse(request)?;
        let cursor = code_point_to_byte(&r.code, r.cursor_pos);
        let level = r.detail_level.unwrap_or(0).min(u8::MAX as usize) as u8;
        let data = guarded("inspect", || self.backend.inspect(&r.code, cursor, level))
            .ok()
            .flatten();
        let content = json!({
            "status": "ok",
            "found": data.is_some(),
            "data": data.unwrap_or_default(),
            "metadata": {},
        });
        self.send_reply(request, "inspect_reply", content);
        Ok(Flow::Continue)
    }

    fn is_complete_request(&mut self, request: &Message, _: &Iopub) -> serde_json::Result<Flow> {
        let r: IsCompleteRequest = parse(request)?;
        let answer = guarded("is_complete", || self.backend.is_complete(&r.code))
            .unwrap_or(IsComplete::Unknown);
        let reply = match answer {
            IsComplete::Complete => IsCompleteReply::complete(),
            IsComplete::Incomplete { indent } => IsCompleteReply::incomplete(indent),
            IsComplete::Invalid => IsCompleteReply::invalid(),
            IsComplete::Unknown => IsCompleteReply::unknown(),
        };
        self.send_reply(request, "is_complete_reply", serde_json::to_value(reply)?);
        Ok(Flow::Continue)
    }

    fn history_request(&mut self, request: &Message, _: &Iopub) -> serde_json::Result<Flow> {
        let history = self.history.query(&request.content);
        let content = json!({"status": "ok", "history": history});
        self.send_reply(request, "history_reply", content);
        Ok(Flow::Continue)
    }

    fn comm_info_request(&mut self, request: &Message, _: &Iopub) -> serde_json::Result<Flow> {
        let r: CommInfoRequest = parse(request)?;
        let target = r.target_name.as_deref();
        let comms = guarded("comm_info", || self.backend.comm_info(target)).unwrap_or_default();
        let comms: serde_json::Map<String, Value> = comms
            .into_iter()
            .map(|(id, target_name)| (id, json!({"target_name": target_name})))
            .collect();
        let content = json!({"status": "ok", "comms": comms});
        self.send_reply(request, "comm_info_reply", content);
        Ok(Flow::Continue)
    }

    fn comm_open(&mut self, request: &Message, iopub: &Iopub) -> serde_json::Result<Flow> {
        let c: CommOpen = parse(request)?;
        let ctx = Self::comm_context(request, iopub);
        let data = Value::Object(c.data);
        let _ = guarded("comm_open", || {
            self.backend
                .comm_open(&c.comm_id.0, &c.target_name, data, &ctx)
        });
        Ok(Flow::Continue)
    }

    /// A widget update: the backend can ask whether a newer one for the same comm has arrived
    /// since (a slider dragged on), to skip work that would be redone.
    fn comm_msg(&mut self, request: &Message, iopub: &Iopub) -> serde_json::Result<Flow> {
        let c: CommMsg = parse(request)?;
        let mut ctx = Self::comm_context(request, iopub);
        let latest = self.kernel.comm_latest.clone();
        let id = c.comm_id.0.clone();
        let mine = self
            .kernel
            .comm_arrival
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(request.msg_id())
            .unwrap_or(u64::MAX);
        ctx.superseded = Superseded::new(move || {
            let latest = latest.lock().unwrap_or_else(|e| e.into_inner());
            latest.get(&id).is_some_and(|&n| n > mine)
        });
        let data = Value::Object(c.data);
        let _ = guarded("comm_msg", || {
            self.backend.comm_msg(&c.comm_id.0, data, &ctx)
        });
        Ok(Flow::Continue)
    }

    fn comm_close(&mut self, request: &Message, iopub: &Iopub) -> serde_json::Result<Flow> {
        let c: CommClose = parse(request)?;
        let ctx = Self::comm_context(request, iopub);
        let data = Value::Object(c.data);
        let _ = guarded("comm_close", || {
            self.backend.comm_close(&c.comm_id.0, data, &ctx)
        });
        Ok(Flow::Continue)
    }

    fn shutdown_request(&mut self, request: &Message, _: &Iopub) -> serde_json::Result<Flow> {
        let restart = parse::<ShutdownRequest>(request)?.restart;
        let _ = guarded("shutdown", || self.backend.shutdown(restart));
        let content = json!({"status": "ok", "restart": restart});
        self.send_reply(request, "shutdown_reply", content);
        let _ = self.stop.send(Stop::Shell);
        Ok(Flow::Stop)
    }

    fn execute_request(&mut self, request: &Message, iopub: &Iopub) -> serde_json::Result<Flow> {
        let r: ExecuteRequest = parse(request)?;
        self.execute(request, r, iopub)
    }

    fn execute(
        &mut self,
        request: &Message,
        r: ExecuteRequest,
        iopub: &Iopub,
    ) -> serde_json::Result<Flow> {
        if !r.silent && r.store_history {
            self.execution_count += 1;
            self.history.record(self.execution_count, &r.code);
        }
        let count = self.execution_count;
        if !r.silent {
            iopub.send(
                "execute_input",
                json!({"code": r.code, "execution_count": count}),
                json!({}),
            );
        }
        let ctx = ExecuteContext {
            silent: r.silent,
            store_history: r.store_history,
            allow_stdin: r.allow_stdin,
            stop_on_error: r.stop_on_error,
            user_expressions: r.user_expressions.clone().unwrap_or_default(),
            metadata: request.metadata.clone(),
            execution_count: count,
            msg_id: request.msg_id().to_string(),
            iopub: iopub.clone(),
        };
        let outcome = guarded("execute", || self.backend.execute(&r.code, &ctx))
            .unwrap_or_else(|panic| ExecuteOutcome::error("KernelPanic", panic, Vec::new()));
        let reply = match outcome {
            ExecuteOutcome::Ok { user_expressions } => ExecuteReply {
                status: ReplyStatus::Ok,
                execution_count: ExecutionCount::new(count),
                payload: Vec::new(),
                user_expressions: Some(user_expressions),
                error: None,
            },
            ExecuteOutcome::Error {
                ename,
                evalue,
                mut traceback,
            } => {
                if traceback.is_empty() {
                    traceback.push(format!("{ename}: {evalue}"));
                }
                if !r.silent {
                    iopub.error(&ename, &evalue, &traceback);
                }
                if r.stop_on_error {
                    self.abort_queued();
                }
                ExecuteReply {
                    status: ReplyStatus::Error,
                    execution_count: ExecutionCount::new(count),
                    payload: Vec::new(),
                    user_expressions: Some(HashMap::new()),
                    error: Some(Box::new(ReplyError {
                        ename,
                        evalue,
                        traceback,
                    })),
                }
            }
        };
        self.send_reply(request, "execute_reply", serde_json::to_value(reply)?);
        Ok(Flow::Continue)
    }

    /// Answers a queued execute request that an earlier error cancelled.
    fn abort(&self, request: &Message) {
        let iopub = self.kernel.iopub.with_parent(Some(&request.header));
        iopub.status("busy");
        let content = json!({
            "status": "aborted", "execution_count": self.execution_count,
            "user_expressions": {}, "payload": [],
        });
        self.send_reply(request, "execute_reply", content);
        iopub.status("idle");
    }
}

/// Deserializes a request's content into its `jupyter_protocol` type.
pub(super) fn parse<T: DeserializeOwned>(msg: &Message) -> serde_json::Result<T> {
    serde_json::from_value(msg.content.clone())
}

/// Runs a backend call, turning a panic into `Err(message)` so the kernel keeps answering.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        log(format_args!("backend panicked in {what}: {text}"));
        text
    })
}
