//! The engine: runs notebook cells with evcxr and turns what they print into Jupyter outputs.
//!
//! evcxr compiles each cell into a shared library and runs it in a child process — the *runtime*,
//! which is this same `qplay` binary started with evcxr's marker variable (see
//! [`crate::runtime`]). Variables, loaded models and the model registry live there. While a
//! compiled cell runs, the runtime's stdout and stderr come back line by line on channels;
//! publisher threads ([`publish`]) turn them into outputs and hand the runtime's messages to
//! the link, which routes them. evcxr's own `EVCXR_BEGIN_CONTENT` blocks (a cell's last
//! expression) come back with the cell's result and become its `execute_result`. A wrapped
//! cell's call ([`Engine::call`]) is a request on the link, answered there.
//!
//! - [`start`]: the engine starting on a thread of its own;
//! - [`interrupt`]: stopping a running cell;
//! - [`slots`]: one evcxr build directory per running kernel;
//! - [`completeness`]: whether a cell is ready to run (`is_complete_request`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::Receiver;
use evcxr::{CommandContext, EvalContext, EvalOutputs};
use qplay::runtime::protocol::{MimeBundle, Outcome, ToRuntime};
use serde_json::Value;

pub mod completeness;
pub mod interrupt;
mod publish;
pub mod slots;
pub mod start;

use crate::link::RuntimeLink;
use crate::output::{is_unit, CellError, Collect, OutputSink};
use interrupt::Stopper;
use publish::{publish_line, publish_loop, Panics, Sink};

/// How long a wrapped cell may run before the kernel stops waiting for it.
const CALL_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The evcxr session behind a kernel.
pub struct Engine {
    ctx: CommandContext,
    stdout: Arc<Mutex<Receiver<String>>>,
    stderr: Arc<Mutex<Receiver<String>>>,
    sink: Sink,
    stopper: Stopper,
    panicked: Arc<Panics>,
    /// Set while [`Engine::flush`] drains the channels (the publishers stand aside).
    flushing: Arc<AtomicBool>,
    link: Arc<RuntimeLink>,
    /// Cells evcxr has compiled since the engine started.
    compiles: u64,
    /// Bumped whenever evcxr replaces the runtime process (whose wrapped cells are then gone).
    generation: u64,
    /// Whether rust-analyzer has been set to work (see [`Engine::analyze_in_background`]).
    analysis_started: bool,
}

/// Whether evcxr compiled (or refused) a cell rather than using kept results.
fn compiled_new_code(outputs: &Result<EvalOutputs, evcxr::Error>) -> bool {
    match outputs {
        Ok(outputs) => outputs
            .phases
            .iter()
            .any(|p| p.name.starts_with("Final compile") || p.name == "Type inference"),
        Err(evcxr::Error::CompilationErrors(_)) => true,
        Err(_) => false,
    }
}

/// The prelude's dependencies that rust-analyzer sees: those its public API names (errors,
/// JSON, arrays). The others (libtorch and ONNX Runtime bindings, HTTP, protobuf, charts, …)
/// stay out of the analysis, which then loads in a fraction of the time and memory; a cell
/// that `:dep`s one of them itself gets it analyzed.
const ANALYZED_DEPENDENCIES: &[&str] = &["anyhow", "serde", "serde_json", "ndarray"];

/// The most a build root keeps of cells' compiled libraries and inferred types (about 2 MB a
/// cell; the playground takes about 40 MB), reused when the same cells run again in the same
/// order: reopening a notebook, Run All, a restarted kernel, a second notebook.
const KEPT_RESULTS_BYTES: u64 = 256 << 20;

/// What the background analysis infers first: the types of a model handle, a workbench version
/// and its parameter table, which brings the prelude's names and traits into rust-analyzer.
const ANALYSIS_PROBE: &str = "let model = load(\"resnet8_int8\").unwrap();\n\
    let version = workbench(\"resnet8_int8\").unwrap();\n\
    let params = version.quant_params();";

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
    pub fn start(stopper: Stopper, link: Arc<RuntimeLink>, slot: &Path) -> Result<Engine> {
        let t0 = std::time::Instant::now();
        let exe = std::env::current_exe().context("cannot find the qplay executable")?;
        let mut runtime = std::process::Command::new(exe);
        runtime.env(qplay::runtime::link::LINK_ENV, link.path());
        let (flag_env, flag_file) = crate::link::flag::file_env(slot);
        runtime.env(flag_env, flag_file);
        let (mut eval, outputs) = EvalContext::with_subprocess_command_lazily(runtime)
            .map_err(|e| anyhow!("cannot start the evcxr runtime: {e}"))?;
        eval.set_analysis_dependencies("qplay", ANALYZED_DEPENDENCIES);
        eval.keep_results(slots::results_dir(slot), KEPT_RESULTS_BYTES);
        let ctx = CommandContext::with_eval_context(eval);
        let mut engine = Engine {
            ctx,
            stdout: Arc::new(Mutex::new(outputs.stdout)),
            stderr: Arc::new(Mutex::new(outputs.stderr)),
            sink: Arc::new(Mutex::new(None)),
            stopper,
            panicked: Arc::default(),
            flushing: Arc::new(AtomicBool::new(false)),
            link,
            compiles: 0,
            generation: 0,
            // Not for the start-up code: its compile always runs (it reads the dependencies).
            analysis_started: true,
        };
        engine.spawn_publishers();
        let context_s = t0.elapsed().as_secs_f64();
        let prelude = qplay::paths::root().join("prelude");
        let quiet = Arc::new(Collect::default());
        engine
            .execute(&startup_code(&prelude), "qplay-startup", quiet.clone())
            .map_err(|e| {
                anyhow!(
                    "cannot load the qplay prelude: {}\n{}\n{}",
                    e.evalue,
                    e.traceback.join("\n"),
                    quiet.text()
                )
            })?;
        engine.analysis_started = false;
        let prelude_s = t0.elapsed().as_secs_f64();
        eprintln!(
            "qplay: engine ready in {prelude_s:.1} s (runtime {context_s:.1} s, prelude {:.1} s)",
            prelude_s - context_s
        );
        Ok(engine)
    }

    /// Starts rust-analyzer's work on another thread: loading the crate graph and a first
    /// inference over the prelude (seconds, and about 0.4 GB). [`Engine::execute`] calls it once
    /// the user runs new code (a cell compiled rather than taken from the kept results, or
    /// refused by the compiler), so a notebook whose cells were all kept never pays for it.
    /// Cells that need no inference compile meanwhile; the first that does (or a completion)
    /// waits only for what is left.
    fn analyze_in_background(&self) {
        let start = std::time::Instant::now();
        match self
            .ctx
            .eval_context()
            .analyze_in_background(ANALYSIS_PROBE)
        {
            Ok(analysis) => {
                std::thread::spawn(move || {
                    let _ = analysis.join();
                    eprintln!(
                        "qplay: analysis ready in {:.1} s",
                        start.elapsed().as_secs_f64()
                    );
                });
            }
            Err(e) => eprintln!("qplay: no background analysis: {e}"),
        }
    }

    fn spawn_publishers(&self) {
        let (stdout, sink) = (self.stdout.clone(), self.sink.clone());
        let (flushing, link) = (self.flushing.clone(), self.link.clone());
        std::thread::spawn(move || {
            publish_loop(&stdout, &sink, "stdout", &flushing, &link, &|_| {})
        });
        let (stderr, sink) = (self.stderr.clone(), self.sink.clone());
        let (panicked, flushing) = (self.panicked.clone(), self.flushing.clone());
        let link = self.link.clone();
        std::thread::spawn(move || {
            publish_loop(&stderr, &sink, "stderr", &flushing, &link, &|line| {
                panicked.see(line)
            })
        });
    }

    /// The notebook's variables and their types, as evcxr knows them.
    pub fn variables(&self) -> BTreeMap<String, String> {
        self.ctx
            .variables_and_types()
            .map(|(name, ty)| (name.to_string(), ty.to_string()))
            .collect()
    }

    /// How many cells evcxr has compiled since the engine started.
    pub fn compiles(&self) -> u64 {
        self.compiles
    }

    /// Which runtime process this is: bumped whenever evcxr replaces it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Calls wrapped cell `key` in the runtime (see `crate::reactive::wrap`): one request on
    /// the link, nothing compiled. Its outputs stream to `sink`, its final value included.
    /// `Ok(Outcome::Unknown)`: the runtime holds no such function (the caller compiles the cell
    /// instead).
    pub fn call(&mut self, key: &str, sink: Arc<dyn OutputSink>) -> Result<Outcome, CellError> {
        self.stopper.reset();
        let link = self.link.clone();
        let cell = key.to_string();
        let answer = self.interruptible(|| {
            link.request(|seq| ToRuntime::Run { seq, cell }, Some(sink), CALL_WAIT)
        });
        match answer {
            Some(outcome) => Ok(outcome),
            // The runtime went away (killed by an interrupt, or crashed): have evcxr notice and
            // start a new one now, so that the error says what was lost.
            None => match self.run("()", Arc::new(Collect::default()), false) {
                Err(e) => Err(e),
                Ok(_) => Ok(Outcome::Unknown),
            },
        }
    }

    /// Runs one cell; `cell` is its key in the notebook (its compiles keep their own incremental
    /// state). Outputs stream to `sink` while it runs; the value of its last expression, if it has
    /// a rich representation, is returned for the `execute_result`.
    pub fn execute(
        &mut self,
        code: &str,
        cell: &str,
        sink: Arc<dyn OutputSink>,
    ) -> Result<Option<MimeBundle>, CellError> {
        self.stopper.reset();
        self.ctx.eval_context_mut().set_cell(Some(cell));
        let result = self.run(code, sink, true);
        self.ctx.eval_context_mut().set_cell(None);
        result
    }

    /// Runs code the kernel generated (the wrapped cells' registration) as [`Engine::execute`]
    /// does, except that its compile does not count as the user writing new code.
    pub fn execute_generated(
        &mut self,
        code: &str,
        sink: Arc<dyn OutputSink>,
    ) -> Result<Option<MimeBundle>, CellError> {
        self.stopper.reset();
        self.run(code, sink, false)
    }

    /// [`Engine::execute`], keeping an interrupt of the work before it in the error.
    /// `user_code`: the user's cell, whose compile (not kept, or refused) starts rust-analyzer.
    fn run(
        &mut self,
        code: &str,
        sink: Arc<dyn OutputSink>,
        user_code: bool,
    ) -> Result<Option<MimeBundle>, CellError> {
        self.panicked.reset();
        let before: BTreeSet<String> = self.variables().into_keys().collect();
        self.compiles += 1;
        let result = self.with_sink(sink, |ctx| ctx.execute(code));
        if user_code && !self.analysis_started && compiled_new_code(&result) {
            self.analysis_started = true;
            self.analyze_in_background();
        }
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

        let after: BTreeSet<String> = self.variables().into_keys().collect();
        let lost: Vec<String> = before.difference(&after).cloned().collect();
        let lost_note = if lost.is_empty() {
            String::new()
        } else {
            format!(" Variables lost: {}.", lost.join(", "))
        };
        match result {
            Ok(outputs) => {
                if self.panicked.happened() {
                    return Err(self.panic_error(&self.panicked.message(), &lost_note));
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
                Ok((!is_unit(&bundle)).then_some(bundle))
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
                self.generation += 1;
                let (ename, what) = if self.stopper.interrupted() {
                    (
                        "Interrupted",
                        "the cell did not stop by itself, so the runtime process was stopped \
                         and restarted",
                    )
                } else {
                    (
                        "RuntimeStopped",
                        "the runtime process stopped and was restarted",
                    )
                };
                Err(CellError {
                    ename: ename.into(),
                    evalue: format!("{what}.{lost_note}"),
                    traceback: vec![
                        format!("\x1b[31m{ename}\x1b[0m: {what}.{lost_note}"),
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

    /// How a cell that panicked with `message` (or stopped at an interrupt) fails.
    pub fn panic_error(&self, message: &str, lost_note: &str) -> CellError {
        if self.stopper.interrupted() {
            return CellError {
                ename: "Interrupted".into(),
                evalue: format!(
                    "the cell stopped at the interrupt; the runtime and its variables live \
                     on.{lost_note}"
                ),
                traceback: vec![format!(
                    "\x1b[31mInterrupted\x1b[0m: the cell stopped at the interrupt; the \
                     runtime, its variables and its widgets live on.{lost_note}"
                )],
            };
        }
        let what = if message.is_empty() {
            "the cell panicked (see its stderr above)".to_string()
        } else {
            format!("the cell panicked: {message}")
        };
        CellError {
            ename: "Panic".into(),
            evalue: format!("{what}; the kernel lives on.{lost_note}"),
            traceback: vec![format!(
                "\x1b[31mpanic\x1b[0m: {what}; the kernel lives on.{lost_note}"
            )],
        }
    }

    /// Waits until every line the runtime printed for this cell has been published. evcxr
    /// returns only once its stdout channel is empty; holding the receiver's lock guarantees the
    /// publisher is not halfway through a line. stderr has no such end marker, so lines that
    /// arrive within a short grace period still count.
    fn flush(&self) {
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.flushing.store(true, Ordering::Release);
        for (rx, name) in [(&self.stdout, "stdout"), (&self.stderr, "stderr")] {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            let wait = if name == "stderr" { 10 } else { 0 };
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(wait)) {
                if name == "stderr" {
                    self.panicked.see(&line);
                }
                publish_line(sink.as_deref(), name, line, &self.link);
            }
        }
        self.flushing.store(false, Ordering::Release);
    }

    /// Runs a compiled cell (`f`) with the runtime's output going to `sink` until all of it is
    /// published; an interrupt meanwhile stops it.
    fn with_sink<R>(
        &mut self,
        sink: Arc<dyn OutputSink>,
        f: impl FnOnce(&mut CommandContext) -> R,
    ) -> R {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
        let pid = self.ctx.process_handle().lock().ok().map(|c| c.id());
        self.stopper.begin(pid);
        let result = f(&mut self.ctx);
        self.stopper.end();
        self.flush();
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = None;
        result
    }

    /// Runs `f` (a request on the link: a wrapped cell's call, a widget update whose live views
    /// redraw) so that an interrupt meanwhile stops what the runtime does for it.
    pub fn interruptible<R>(&self, f: impl FnOnce() -> R) -> R {
        let pid = self.ctx.process_handle().lock().ok().map(|c| c.id());
        self.stopper.begin(pid);
        let result = f();
        self.stopper.end();
        result
    }

    /// Completions at byte offset `cursor`: (matches, start, end).
    pub fn complete(&mut self, code: &str, cursor: usize) -> (Vec<String>, usize, usize) {
        self.analysis_started = true;
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
        self.analysis_started = true;
        self.ctx
            .hover_at(code, cursor)
            .ok()
            .filter(|(plain, _)| !plain.trim().is_empty())
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
