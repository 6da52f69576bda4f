//! The running kernel: binds the five channels and moves messages between them and the
//! [`Backend`].
//!
//! Threads and tasks:
//! - a current-thread Tokio runtime (the thread that calls [`serve`]) runs one task per socket:
//!   the shell reader, the shell and IOPub writers, the control loop, heartbeat (echo) and stdin
//!   (bound; input requests are not used yet, so its messages are logged and dropped);
//! - the backend thread (`shell.rs`) takes shell requests one at a time, in order, from a
//!   queue, publishes `status: busy`, hands the request to its handler (blocking), sends the
//!   reply and publishes `status: idle`;
//! - the control loop answers `interrupt_request` (calling the [`Interrupter`] while the backend
//!   thread may be inside `execute`), `shutdown_request` and `kernel_info_request` on its own,
//!   also wrapped in busy/idle.
//!
//! Every incoming message is verified first (see [`wire`](super::wire)); one with a bad or
//! missing signature is logged to stderr and dropped. After an execute error with
//! `stop_on_error`, execute requests already queued are answered with status `aborted`, as
//! ipykernel does ("Run All" stops at the failing cell).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use jupyter_protocol::{
    CodeMirrorMode, KernelInfoReply, LanguageInfo, ReplyStatus, ShutdownRequest,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use zeromq::{
    PubSocket, RepSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqError, ZmqMessage,
};

use super::backend::{Backend, Interrupter, KernelInfo};
use super::connection::{self, ConnectionInfo, Endpoints};
use super::iopub::{Iopub, Outgoing};
use super::shared::{log, Job, Kernel, Stop};
use super::shell::{parse, Worker};
use super::wire::{ReplayGuard, Signer, PROTOCOL_VERSION};

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

    let worker = Worker::new(backend, kernel.clone(), shell_tx.clone(), stop_tx, job_rx);
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
