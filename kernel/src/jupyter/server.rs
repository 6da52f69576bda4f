//! The running kernel: binds the five channels and moves messages between them and the
//! [`Backend`].
//!
//! Threads and tasks:
//! - a current-thread Tokio runtime (the thread that calls [`serve`]) runs one task per socket:
//!   the shell reader, the shell and IOPub writers, the control loop, heartbeat (echo) and stdin
//!   (bound; input requests are not used yet, so its messages are logged and dropped);
//! - the backend thread takes shell requests one at a time, in order, from a queue, publishes
//!   `status: busy`, handles the request (blocking), sends the reply and publishes
//!   `status: idle`;
//! - the control loop answers `interrupt_request` (calling the [`Interrupter`] while the backend
//!   thread may be inside `execute`), `shutdown_request` and `kernel_info_request` on its own,
//!   also wrapped in busy/idle.
//!
//! Every incoming message is verified first (see [`wire`](super::wire)); one with a bad or
//! missing signature is logged to stderr and dropped. After an execute error with
//! `stop_on_error`, execute requests already queued are answered with status `aborted`, as
//! ipykernel does ("Run All" stops at the failing cell).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use jupyter_protocol::{
    CodeMirrorMode, CommClose, CommInfoRequest, CommMsg, CommOpen, CompleteRequest, ExecuteReply,
    ExecuteRequest, ExecutionCount, InspectRequest, IsCompleteReply, IsCompleteRequest,
    KernelInfoReply, LanguageInfo, ReplyError, ReplyStatus, ShutdownRequest,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use zeromq::{
    PubSocket, RepSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqError, ZmqMessage,
};

use super::backend::{
    byte_to_code_point, code_point_to_byte, Backend, CommContext, ExecuteContext, ExecuteOutcome,
    Interrupter, IsComplete, KernelInfo, Superseded,
};
use super::connection::{self, ConnectionInfo, Endpoints};
use super::history::History;
use super::iopub::{Iopub, Outgoing};
use super::wire::{Message, ReplayGuard, Signer, WireError, PROTOCOL_VERSION};

/// How long a control-channel shutdown waits for [`Backend::shutdown`] before exiting anyway.
const BACKEND_SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Runs the kernel for `connection_file` until a `shutdown_request`, then returns `Ok(())`;
/// the caller should exit the process. Blocks the calling thread, which must not be inside a
/// Tokio runtime. Errors: unreadable connection file, a port that cannot be bound, a socket or
/// the backend thread failing.
pub fn serve<B: Backend, I: Interrupter>(
    connection_file: &Path,
    backend: B,
    interrupter: I,
) -> Result<()> {
    let info = connection::load(connection_file)?;
    serve_connection(info, backend, interrupter)
}

/// [`serve`] with already-parsed connection information.
pub fn serve_connection<B: Backend, I: Interrupter>(
    info: ConnectionInfo,
    backend: B,
    interrupter: I,
) -> Result<()> {
    connection::check(&info)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the kernel's async runtime")?;
    runtime.block_on(run(info, backend, Arc::new(interrupter)))
}

/// The `kernel.json` of a kernelspec that starts `program kernel -f {connection_file}`.
pub fn kernelspec(program: &str, display_name: &str) -> Value {
    json!({
        "argv": [program, "kernel", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "rust",
        "interrupt_mode": "message",
        "metadata": {},
    })
}

fn log(text: std::fmt::Arguments) {
    eprintln!("[qplay kernel] {text}");
}

/// State shared by the socket tasks and the backend thread.
struct Kernel {
    signer: Signer,
    replay: Mutex<ReplayGuard>,
    session: Arc<str>,
    /// IOPub without a parent; `with_parent` gives per-request handles.
    iopub: Iopub,
    kernel_info: Value,
    /// Whether the backend thread is handling a request.
    busy: AtomicBool,
    /// The newest `comm_msg` received per comm id (a number from `comm_counter`), so that a
    /// backend can tell when a widget update it is working on has been superseded.
    comm_latest: Arc<Mutex<HashMap<String, u64>>>,
    comm_counter: AtomicU64,
    /// The number each queued `comm_msg` got on arrival, by message id.
    comm_arrival: Mutex<HashMap<String, u64>>,
}

impl Kernel {
    /// Verifies and parses frames from `channel`; logs and returns `None` on failure.
    fn decode(&self, channel: &str, frames: ZmqMessage) -> Option<Message> {
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

    fn frames(&self, msg: &Message) -> ZmqMessage {
        ZmqMessage::try_from(msg.encode(&self.signer)).expect("a message has frames")
    }

    fn reply(&self, request: &Message, msg_type: &str, content: Value) -> Message {
        Message::reply_to(request, msg_type, content, &self.session)
    }
}

/// Why the kernel stops.
enum Stop {
    /// `shutdown_request` on shell: the backend thread has already shut the backend down.
    Shell,
    /// `shutdown_request` on control: the backend still has to be shut down.
    Control { restart: bool },
}

enum Job {
    Request(Message),
    /// A queued execute request cancelled by an earlier error.
    Abort(Message),
    Shutdown {
        restart: bool,
        done: oneshot::Sender<()>,
    },
}

async fn run<B: Backend>(
    info: ConnectionInfo,
    backend: B,
    interrupter: Arc<dyn Interrupter>,
) -> Result<()> {
    let endpoints = Endpoints::of(&info);
    let session: Arc<str> = uuid::Uuid::new_v4().to_string().into();
    let kernel_info = kernel_info_content(&backend.kernel_info());

    let mut shell = RouterSocket::new();
    let mut control = RouterSocket::new();
    let mut stdin = RouterSocket::new();
    let mut iopub_socket = PubSocket::new();
    let mut heartbeat = RepSocket::new();
    for (name, endpoint, bound) in [
        (
            "shell",
            &endpoints.shell,
            shell.bind(&endpoints.shell).await,
        ),
        (
            "control",
            &endpoints.control,
            control.bind(&endpoints.control).await,
        ),
        (
            "stdin",
            &endpoints.stdin,
            stdin.bind(&endpoints.stdin).await,
        ),
        (
            "iopub",
            &endpoints.iopub,
            iopub_socket.bind(&endpoints.iopub).await,
        ),
        (
            "heartbeat",
            &endpoints.heartbeat,
            heartbeat.bind(&endpoints.heartbeat).await,
        ),
    ] {
        bound.with_context(|| format!("binding the {name} channel to {endpoint}"))?;
    }

    let (iopub_tx, iopub_rx) = mpsc::unbounded_channel();
    let (shell_tx, shell_rx) = mpsc::unbounded_channel();
    let (stop_tx, mut stop_rx) = mpsc::unbounded_channel();
    let (job_tx, job_rx) = std_mpsc::channel();
    let kernel = Arc::new(Kernel {
        signer: Signer::new(info.key.as_bytes()),
        replay: Mutex::new(ReplayGuard::default()),
        session: session.clone(),
        iopub: Iopub::new(iopub_tx, session),
        kernel_info,
        busy: AtomicBool::new(false),
        comm_latest: Arc::default(),
        comm_counter: AtomicU64::new(0),
        comm_arrival: Mutex::default(),
    });

    let (shell_send, shell_recv) = shell.split();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(write_loop(
        iopub_socket,
        iopub_rx,
        kernel.signer.clone(),
        "iopub",
    ));
    tasks.spawn(write_loop(
        shell_send,
        shell_rx,
        kernel.signer.clone(),
        "shell",
    ));
    tasks.spawn(shell_reader(shell_recv, job_tx.clone(), kernel.clone()));
    tasks.spawn(control_loop(
        control,
        kernel.clone(),
        interrupter.clone(),
        stop_tx.clone(),
    ));
    tasks.spawn(heartbeat_loop(heartbeat));
    tasks.spawn(stdin_loop(stdin, kernel.clone()));

    let worker = Worker {
        backend,
        kernel: kernel.clone(),
        shell: shell_tx.clone(),
        stop: stop_tx,
        execution_count: 0,
        history: History::default(),
        jobs: job_rx,
        pending: VecDeque::new(),
    };
    std::thread::Builder::new()
        .name("qplay-backend".into())
        .spawn(move || worker.run())
        .context("starting the backend thread")?;

    kernel.iopub.status("starting");

    let stop = tokio::select! {
        biased;
        stop = stop_rx.recv() => stop,
        ended = tasks.join_next() => {
            let why = match ended {
                Some(Ok(Err(e))) => e,
                Some(Err(e)) => anyhow!("a kernel task failed: {e}"),
                _ => anyhow!("a kernel task ended"),
            };
            return Err(why);
        }
    };
    if let Some(Stop::Control { restart }) = stop {
        if kernel.busy.load(Ordering::SeqCst) {
            interrupter.interrupt();
        }
        let (done, finished) = oneshot::channel();
        if job_tx.send(Job::Shutdown { restart, done }).is_ok()
            && tokio::time::timeout(BACKEND_SHUTDOWN_WAIT, finished)
                .await
                .is_err()
        {
            log(format_args!(
                "backend did not shut down in time; exiting anyway"
            ));
        }
    }
    // Let the replies and the last `idle` reach the wire before the process exits.
    let (ack, shell_flushed) = oneshot::channel();
    let _ = shell_tx.send(Outgoing::Flush(ack));
    let flushed = async {
        let _ = shell_flushed.await;
        let _ = kernel.iopub.flush().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), flushed).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

fn kernel_info_content(info: &KernelInfo) -> Value {
    let reply = KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: PROTOCOL_VERSION.to_string(),
        implementation: "qplay".to_string(),
        implementation_version: env!("CARGO_PKG_VERSION").to_string(),
        language_info: LanguageInfo {
            name: "rust".to_string(),
            version: info.language_version.clone(),
            mimetype: Some("text/rust".to_string()),
            file_extension: Some(".rs".to_string()),
            pygments_lexer: Some("rust".to_string()),
            codemirror_mode: Some(CodeMirrorMode::Simple("rust".to_string())),
            nbconvert_exporter: None,
        },
        banner: info.banner.clone(),
        help_links: info.help_links.clone(),
        debugger: false,
        error: None,
    };
    serde_json::to_value(reply).expect("kernel_info_reply serializes")
}

/// Sends what arrives on `rx` through `socket`, signed, in order.
async fn write_loop<S: SocketSend>(
    mut socket: S,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    signer: Signer,
    channel: &'static str,
) -> Result<()> {
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Message(msg) => {
                let frames = ZmqMessage::try_from(msg.encode(&signer)).expect("frames");
                if let Err(e) = socket.send(frames).await {
                    log(format_args!(
                        "{channel}: could not send {}: {e}",
                        msg.msg_type()
                    ));
                }
            }
            Outgoing::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
    Ok(())
}

/// Receives shell requests and queues them for the backend thread.
async fn shell_reader(
    mut socket: zeromq::RouterRecvHalf,
    jobs: std_mpsc::Sender<Job>,
    kernel: Arc<Kernel>,
) -> Result<()> {
    loop {
        let frames = socket.recv().await.context("shell channel")?;
        if let Some(msg) = kernel.decode("shell", frames) {
            if msg.msg_type() == "comm_msg" {
                if let Some(id) = msg.content.get("comm_id").and_then(Value::as_str) {
                    let n = kernel.comm_counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut latest = kernel.comm_latest.lock().unwrap_or_else(|e| e.into_inner());
                    latest.insert(id.to_string(), n);
                    let mut arrival = kernel
                        .comm_arrival
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    arrival.insert(msg.msg_id().to_string(), n);
                }
            }
            jobs.send(Job::Request(msg))
                .map_err(|_| anyhow!("the backend thread has stopped"))?;
        }
    }
}

async fn control_loop(
    mut socket: RouterSocket,
    kernel: Arc<Kernel>,
    interrupter: Arc<dyn Interrupter>,
    stop: mpsc::UnboundedSender<Stop>,
) -> Result<()> {
    loop {
        let frames = socket.recv().await.context("control channel")?;
        let Some(request) = kernel.decode("control", frames) else {
            continue;
        };
        let iopub = kernel.iopub.with_parent(Some(&request.header));
        iopub.status("busy");
        let mut shutdown = None;
        let reply = match request.msg_type() {
            "interrupt_request" => {
                interrupter.interrupt();
                Some(("interrupt_reply", json!({"status": "ok"})))
            }
            "shutdown_request" => {
                let restart = parse::<ShutdownRequest>(&request).is_ok_and(|r| r.restart);
                shutdown = Some(restart);
                Some((
                    "shutdown_reply",
                    json!({"status": "ok", "restart": restart}),
                ))
            }
            "kernel_info_request" => Some(("kernel_info_reply", kernel.kernel_info.clone())),
            other => {
                log(format_args!("control: ignoring unsupported {other}"));
                None
            }
        };
        if let Some((msg_type, content)) = reply {
            let reply = kernel.reply(&request, msg_type, content);
            if let Err(e) = socket.send(kernel.frames(&reply)).await {
                log(format_args!("control: could not send {msg_type}: {e}"));
            }
        }
        iopub.status("idle");
        if let Some(restart) = shutdown {
            let _ = stop.send(Stop::Control { restart });
            // Stay quiet until the process exits.
            std::future::pending::<()>().await;
        }
    }
}

async fn heartbeat_loop(mut socket: RepSocket) -> Result<()> {
    loop {
        match socket.recv().await {
            Ok(ping) => {
                if let Err(e) = socket.send(ping).await {
                    log(format_args!("heartbeat: {e}"));
                }
            }
            Err(ZmqError::NoMessage) => return Err(anyhow!("heartbeat channel closed")),
            // A client that went away; keep serving the others.
            Err(_) => {}
        }
    }
}

async fn stdin_loop(mut socket: RouterSocket, kernel: Arc<Kernel>) -> Result<()> {
    loop {
        let frames = socket.recv().await.context("stdin channel")?;
        if let Some(msg) = kernel.decode("stdin", frames) {
            log(format_args!("stdin: ignoring {}", msg.msg_type()));
        }
    }
}

/// Deserializes a request's content into its `jupyter_protocol` type.
fn parse<T: DeserializeOwned>(msg: &Message) -> serde_json::Result<T> {
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

/// How long the shell must be quiet before the backend's [`Backend::idle`] runs.
const IDLE_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// What the backend thread does after a request.
enum Flow {
    Continue,
    Stop,
}

/// The backend thread.
struct Worker<B> {
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
    fn run(mut self) {
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

    fn dispatch(&mut self, request: &Message, iopub: &Iopub) -> serde_json::Result<Flow> {
        let comm_context = || CommContext {
            iopub: iopub.clone(),
            metadata: request.metadata.clone(),
            buffers: request.buffers.iter().map(|b| b.to_vec()).collect(),
            superseded: Superseded::never(),
        };
        match request.msg_type() {
            "execute_request" => return self.execute(request, parse(request)?, iopub),
            "kernel_info_request" => {
                self.send_reply(
                    request,
                    "kernel_info_reply",
                    self.kernel.kernel_info.clone(),
                );
            }
            "complete_request" => {
                let r: CompleteRequest = parse(request)?;
                let cursor = code_point_to_byte(&r.code, r.cursor_pos);
                let c = guarded("complete", || self.backend.complete(&r.code, cursor))
                    .unwrap_or_default();
                let content = json!({
                    "status": "ok",
                    "matches": c.matches,
                    "cursor_start": byte_to_code_point(&r.code, c.cursor_start),
                    "cursor_end": byte_to_code_point(&r.code, c.cursor_end),
                    "metadata": c.metadata,
                });
                self.send_reply(request, "complete_reply", content);
            }
            "inspect_request" => {
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
            }
            "is_complete_request" => {
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
            }
            "history_request" => {
                let history = self.history.query(&request.content);
                self.send_reply(
                    request,
                    "history_reply",
                    json!({"status": "ok", "history": history}),
                );
            }
            "comm_info_request" => {
                let r: CommInfoRequest = parse(request)?;
                let target = r.target_name.as_deref();
                let comms =
                    guarded("comm_info", || self.backend.comm_info(target)).unwrap_or_default();
                let comms: serde_json::Map<String, Value> = comms
                    .into_iter()
                    .map(|(id, target_name)| (id, json!({"target_name": target_name})))
                    .collect();
                self.send_reply(
                    request,
                    "comm_info_reply",
                    json!({"status": "ok", "comms": comms}),
                );
            }
            "comm_open" => {
                let c: CommOpen = parse(request)?;
                let ctx = comm_context();
                let _ = guarded("comm_open", || {
                    self.backend.comm_open(
                        &c.comm_id.0,
                        &c.target_name,
                        Value::Object(c.data),
                        &ctx,
                    )
                });
            }
            "comm_msg" => {
                let c: CommMsg = parse(request)?;
                let mut ctx = comm_context();
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
                let _ = guarded("comm_msg", || {
                    self.backend
                        .comm_msg(&c.comm_id.0, Value::Object(c.data), &ctx)
                });
            }
            "comm_close" => {
                let c: CommClose = parse(request)?;
                let ctx = comm_context();
                let _ = guarded("comm_close", || {
                    self.backend
                        .comm_close(&c.comm_id.0, Value::Object(c.data), &ctx)
                });
            }
            "shutdown_request" => {
                let restart = parse::<ShutdownRequest>(request)?.restart;
                let _ = guarded("shutdown", || self.backend.shutdown(restart));
                self.send_reply(
                    request,
                    "shutdown_reply",
                    json!({"status": "ok", "restart": restart}),
                );
                let _ = self.stop.send(Stop::Shell);
                return Ok(Flow::Stop);
            }
            other => log(format_args!("shell: ignoring unsupported {other}")),
        }
        Ok(Flow::Continue)
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
