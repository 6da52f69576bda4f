//! The engine: runs notebook cells with evcxr and turns what they print into Jupyter outputs.
//!
//! evcxr compiles each cell into a shared library and runs it in a child process — the *runtime*,
//! which is this same `qplay` binary started with evcxr's marker variable (see
//! `evcxr::runtime_hook` in `main`). Variables, loaded models and the model registry live there.
//! The runtime's stdout and stderr come back line by line on channels; a publisher thread turns
//! them into `stream` outputs, except lines starting with [`qplay::display::DISPLAY_PREFIX`],
//! which become `display_data` / `update_display_data`. evcxr's own `EVCXR_BEGIN_CONTENT` blocks
//! (a cell's last expression) come back with the cell's result and become its `execute_result`.
//!
//! Each cell's library links the `qplay` crate statically (evcxr's dynamic-linking mode fails
//! with this toolchain), so process-wide state such as the model registry lives in slots that
//! this executable exports (`qplay::process`), shared by every cell.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use evcxr::{CommandContext, EvalContext};
use qplay::display::{MimeBundle, DISPLAY_PREFIX};
use serde_json::Value;

use crate::widgets::Widgets;

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

/// Stops a running cell from another thread by ending the runtime process; evcxr starts a new
/// one for the next cell (the variables are lost, and the kernel says which).
#[derive(Clone)]
pub struct Interrupter {
    pid: Arc<Mutex<Option<u32>>>,
    interrupted: Arc<AtomicBool>,
}

impl Default for Interrupter {
    fn default() -> Self {
        Interrupter {
            pid: Arc::new(Mutex::new(None)),
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Interrupter {
    /// Interrupts the cell now running, if any.
    pub fn interrupt(&self) {
        if let Some(pid) = *self.pid.lock().unwrap_or_else(|e| e.into_inner()) {
            self.interrupted.store(true, Ordering::SeqCst);
            // SAFETY: kill(2) on a pid we spawned; a stale pid at worst fails with ESRCH.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

type Sink = Arc<Mutex<Option<Arc<dyn OutputSink>>>>;

/// The evcxr session behind a kernel.
pub struct Engine {
    ctx: CommandContext,
    stdout: Arc<Mutex<Receiver<String>>>,
    stderr: Arc<Mutex<Receiver<String>>>,
    sink: Sink,
    interrupter: Interrupter,
    panicked: Arc<AtomicBool>,
    /// Set while [`Engine::flush`] drains the channels (the publishers stand aside).
    flushing: Arc<AtomicBool>,
    /// Where the runtime's widget messages go.
    widgets: Arc<Widgets>,
}

/// Commands run when an engine starts: variables kept across a panic, no network for cargo,
/// then the qplay prelude.
fn startup_code(prelude: &Path) -> String {
    format!(
        ":preserve_vars_on_panic 1\n:offline 1\n\
         :dep qplay = {{ path = \"{}\" }}\nuse qplay::prelude::*;",
        prelude.display()
    )
}

impl Engine {
    /// Starts a runtime process and loads the prelude. With a cold build directory this
    /// compiles the prelude's dependency tree (minutes); set-up pre-warms `EVCXR_TMPDIR`.
    pub fn start(interrupter: Interrupter, widgets: Arc<Widgets>) -> Result<Engine> {
        let t0 = std::time::Instant::now();
        let exe = std::env::current_exe().context("cannot find the qplay executable")?;
        let mut runtime = std::process::Command::new(exe);
        runtime.env(qplay::widgets::hub::CHANNEL_ENV, widgets.link_path());
        let (eval, outputs) = EvalContext::with_subprocess_command(runtime)
            .map_err(|e| anyhow!("cannot start the evcxr runtime: {e}"))?;
        let ctx = CommandContext::with_eval_context(eval);
        let mut engine = Engine {
            ctx,
            stdout: Arc::new(Mutex::new(outputs.stdout)),
            stderr: Arc::new(Mutex::new(outputs.stderr)),
            sink: Arc::new(Mutex::new(None)),
            interrupter,
            panicked: Arc::new(AtomicBool::new(false)),
            flushing: Arc::new(AtomicBool::new(false)),
            widgets,
        };
        engine.spawn_publishers();
        let context_s = t0.elapsed().as_secs_f64();
        let prelude = qplay::paths::root().join("prelude");
        let quiet = Arc::new(Collect::default());
        engine
            .execute(&startup_code(&prelude), quiet.clone())
            .map_err(|e| {
                anyhow!(
                    "cannot load the qplay prelude: {}\n{}\n{}",
                    e.evalue,
                    e.traceback.join("\n"),
                    quiet.text()
                )
            })?;
        let prelude_s = t0.elapsed().as_secs_f64();
        eprintln!(
            "qplay: engine ready in {prelude_s:.1} s (runtime {context_s:.1} s, prelude {:.1} s)",
            prelude_s - context_s
        );
        Ok(engine)
    }

    /// Warms rust-analyzer up for the user's first `let`: evcxr infers each new variable's type
    /// with it, and its first inference over the prelude takes seconds. Hovering over a method
    /// call on a prelude value runs the same name resolution and type inference, without
    /// running anything (measured: the first `let` then answers in 1.0–1.2 s, against 5.5 s
    /// unwarmed and 1.4–1.9 s after warming with a completion; the first completion stays at
    /// 0.3 s). The kernel calls this when idle.
    pub fn warm_up_analyzer(&mut self) {
        let start = std::time::Instant::now();
        let probe = "load(\"resnet8_int8\").unwrap().name(";
        let _ = self.ctx.hover_at(probe, probe.len());
        eprintln!(
            "qplay: analyzer warm in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }

    fn spawn_publishers(&self) {
        let (stdout, sink) = (self.stdout.clone(), self.sink.clone());
        let (flushing, widgets) = (self.flushing.clone(), self.widgets.clone());
        std::thread::spawn(move || {
            publish_loop(&stdout, &sink, "stdout", &flushing, &widgets, &|_| {})
        });
        let (stderr, sink) = (self.stderr.clone(), self.sink.clone());
        let (panicked, flushing) = (self.panicked.clone(), self.flushing.clone());
        let widgets = self.widgets.clone();
        std::thread::spawn(move || {
            publish_loop(&stderr, &sink, "stderr", &flushing, &widgets, &|line| {
                if is_panic_line(line) {
                    panicked.store(true, Ordering::SeqCst);
                }
            })
        });
    }

    fn variables(&self) -> BTreeSet<String> {
        self.ctx
            .variables_and_types()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Runs one cell. Outputs stream to `sink` while it runs; the value of its last expression,
    /// if it has a rich representation, is returned for the `execute_result`.
    pub fn execute(
        &mut self,
        code: &str,
        sink: Arc<dyn OutputSink>,
    ) -> Result<Option<MimeBundle>, CellError> {
        use Ordering::SeqCst;
        self.panicked.store(false, SeqCst);
        self.interrupter.interrupted.store(false, SeqCst);
        let before = self.variables();
        let result = self.with_sink(sink, |ctx| ctx.execute(code));
        if std::env::var_os("QPLAY_PHASES").is_some() {
            if let Ok(outputs) = &result {
                let phases: Vec<String> = outputs
                    .phases
                    .iter()
                    .map(|p| format!("{} {:.0} ms", p.name, p.duration.as_secs_f64() * 1e3))
                    .collect();
                eprintln!("qplay: evcxr phases: {}", phases.join(", "));
            }
        }

        let lost: Vec<String> = before.difference(&self.variables()).cloned().collect();
        let lost_note = if lost.is_empty() {
            String::new()
        } else {
            format!(" Variables lost: {}.", lost.join(", "))
        };
        match result {
            Ok(outputs) => {
                if self.panicked.load(SeqCst) {
                    return Err(CellError {
                        ename: "Panic".into(),
                        evalue: format!("the cell panicked (see above); the kernel lives on.{lost_note}"),
                        traceback: vec![format!("\x1b[31mpanic\x1b[0m: the cell panicked (see its stderr above).{lost_note}")],
                    });
                }
                let mut bundle = MimeBundle::new();
                for (mime, content) in outputs.content_by_mime_type {
                    let value = if mime.ends_with("json") {
                        serde_json::from_str(&content).unwrap_or(Value::String(content))
                    } else {
                        Value::String(content)
                    };
                    bundle.insert(mime, value);
                }
                // A cell ending in a block, loop or call returning `()` has nothing to show,
                // nor one ending in a value that showed itself already (a live view).
                let unit = bundle.len() == 1
                    && matches!(
                        bundle.get("text/plain").and_then(Value::as_str),
                        Some("()" | "")
                    );
                Ok((!bundle.is_empty() && !unit).then_some(bundle))
            }
            Err(evcxr::Error::CompilationErrors(errors)) => {
                let mut traceback = Vec::new();
                for error in &errors {
                    traceback.push(render_compilation_error(error, code));
                }
                let evalue = errors
                    .first()
                    .map(|e| e.message())
                    .unwrap_or_else(|| "compilation failed".into());
                Err(CellError {
                    ename: "CompilationError".into(),
                    evalue,
                    traceback,
                })
            }
            Err(evcxr::Error::SubprocessTerminated(message)) => {
                let (ename, what) = if self.interrupter.interrupted.load(SeqCst) {
                    (
                        "Interrupted",
                        "the runtime process was stopped and restarted",
                    )
                } else {
                    (
                        "RuntimeStopped",
                        "the runtime process stopped and was restarted",
                    )
                };
                let orphans = self.widgets.disable_orphans();
                let widget_note = if orphans.is_empty() {
                    String::new()
                } else {
                    format!(
                        " Its widgets no longer respond and are shown disabled ({}): run their \
                         cells again.",
                        orphans.join(", ")
                    )
                };
                Err(CellError {
                    ename: ename.into(),
                    evalue: format!("{what}.{lost_note}{widget_note}"),
                    traceback: vec![
                        format!("\x1b[31m{ename}\x1b[0m: {what}.{lost_note}{widget_note}"),
                        message,
                    ],
                })
            }
            Err(other) => Err(CellError {
                ename: "Error".into(),
                evalue: other.to_string(),
                traceback: vec![other.to_string()],
            }),
        }
    }

    /// Waits until every line the runtime printed for this cell has been published. evcxr
    /// returns only once its stdout channel is empty; holding the receiver's lock guarantees the
    /// publisher is not halfway through a line. stderr has no such end marker, so lines that
    /// arrive within a short grace period still count.
    fn flush(&self) {
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(sink) = sink else { return };
        self.flushing.store(true, Ordering::Release);
        for (rx, name) in [(&self.stdout, "stdout"), (&self.stderr, "stderr")] {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            let grace = if name == "stderr" { 10 } else { 0 };
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(grace)) {
                if name == "stderr" && is_panic_line(&line) {
                    self.panicked.store(true, Ordering::SeqCst);
                }
                publish_line(sink.as_ref(), name, line, &self.widgets);
            }
        }
        self.flushing.store(false, Ordering::Release);
    }

    /// Runs `f` (a cell, or a widget update that makes the runtime redraw live views) with the
    /// runtime's output going to `sink` until all of it is published; an interrupt meanwhile
    /// stops the runtime.
    pub fn with_sink<R>(
        &mut self,
        sink: Arc<dyn OutputSink>,
        f: impl FnOnce(&mut CommandContext) -> R,
    ) -> R {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
        *self
            .interrupter
            .pid
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            self.ctx.process_handle().lock().ok().map(|c| c.id());
        let result = f(&mut self.ctx);
        *self
            .interrupter
            .pid
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.flush();
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = None;
        result
    }

    /// Completions at byte offset `cursor`: (matches, start, end).
    pub fn complete(&mut self, code: &str, cursor: usize) -> (Vec<String>, usize, usize) {
        match self.ctx.completions(code, cursor.min(code.len())) {
            Ok(c) => {
                // rust-analyzer offers call snippets (`push(value)`); a notebook wants the name.
                let mut matches: Vec<String> = Vec::new();
                for completion in c.completions {
                    let name = completion.code.split('(').next().unwrap_or_default();
                    if !name.is_empty() && !matches.iter().any(|m| m == name) {
                        matches.push(name.to_string());
                    }
                }
                (matches, c.start_offset, c.end_offset)
            }
            Err(_) => (Vec::new(), cursor, cursor),
        }
    }

    /// Hover documentation for the expression ending at `cursor`, as text and HTML.
    pub fn inspect(&mut self, code: &str, cursor: usize) -> Option<(String, String)> {
        let cursor = cursor.min(code.len());
        if !code.is_char_boundary(cursor) {
            return None;
        }
        self.ctx
            .hover_at(code, cursor)
            .ok()
            .filter(|(plain, _)| !plain.trim().is_empty())
    }
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

/// libtorch prints this deprecation notice (through its own logger, which ignores
/// TORCH_CPP_LOG_LEVEL when not started from Python) the first time a quantized model runs;
/// users can do nothing about it, so it is not shown.
fn is_noise(line: &str) -> bool {
    line.contains("Quantizer.cpp") && line.contains("are deprecated")
}

/// The first line of Rust's panic message on stderr: `thread 'main' (…) panicked at …`.
fn is_panic_line(line: &str) -> bool {
    line.starts_with("thread '") && line.contains("panicked at")
}

/// A widget message from the runtime, if `line` is one.
fn widget_message(line: &str) -> Option<Value> {
    let message = serde_json::from_str::<Value>(line.strip_prefix(DISPLAY_PREFIX)?).ok()?;
    let kind = message["kind"].as_str()?;
    ["comm_open", "comm_msg", "done"]
        .contains(&kind)
        .then_some(message)
}

fn publish_line(sink: &dyn OutputSink, name: &str, line: String, widgets: &Widgets) {
    if let Some(message) = widget_message(&line) {
        widgets.runtime_message(message, Some(sink));
        return;
    }
    if let Some(json) = line.strip_prefix(DISPLAY_PREFIX) {
        if let Ok(message) = serde_json::from_str::<Value>(json) {
            if message["kind"] == "clear" {
                sink.clear_output(message["wait"].as_bool().unwrap_or(false));
                return;
            }
            let data = message["data"].as_object().cloned().unwrap_or_default();
            let id = message["display_id"].as_str().map(str::to_string);
            sink.display(data, id, message["kind"] == "update");
            return;
        }
    }
    if !is_noise(&line) {
        sink.stream(name, &(line + "\n"));
    }
}

/// Publishes lines as they come. The receiver's lock is held only while waiting a few
/// milliseconds for a line and while publishing it, and not taken again while `flushing` is
/// set, so that [`Engine::flush`] gets it at once.
fn publish_loop(
    rx: &Mutex<Receiver<String>>,
    sink: &Sink,
    name: &str,
    flushing: &AtomicBool,
    widgets: &Widgets,
    watch: &dyn Fn(&str),
) {
    loop {
        while flushing.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(line) => {
                watch(&line);
                let sink = sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
                match (sink, widget_message(&line)) {
                    (Some(sink), _) => publish_line(sink.as_ref(), name, line, widgets),
                    (None, Some(message)) => widgets.runtime_message(message, None),
                    (None, None) => eprintln!("[runtime {name}] {line}"),
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A compiler error with its spans drawn against the cell's code, as evcxr_jupyter shows it.
fn render_compilation_error(error: &evcxr::CompilationError, code: &str) -> String {
    let mut out = Vec::new();
    if let Some(report) = error.build_report("cell".into(), code.to_string(), evcxr::Theme::Light) {
        let cache = ("cell".to_string(), ariadne::Source::from(code));
        if report.write(cache, &mut out).is_ok() {
            return String::from_utf8_lossy(&out).into_owned();
        }
    }
    let rendered = error.rendered();
    if rendered.is_empty() {
        error.message()
    } else {
        rendered
    }
}
