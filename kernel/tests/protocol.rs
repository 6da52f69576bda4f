//! End-to-end protocol test: `serve` runs with a fake backend on 127.0.0.1 ports taken from a
//! connection file written here, and the test talks to it as a Jupyter client would, with the
//! zeromq crate (DEALER for shell/control, SUB for iopub, REQ for heartbeat).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use jupyter_protocol::{ExpressionResult, Media, MediaType};
use qplay_kernel::jupyter::wire::{Message, Signer};
use qplay_kernel::jupyter::{
    serve, Backend, CommContext, Completion, ExecuteContext, ExecuteOutcome, IsComplete,
    KernelInfo, MimeBundle,
};
use serde_json::{json, Value};
use zeromq::{DealerSocket, ReqSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage};

const KEY: &str = "test-key-0123";
const WAIT: Duration = Duration::from_secs(10);
/// How long to wait before concluding that no reply will come.
const SILENCE: Duration = Duration::from_millis(700);

// ---------------------------------------------------------------------------------------------
// The fake backend

/// What the backend saw, and the interrupt flag it waits on.
#[derive(Default)]
struct Probe {
    seen: Mutex<Vec<String>>,
    interrupted: Mutex<bool>,
    wake: Condvar,
    interrupts: AtomicUsize,
}

impl Probe {
    fn record(&self, what: String) {
        self.seen.lock().unwrap().push(what);
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

struct Fake {
    probe: Arc<Probe>,
    comms: HashMap<String, String>,
}

fn bundle(value: Value) -> MimeBundle {
    value.as_object().cloned().unwrap()
}

impl Backend for Fake {
    fn kernel_info(&self) -> KernelInfo {
        KernelInfo {
            language_version: "1.95.0".into(),
            banner: "fake".into(),
            help_links: vec![jupyter_protocol::HelpLink {
                text: "Rust".into(),
                url: "https://doc.rust-lang.org".into(),
            }],
        }
    }

    fn execute(&mut self, code: &str, ctx: &ExecuteContext) -> ExecuteOutcome {
        let cell = ctx.cell_id().unwrap_or("-");
        self.probe.record(format!("execute:{code}:{cell}"));
        match code {
            "sleep" => {
                let mut flag = self.probe.interrupted.lock().unwrap();
                let deadline = std::time::Instant::now() + WAIT;
                while !*flag && std::time::Instant::now() < deadline {
                    flag = self.probe.wake.wait_timeout(flag, WAIT).unwrap().0;
                }
                let was = std::mem::replace(&mut *flag, false);
                if was {
                    ExecuteOutcome::error("Interrupted", "interrupted by the user", vec![])
                } else {
                    ExecuteOutcome::ok()
                }
            }
            "fail" => {
                // Long enough for the requests sent right after to be queued.
                std::thread::sleep(Duration::from_millis(300));
                ExecuteOutcome::error("Boom", "it failed", vec!["trace line".into()])
            }
            "thread" => {
                let iopub = ctx.iopub.clone();
                std::thread::spawn(move || iopub.stream("stderr", "from a thread\n"))
                    .join()
                    .unwrap();
                ExecuteOutcome::ok()
            }
            _ => {
                ctx.iopub.stream("stdout", code);
                ctx.iopub.execute_result(
                    ctx.execution_count,
                    bundle(json!({"text/plain": format!("len {}", code.len())})),
                    MimeBundle::new(),
                );
                let user_expressions = ctx
                    .user_expressions
                    .iter()
                    .map(|(name, expr)| {
                        let data = Media::new(vec![MediaType::Plain(format!("value of {expr}"))]);
                        let result = ExpressionResult::Ok {
                            data,
                            metadata: Default::default(),
                        };
                        (name.clone(), result)
                    })
                    .collect();
                ExecuteOutcome::Ok { user_expressions }
            }
        }
    }

    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completion {
        // Replace the word before the cursor (byte offsets).
        let start = code[..cursor_pos].rfind(' ').map_or(0, |space| space + 1);
        Completion {
            matches: vec!["alpha".into(), "alphabet".into()],
            cursor_start: start,
            cursor_end: cursor_pos,
            metadata: MimeBundle::new(),
        }
    }

    fn inspect(&mut self, code: &str, cursor_pos: usize, detail_level: u8) -> Option<MimeBundle> {
        (!code.is_empty())
            .then(|| bundle(json!({"text/plain": format!("{code}@{cursor_pos}/{detail_level}")})))
    }

    fn is_complete(&mut self, code: &str) -> IsComplete {
        if code.trim_end().ends_with('{') {
            IsComplete::Incomplete {
                indent: "    ".into(),
            }
        } else {
            IsComplete::Complete
        }
    }

    fn comm_open(&mut self, comm_id: &str, target_name: &str, data: Value, ctx: &CommContext) {
        self.probe
            .record(format!("comm_open:{comm_id}:{target_name}:{data}"));
        self.comms.insert(comm_id.into(), target_name.into());
        ctx.iopub
            .comm_msg(comm_id, json!({"opened": true}), json!({}), vec![]);
    }

    fn comm_msg(&mut self, comm_id: &str, data: Value, ctx: &CommContext) {
        self.probe.record(format!(
            "comm_msg:{comm_id}:{data}:{}",
            ctx.metadata["version"].as_str().unwrap_or("-")
        ));
        ctx.iopub.comm_msg(
            comm_id,
            json!({"echo": data}),
            json!({"version": "2.1.0"}),
            ctx.buffers.clone(),
        );
    }

    fn comm_close(&mut self, comm_id: &str, _data: Value, _ctx: &CommContext) {
        self.probe.record(format!("comm_close:{comm_id}"));
        self.comms.remove(comm_id);
    }

    fn comm_info(&self, target_name: Option<&str>) -> HashMap<String, String> {
        self.comms
            .iter()
            .filter(|(_, t)| target_name.is_none_or(|want| want == t.as_str()))
            .map(|(id, t)| (id.clone(), t.clone()))
            .collect()
    }

    fn shutdown(&mut self, restart: bool) {
        self.probe.record(format!("shutdown:{restart}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The client

struct Client {
    signer: Signer,
    session: String,
    shell: DealerSocket,
    control: DealerSocket,
    iopub: SubSocket,
    heartbeat: ReqSocket,
    probe: Arc<Probe>,
    kernel: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

fn free_ports() -> Vec<u16> {
    let listeners: Vec<_> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Client {
    /// Starts a kernel with the fake backend and connects to it; returns once IOPub delivers.
    async fn start() -> Client {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports();
        let file: PathBuf = dir.path().join("kernel.json");
        let info = json!({
            "ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256",
            "key": KEY, "shell_port": ports[0], "iopub_port": ports[1], "stdin_port": ports[2],
            "control_port": ports[3], "hb_port": ports[4], "kernel_name": "qplay",
        });
        std::fs::write(&file, info.to_string()).unwrap();

        let probe = Arc::new(Probe::default());
        let fake = Fake {
            probe: probe.clone(),
            comms: HashMap::new(),
        };
        let on_interrupt = probe.clone();
        let interrupter = move || {
            on_interrupt.interrupts.fetch_add(1, Ordering::SeqCst);
            *on_interrupt.interrupted.lock().unwrap() = true;
            on_interrupt.wake.notify_all();
        };
        let kernel_file = file.clone();
        let kernel = std::thread::spawn(move || serve(&kernel_file, fake, interrupter));

        let url = |port: u16| format!("tcp://127.0.0.1:{port}");
        let mut shell = DealerSocket::new();
        let mut control = DealerSocket::new();
        let mut iopub = SubSocket::new();
        let mut heartbeat = ReqSocket::new();
        shell.connect(&url(ports[0])).await.unwrap();
        iopub.connect(&url(ports[1])).await.unwrap();
        iopub.subscribe("").await.unwrap();
        control.connect(&url(ports[3])).await.unwrap();
        heartbeat.connect(&url(ports[4])).await.unwrap();

        let mut client = Client {
            signer: Signer::new(KEY.as_bytes()),
            session: "test-client".into(),
            shell,
            control,
            iopub,
            heartbeat,
            probe,
            kernel: Some(kernel),
            _dir: dir,
        };
        client.wait_for_iopub().await;
        client
    }

    /// Sends kernel_info requests until one's `idle` arrives on IOPub (the subscription has then
    /// reached the kernel), as jupyter_client's `wait_for_ready` does.
    async fn wait_for_iopub(&mut self) {
        for _ in 0..50 {
            let id = self
                .request(Chan::Shell, "kernel_info_request", json!({}))
                .await;
            self.reply(Chan::Shell).await;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, self.next_iopub_opt()).await
            {
                if parent_id(&msg) == id && is_status(&msg, "idle") {
                    return;
                }
            }
        }
        panic!("IOPub never delivered");
    }

    fn message(&self, msg_type: &str, content: Value, metadata: Value) -> Message {
        let mut msg = Message::new(msg_type, content, None, &self.session);
        msg.metadata = metadata;
        msg
    }

    async fn send_frames(&mut self, chan: Chan, frames: Vec<Bytes>) {
        let frames = ZmqMessage::try_from(frames).unwrap();
        match chan {
            Chan::Shell => self.shell.send(frames).await.unwrap(),
            Chan::Control => self.control.send(frames).await.unwrap(),
        }
    }

    /// Sends a correctly signed request; returns its msg_id.
    async fn request(&mut self, chan: Chan, msg_type: &str, content: Value) -> String {
        self.request_with(chan, msg_type, content, json!({}), vec![])
            .await
    }

    async fn request_with(
        &mut self,
        chan: Chan,
        msg_type: &str,
        content: Value,
        metadata: Value,
        buffers: Vec<Bytes>,
    ) -> String {
        let mut msg = self.message(msg_type, content, metadata);
        msg.buffers = buffers;
        let frames = msg.encode(&self.signer);
        self.send_frames(chan, frames).await;
        msg.header.msg_id
    }

    async fn reply_opt(&mut self, chan: Chan, wait: Duration) -> Option<Message> {
        let recv = async {
            match chan {
                Chan::Shell => self.shell.recv().await,
                Chan::Control => self.control.recv().await,
            }
        };
        let frames = tokio::time::timeout(wait, recv).await.ok()?.unwrap();
        // Verifying with the key proves the kernel signs what it sends.
        Some(Message::decode(frames.into_vec(), &self.signer, None).expect("signed reply"))
    }

    async fn reply(&mut self, chan: Chan) -> Message {
        self.reply_opt(chan, WAIT).await.expect("a reply")
    }

    async fn next_iopub_opt(&mut self) -> Option<Message> {
        let frames = self.iopub.recv().await.ok()?;
        Some(Message::decode(frames.into_vec(), &self.signer, None).expect("signed iopub"))
    }

    /// IOPub messages whose parent is `parent`, up to and including its `idle`.
    async fn iopub_until_idle(&mut self, parent: &str) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let msg = tokio::time::timeout(WAIT, self.next_iopub_opt())
                .await
                .expect("iopub message in time")
                .expect("iopub open");
            if parent_id(&msg) != parent {
                continue;
            }
            let idle = is_status(&msg, "idle");
            out.push(msg);
            if idle {
                return out;
            }
        }
    }

    /// Reads IOPub until a `msg_type` message with `parent` arrives.
    async fn iopub_until_type(&mut self, parent: &str, msg_type: &str) {
        loop {
            let msg = tokio::time::timeout(WAIT, self.next_iopub_opt())
                .await
                .expect("iopub message in time")
                .expect("iopub open");
            if parent_id(&msg) == parent && msg.msg_type() == msg_type {
                return;
            }
        }
    }

    /// Asserts that nothing with `parent` arrives on IOPub for a while.
    async fn no_iopub_for(&mut self, parent: &str) {
        let deadline = tokio::time::Instant::now() + SILENCE;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, self.next_iopub_opt()).await {
            assert_ne!(parent_id(&msg), parent, "unexpected {}", msg.msg_type());
        }
    }

    async fn execute(&mut self, code: &str) -> (Message, Vec<Message>) {
        self.execute_with(code, json!({}), json!({})).await
    }

    async fn execute_with(
        &mut self,
        code: &str,
        options: Value,
        metadata: Value,
    ) -> (Message, Vec<Message>) {
        let mut content = json!({
            "code": code, "silent": false, "store_history": true,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
        });
        for (k, v) in options.as_object().unwrap() {
            content[k] = v.clone();
        }
        let id = self
            .request_with(Chan::Shell, "execute_request", content, metadata, vec![])
            .await;
        let reply = self.reply(Chan::Shell).await;
        assert_eq!(parent_id(&reply), id);
        let iopub = self.iopub_until_idle(&id).await;
        (reply, iopub)
    }

    async fn shutdown(mut self, chan: Chan, restart: bool) -> Arc<Probe> {
        let id = self
            .request(chan, "shutdown_request", json!({"restart": restart}))
            .await;
        let reply = self.reply(chan).await;
        assert_eq!(reply.msg_type(), "shutdown_reply");
        assert_eq!(parent_id(&reply), id);
        assert_eq!(reply.content, json!({"status": "ok", "restart": restart}));
        let kernel = self.kernel.take().unwrap();
        let result = tokio::task::spawn_blocking(move || kernel.join())
            .await
            .unwrap()
            .expect("serve did not panic");
        result.expect("serve returned Ok after shutdown");
        self.probe.clone()
    }
}

#[derive(Clone, Copy)]
enum Chan {
    Shell,
    Control,
}

fn parent_id(msg: &Message) -> &str {
    msg.parent_header.as_ref().map_or("", |p| p.msg_id.as_str())
}

fn is_status(msg: &Message, state: &str) -> bool {
    msg.msg_type() == "status" && msg.content["execution_state"] == state
}

fn types(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m.msg_type() {
            "status" => format!("status:{}", m.content["execution_state"].as_str().unwrap()),
            t => t.to_string(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn kernel_info_and_heartbeat() {
    let mut c = Client::start().await;
    let id = c
        .request(Chan::Shell, "kernel_info_request", json!({}))
        .await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(reply.msg_type(), "kernel_info_reply");
    assert_eq!(parent_id(&reply), id);
    assert_eq!(reply.header.version, "5.3");
    let info = &reply.content;
    assert_eq!(info["status"], "ok");
    assert_eq!(info["protocol_version"], "5.3");
    assert_eq!(info["implementation"], "qplay");
    assert_eq!(info["banner"], "fake");
    assert_eq!(info["help_links"][0]["url"], "https://doc.rust-lang.org");
    assert_eq!(
        info["language_info"],
        json!({
            "name": "rust", "version": "1.95.0", "mimetype": "text/rust",
            "file_extension": ".rs", "pygments_lexer": "rust", "codemirror_mode": "rust",
        })
    );
    let iopub = c.iopub_until_idle(&id).await;
    assert_eq!(types(&iopub), ["status:busy", "status:idle"]);

    // Also answered on control.
    let id = c
        .request(Chan::Control, "kernel_info_request", json!({}))
        .await;
    let reply = c.reply(Chan::Control).await;
    assert_eq!(parent_id(&reply), id);
    assert_eq!(reply.content["implementation"], "qplay");

    for ping in [&b"ping"[..], b"\x00binary\xff"] {
        c.heartbeat
            .send(ZmqMessage::from(ping.to_vec()))
            .await
            .unwrap();
        let echo = tokio::time::timeout(WAIT, c.heartbeat.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_vec(), vec![Bytes::copy_from_slice(ping)]);
    }
    c.shutdown(Chan::Shell, false).await;
}

#[tokio::test]
async fn execute_publishes_in_order_and_counts() {
    let mut c = Client::start().await;
    let (reply, iopub) = c
        .execute_with(
            "abc",
            json!({"user_expressions": {"x": "1 + 1"}}),
            json!({"cellId": "cell-1"}),
        )
        .await;
    assert_eq!(
        types(&iopub),
        [
            "status:busy",
            "execute_input",
            "stream",
            "execute_result",
            "status:idle"
        ]
    );
    assert_eq!(
        iopub[1].content,
        json!({"code": "abc", "execution_count": 1})
    );
    assert_eq!(iopub[2].content, json!({"name": "stdout", "text": "abc"}));
    assert_eq!(iopub[3].content["execution_count"], 1);
    assert_eq!(iopub[3].content["data"], json!({"text/plain": "len 3"}));
    assert_eq!(reply.msg_type(), "execute_reply");
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(reply.content["execution_count"], 1);
    assert_eq!(
        reply.content["user_expressions"]["x"],
        json!({"status": "ok", "data": {"text/plain": "value of 1 + 1"}, "metadata": {}})
    );

    let (reply, iopub) = c.execute("de").await;
    assert_eq!(reply.content["execution_count"], 2);
    assert_eq!(iopub[1].content["execution_count"], 2);
    assert_eq!(iopub[3].content["execution_count"], 2);

    // Silent: no execute_input, the count stays.
    let (reply, iopub) = c
        .execute_with(
            "quiet",
            json!({"silent": true, "store_history": false}),
            json!({}),
        )
        .await;
    assert_eq!(reply.content["execution_count"], 2);
    assert!(!types(&iopub).contains(&"execute_input".to_string()));
    // Not stored in history: shown, but not counted.
    let (reply, iopub) = c
        .execute_with("nohist", json!({"store_history": false}), json!({}))
        .await;
    assert_eq!(reply.content["execution_count"], 2);
    assert_eq!(iopub[1].content["execution_count"], 2);
    let (reply, _) = c.execute("next").await;
    assert_eq!(reply.content["execution_count"], 3);

    // Output published from another thread keeps the request as parent.
    let (reply, iopub) = c.execute("thread").await;
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(
        types(&iopub),
        ["status:busy", "execute_input", "stream", "status:idle"]
    );
    assert_eq!(iopub[2].content["text"], "from a thread\n");

    let probe = c.shutdown(Chan::Shell, false).await;
    assert_eq!(
        probe.seen(),
        [
            "execute:abc:cell-1",
            "execute:de:-",
            "execute:quiet:-",
            "execute:nohist:-",
            "execute:next:-",
            "execute:thread:-",
            "shutdown:false"
        ]
    );
}

#[tokio::test]
async fn execute_error_replies_error_and_aborts_queued_executes() {
    let mut c = Client::start().await;
    let fail = c
        .request(
            Chan::Shell,
            "execute_request",
            json!({"code": "fail", "silent": false, "store_history": true}),
        )
        .await;
    let queued = c
        .request(
            Chan::Shell,
            "execute_request",
            json!({"code": "never", "silent": false, "store_history": true}),
        )
        .await;
    let complete = c
        .request(Chan::Shell, "is_complete_request", json!({"code": "x"}))
        .await;

    let reply = c.reply(Chan::Shell).await;
    assert_eq!(parent_id(&reply), fail);
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "Boom");
    assert_eq!(reply.content["evalue"], "it failed");
    assert_eq!(reply.content["traceback"], json!(["trace line"]));
    assert_eq!(reply.content["execution_count"], 1);
    let iopub = c.iopub_until_idle(&fail).await;
    assert_eq!(
        types(&iopub),
        ["status:busy", "execute_input", "error", "status:idle"]
    );
    assert_eq!(
        iopub[2].content,
        json!({"ename": "Boom", "evalue": "it failed", "traceback": ["trace line"]})
    );

    // The queued execute is aborted, other requests still answered, in order.
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(parent_id(&reply), queued);
    assert_eq!(reply.content["status"], "aborted");
    let iopub = c.iopub_until_idle(&queued).await;
    assert_eq!(types(&iopub), ["status:busy", "status:idle"]);
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(parent_id(&reply), complete);
    assert_eq!(reply.content, json!({"status": "complete", "indent": ""}));

    // Later requests run normally; the count went on from the failed cell.
    let (reply, _) = c.execute("ok").await;
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(reply.content["execution_count"], 2);

    let probe = c.shutdown(Chan::Shell, false).await;
    assert_eq!(
        probe.seen(),
        ["execute:fail:-", "execute:ok:-", "shutdown:false"]
    );
}

#[tokio::test]
async fn unauthenticated_messages_are_dropped() {
    let mut c = Client::start().await;
    let content = json!({"code": "forged", "silent": false, "store_history": true});

    // Signed with another key.
    let msg = c.message("execute_request", content.clone(), json!({}));
    let wrong = msg.encode(&Signer::new(b"wrong key"));
    c.send_frames(Chan::Shell, wrong).await;
    assert!(c.reply_opt(Chan::Shell, SILENCE).await.is_none());
    c.no_iopub_for(&msg.header.msg_id).await;

    // Not signed at all.
    let msg = c.message("execute_request", content.clone(), json!({}));
    let unsigned = msg.encode(&Signer::new(b""));
    c.send_frames(Chan::Shell, unsigned).await;
    assert!(c.reply_opt(Chan::Shell, SILENCE).await.is_none());

    // Tampered after signing.
    let msg = c.message("execute_request", content.clone(), json!({}));
    let mut tampered = msg.encode(&c.signer);
    tampered[5] = Bytes::from(
        json!({"code": "tampered", "silent": false, "store_history": true}).to_string(),
    );
    c.send_frames(Chan::Shell, tampered).await;
    assert!(c.reply_opt(Chan::Shell, SILENCE).await.is_none());

    // A forged interrupt on control does not reach the interrupter.
    let msg = c.message("interrupt_request", json!({}), json!({}));
    let forged = msg.encode(&Signer::new(b"wrong key"));
    c.send_frames(Chan::Control, forged).await;
    assert!(c.reply_opt(Chan::Control, SILENCE).await.is_none());
    assert_eq!(c.probe.interrupts.load(Ordering::SeqCst), 0);

    // A valid message is served, and the same frames replayed are dropped.
    let msg = c.message(
        "execute_request",
        json!({"code": "real", "silent": false, "store_history": true}),
        json!({}),
    );
    let frames = msg.encode(&c.signer);
    c.send_frames(Chan::Shell, frames.clone()).await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(reply.content["status"], "ok");
    c.send_frames(Chan::Shell, frames).await;
    assert!(c.reply_opt(Chan::Shell, SILENCE).await.is_none());

    let probe = c.shutdown(Chan::Shell, false).await;
    assert_eq!(probe.seen(), ["execute:real:-", "shutdown:false"]);
}

#[tokio::test]
async fn interrupt_on_control_while_executing() {
    let mut c = Client::start().await;
    let exec = c
        .request(
            Chan::Shell,
            "execute_request",
            json!({"code": "sleep", "silent": false, "store_history": true}),
        )
        .await;
    // Wait until the cell is running.
    c.iopub_until_type(&exec, "execute_input").await;
    assert!(c
        .reply_opt(Chan::Shell, Duration::from_millis(200))
        .await
        .is_none());

    let interrupt = c
        .request(Chan::Control, "interrupt_request", json!({}))
        .await;
    let reply = c.reply(Chan::Control).await;
    assert_eq!(reply.msg_type(), "interrupt_reply");
    assert_eq!(parent_id(&reply), interrupt);
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(c.probe.interrupts.load(Ordering::SeqCst), 1);

    let reply = c.reply(Chan::Shell).await;
    assert_eq!(parent_id(&reply), exec);
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "Interrupted");
    let iopub = c.iopub_until_idle(&interrupt).await;
    assert_eq!(types(&iopub), ["status:busy", "status:idle"]);

    // The kernel goes on.
    let (reply, _) = c.execute("after").await;
    assert_eq!(reply.content["status"], "ok");
    c.shutdown(Chan::Shell, false).await;
}

#[tokio::test]
async fn comms_reach_the_backend_inside_busy_idle() {
    let mut c = Client::start().await;
    let open = c
        .request_with(
            Chan::Shell,
            "comm_open",
            json!({"comm_id": "c1", "target_name": "test.target", "data": {"x": 1}}),
            json!({"version": "2.1.0"}),
            vec![],
        )
        .await;
    let iopub = c.iopub_until_idle(&open).await;
    assert_eq!(types(&iopub), ["status:busy", "comm_msg", "status:idle"]);
    assert_eq!(
        iopub[1].content,
        json!({"comm_id": "c1", "data": {"opened": true}})
    );

    let msg = c
        .request_with(
            Chan::Shell,
            "comm_msg",
            json!({"comm_id": "c1", "data": {"method": "update", "state": {"value": 3}}}),
            json!({"version": "2.1.0"}),
            vec![Bytes::from_static(b"\x01\x02")],
        )
        .await;
    let iopub = c.iopub_until_idle(&msg).await;
    assert_eq!(types(&iopub), ["status:busy", "comm_msg", "status:idle"]);
    assert_eq!(
        iopub[1].content["data"]["echo"],
        json!({"method": "update", "state": {"value": 3}})
    );
    assert_eq!(iopub[1].metadata, json!({"version": "2.1.0"}));
    assert_eq!(iopub[1].buffers, vec![Bytes::from_static(b"\x01\x02")]);
    // Comm messages get no shell reply.
    assert!(c.reply_opt(Chan::Shell, SILENCE).await.is_none());

    let info = c.request(Chan::Shell, "comm_info_request", json!({})).await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(parent_id(&reply), info);
    assert_eq!(
        reply.content,
        json!({"status": "ok", "comms": {"c1": {"target_name": "test.target"}}})
    );
    assert_eq!(
        types(&c.iopub_until_idle(&info).await),
        ["status:busy", "status:idle"]
    );
    c.request(
        Chan::Shell,
        "comm_info_request",
        json!({"target_name": "other"}),
    )
    .await;
    assert_eq!(c.reply(Chan::Shell).await.content["comms"], json!({}));

    let close = c
        .request(
            Chan::Shell,
            "comm_close",
            json!({"comm_id": "c1", "data": {}}),
        )
        .await;
    assert_eq!(
        types(&c.iopub_until_idle(&close).await),
        ["status:busy", "status:idle"]
    );
    c.request(Chan::Shell, "comm_info_request", json!({})).await;
    assert_eq!(c.reply(Chan::Shell).await.content["comms"], json!({}));

    let probe = c.shutdown(Chan::Control, false).await;
    assert_eq!(
        probe.seen(),
        [
            r#"comm_open:c1:test.target:{"x":1}"#,
            r#"comm_msg:c1:{"method":"update","state":{"value":3}}:2.1.0"#,
            "comm_close:c1",
            "shutdown:false"
        ]
    );
}

#[tokio::test]
async fn complete_inspect_is_complete_history() {
    let mut c = Client::start().await;
    // Cursor positions are Unicode code points on the wire: "é al" has the cursor at 4.
    c.request(
        Chan::Shell,
        "complete_request",
        json!({"code": "é al", "cursor_pos": 4}),
    )
    .await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(reply.msg_type(), "complete_reply");
    assert_eq!(
        reply.content,
        json!({
            "status": "ok", "matches": ["alpha", "alphabet"], "cursor_start": 2,
            "cursor_end": 4, "metadata": {},
        })
    );

    c.request(
        Chan::Shell,
        "inspect_request",
        json!({"code": "é x", "cursor_pos": 3, "detail_level": 1}),
    )
    .await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(
        reply.content,
        json!({"status": "ok", "found": true, "data": {"text/plain": "é x@4/1"}, "metadata": {}})
    );
    c.request(
        Chan::Shell,
        "inspect_request",
        json!({"code": "", "cursor_pos": 0, "detail_level": 0}),
    )
    .await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(reply.content["found"], false);

    c.request(
        Chan::Shell,
        "is_complete_request",
        json!({"code": "fn f() {"}),
    )
    .await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(
        reply.content,
        json!({"status": "incomplete", "indent": "    "})
    );

    c.request(
        Chan::Shell,
        "history_request",
        json!({"hist_access_type": "tail", "n": 10, "output": false, "raw": true}),
    )
    .await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(reply.msg_type(), "history_reply");
    assert_eq!(reply.content, json!({"status": "ok", "history": []}));

    // A request whose content does not parse gets an error reply, not silence.
    let bad = c
        .request(Chan::Shell, "complete_request", json!({"code": 5}))
        .await;
    let reply = c.reply(Chan::Shell).await;
    assert_eq!(parent_id(&reply), bad);
    assert_eq!(reply.content["status"], "error");
    c.shutdown(Chan::Shell, false).await;
}

#[tokio::test]
async fn shutdown_on_control_passes_restart_and_serve_returns() {
    let mut c = Client::start().await;
    let (reply, _) = c.execute("x").await;
    assert_eq!(reply.content["status"], "ok");
    let probe = c.shutdown(Chan::Control, true).await;
    assert_eq!(probe.seen(), ["execute:x:-", "shutdown:true"]);
}

#[tokio::test]
async fn shutdown_on_control_during_a_running_cell() {
    let mut c = Client::start().await;
    let exec = c
        .request(
            Chan::Shell,
            "execute_request",
            json!({"code": "sleep", "silent": false, "store_history": true}),
        )
        .await;
    c.iopub_until_type(&exec, "execute_input").await;
    let probe = c.shutdown(Chan::Control, false).await;
    // The running cell was interrupted so that the backend could shut down.
    assert_eq!(probe.interrupts.load(Ordering::SeqCst), 1);
    assert_eq!(probe.seen(), ["execute:sleep:-", "shutdown:false"]);
}
