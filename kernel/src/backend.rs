//! The qplay backend: the protocol layer's [`Backend`] served by the evcxr [`Engine`], with
//! widgets and reactive reruns on top.
//!
//! The engine starts on a thread of its own while the kernel already answers `kernel_info`
//! and heartbeats, so a slow first start (a cold build directory) never looks like a dead
//! kernel; the first cell waits for it.
//!
//! Every executed cell is recorded in the [`Graph`]. A cell that depends on a widget (directly
//! or through other cells) shows its outputs in a kernel-owned output widget, so that when the
//! widget changes the kernel can rerun it and replace its outputs in place, in its own cell.
//! Such a cell is wrapped into a function once ([`crate::wrap`]), so that its reruns call it
//! instead of compiling it again; cells that cannot be wrapped rerun compiled.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::completeness::{completeness, Completeness};
use crate::dataflow::{analyze, CellSyntax, Graph};
use crate::engine::Engine;
use crate::interrupt::Interrupter;
use crate::link::RuntimeLink;
use crate::output::{CellError, Collect, OutputSink};
use crate::widgets::{Apply, OutputArea, Widgets};
use crate::wrap::{registration, Signature, Wrappers};
use qplay::protocol::Outcome;
use qplay::widgets::models;
use qplay_kernel::jupyter::backend::{
    Backend, CommContext, Completion, ExecuteContext, ExecuteOutcome, Iopub, IsComplete,
    KernelInfo, MimeBundle,
};

/// The kernel's backend.
pub struct QplayBackend {
    engine: Option<Engine>,
    starting: Option<Receiver<anyhow::Result<Engine>>>,
    language_version: String,
    /// Why the engine failed to start, kept for every later request.
    start_error: Option<String>,
    widgets: Arc<Widgets>,
    graph: Graph,
    wrappers: Wrappers,
    interrupter: Interrupter,
    /// Started by Voilà: the page moves widgets after the notebook has run.
    app: bool,
}

impl QplayBackend {
    /// Starts the engine in the background, building in `slot`; `interrupter` reaches it once
    /// it runs.
    pub fn start(interrupter: Interrupter, slot: &Path) -> anyhow::Result<QplayBackend> {
        let link = Arc::new(RuntimeLink::listen(slot)?);
        let widgets = Arc::new(Widgets::new(link.clone()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (for_engine, slot, stopper) =
            (widgets.clone(), slot.to_path_buf(), interrupter.clone());
        std::thread::spawn(move || {
            let _ = tx.send(Engine::start(stopper, for_engine, link, &slot));
        });
        Ok(QplayBackend {
            engine: None,
            starting: Some(rx),
            language_version: qplay_kernel::jupyter::rustc_version(),
            start_error: None,
            widgets,
            graph: Graph::default(),
            wrappers: Wrappers::from_env(),
            interrupter,
            app: std::env::var_os("VOILA_BASE_URL").is_some()
                || std::env::var_os("VOILA_PREHEAT").is_some(),
        })
    }

    /// The engine, waiting for it to start if needed (`block`).
    fn engine(&mut self, block: bool) -> Result<&mut Engine, String> {
        if let Some(rx) = &self.starting {
            let started = if block {
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                rx.try_recv()
            };
            match started {
                Ok(Ok(engine)) => {
                    self.engine = Some(engine);
                    self.starting = None;
                }
                Ok(Err(e)) => {
                    self.starting = None;
                    self.start_error = Some(format!("{e:#}"));
                }
                Err(TryRecvError::Empty) => return Err("the engine is still starting".into()),
                Err(TryRecvError::Disconnected) => {
                    self.starting = None;
                    self.start_error = Some("the engine thread ended".into());
                }
            }
        }
        let error = &self.start_error;
        self.engine.as_mut().ok_or_else(|| {
            format!(
                "the engine failed to start: {}",
                error.as_deref().unwrap_or("unknown error")
            )
        })
    }

    /// Runs one cell compiled (a user's execute, or a rerun of a cell that is not wrapped),
    /// keeping the graph and the cell's widgets up to date; `syntax` is `code` analyzed. Outputs
    /// go to `sink`; the result bundle, if any, is returned.
    fn run_cell(
        &mut self,
        key: &str,
        code: &str,
        syntax: CellSyntax,
        sink: Arc<dyn OutputSink>,
        output: Option<String>,
        iopub: &Iopub,
    ) -> Result<Option<MimeBundle>, CellError> {
        self.widgets.begin_cell(key, code);
        let result = match self.engine(true) {
            Ok(engine) => engine.execute(code, key, sink),
            Err(e) => Err(CellError {
                ename: "KernelStartError".into(),
                evalue: e.clone(),
                traceback: vec![e],
            }),
        };
        self.ran(key, code, syntax, result.is_ok(), output, iopub);
        result
    }

    /// A run of `key` ended (`ok`: successfully): records it in the graph with the widgets it
    /// made, and closes the widgets of its previous run that it replaced.
    fn ran(
        &mut self,
        key: &str,
        code: &str,
        syntax: CellSyntax,
        ok: bool,
        output: Option<String>,
        iopub: &Iopub,
    ) {
        let (roots, replaced) = self.widgets.end_cell(ok);
        if !ok {
            return;
        }
        let bindings = syntax.widget_bindings.clone();
        let everything = syntax.defines.clone();
        let node = self.graph.record(key, code, syntax);
        // Creation order matches the constructor calls when the cell makes its widgets in
        // straight-line code; otherwise each widget is tied to all the cell defines.
        let exact = bindings.len() == roots.len();
        node.widgets = roots
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let names = if exact {
                    bindings[i].clone()
                } else {
                    everything.clone()
                };
                (id, names)
            })
            .collect();
        if output.is_some() {
            node.output = output;
        }
        let keep = node.output.clone();
        let replaced: Vec<String> = replaced
            .into_iter()
            .filter(|id| Some(id) != keep.as_ref())
            .collect();
        self.widgets.close(&replaced, iopub);
    }

    /// Wraps those of `keys` that are reactive, wrappable and not wrapped for their current
    /// signature: one evcxr compile registers them all; if it fails, each is tried alone, and
    /// those that fail are recorded with the compiler's reason (they rerun compiled).
    fn prepare_wrappers(&mut self, keys: &[String]) {
        if self.engine(true).is_err() {
            return;
        }
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let (variables, generation) = (engine.variables(), engine.generation());
        let mut todo: Vec<(String, Signature)> = Vec::new();
        for key in keys {
            let Some(node) = self.graph.get(key).filter(|n| n.output.is_some()) else {
                continue;
            };
            if self.wrappers.known_obstacle(key, &node.code).is_some() {
                continue;
            }
            match self.wrappers.plan(node, &variables, generation) {
                Ok(signature) if self.wrappers.is_current(key, &signature) => {}
                Ok(signature) => todo.push((key.clone(), signature)),
                Err(reason) => self.wrappers.unwrappable(key, &node.code, reason),
            }
        }
        let mut batches: Vec<Vec<(String, Signature)>> = vec![todo];
        while let Some(batch) = batches.pop() {
            if batch.is_empty() {
                continue;
            }
            let cells: Vec<(&str, &CellSyntax, &Signature)> = batch
                .iter()
                .filter_map(|(k, s)| Some((k.as_str(), &self.graph.get(k)?.syntax, s)))
                .collect();
            let source = registration(&cells);
            match engine.execute_generated(&source, Arc::new(Collect::default())) {
                Ok(_) => {
                    for (key, signature) in batch {
                        self.wrappers.wrapped(&key, signature);
                    }
                }
                Err(e) if batch.len() == 1 => {
                    let (key, signature) = &batch[0];
                    eprintln!(
                        "qplay: cell {key} reruns compiled: its wrapper did not compile: {}",
                        e.evalue
                    );
                    let reason = format!("its wrapper does not compile ({})", e.evalue);
                    self.wrappers.unwrappable(key, &signature.code, reason);
                }
                Err(_) => batches.extend(batch.into_iter().map(|one| vec![one])),
            }
        }
    }

    /// A user's execute of a cell that depends on widgets: its outputs go into an output widget.
    fn execute_reactive(
        &mut self,
        key: &str,
        code: &str,
        syntax: CellSyntax,
        ctx: &ExecuteContext,
    ) -> Result<Option<MimeBundle>, CellError> {
        let widgets = self.widgets.clone();
        let id = widgets.open_output(&ctx.iopub);
        let area = Arc::new(OutputArea::new(
            widgets.clone(),
            id.clone(),
            ctx.iopub.clone(),
        ));
        ctx.iopub.display_data(
            models::view_bundle(&id, ""),
            MimeBundle::new(),
            Some(&area.display_id()),
        );
        let result = self.run_cell(
            key,
            code,
            syntax,
            area.clone(),
            Some(id.clone()),
            &ctx.iopub,
        );
        if let Ok(Some(bundle)) = &result {
            area.push(
                json!({"output_type": "execute_result", "data": bundle, "metadata": {},
                             "execution_count": ctx.execution_count}),
            );
        }
        area.finish_and_publish();
        result.map(|_| None)
    }

    /// Reruns the cells that depend on the changed widgets, in dataflow order, each into its
    /// own output area; stops at the first error, or as soon as a newer update of the same
    /// widget waits (a running cell is asked to stop, cooperatively).
    fn rerun_dependents(&mut self, apply: &Apply, ctx: &CommContext) {
        let changed: Vec<(String, BTreeSet<String>)> = apply
            .sources()
            .iter()
            .filter_map(|id| self.graph.widget_owner(id))
            .map(|(cell, names)| (cell.to_string(), names.clone()))
            .collect();
        let chain = self.graph.dependents(&changed);
        self.prepare_wrappers(&chain);
        let _watch = StaleWatch::start(ctx.superseded.clone(), self.interrupter.clone());
        let widgets = self.widgets.clone();
        for key in chain {
            if ctx.superseded.check() {
                return;
            }
            let Some(area_id) = self
                .graph
                .get(&key)
                .and_then(|n| n.output.clone())
                .filter(|id| widgets.exists(id))
            else {
                eprintln!("qplay: cell {key} depends on a widget but ran before it existed; run it again to make it reactive");
                continue;
            };
            let area = Arc::new(OutputArea::new(widgets.clone(), area_id, ctx.iopub.clone()));
            let result = self.rerun_cell(&key, area.clone(), &ctx.iopub);
            match result {
                Ok(Some(bundle)) => area.result(bundle),
                Ok(None) => {}
                // A newer value stopped it: the next chain redraws the cell.
                Err(_) if ctx.superseded.check() => return,
                Err(e) => {
                    area.push(json!({"output_type": "error", "ename": e.ename,
                                     "evalue": e.evalue, "traceback": e.traceback}));
                    area.finish_and_publish();
                    return;
                }
            }
            area.finish_and_publish();
        }
    }

    /// Reruns one cell into `area`: a call of its wrapper when the runtime holds one for its
    /// current signature, else compiled.
    fn rerun_cell(
        &mut self,
        key: &str,
        area: Arc<OutputArea>,
        iopub: &Iopub,
    ) -> Result<Option<MimeBundle>, CellError> {
        let Some(node) = self.graph.get(key) else {
            return Ok(None);
        };
        let (code, syntax) = (node.code.clone(), node.syntax.clone());
        if self.engine(true).is_ok() && self.runs_wrapped(key) {
            self.widgets.begin_cell(key, &code);
            let engine = self.engine.as_mut().expect("started above");
            let outcome = engine.call(key, area.clone());
            let result = match outcome {
                Ok(Outcome::Ok) => Ok(None),
                Ok(Outcome::Panicked) => Err(engine.panic_error("")),
                Ok(Outcome::Unknown) => {
                    self.widgets.end_cell(false);
                    self.wrappers.invalidate(key);
                    return self.run_cell(key, &code, syntax, area, None, iopub);
                }
                Err(e) => Err(e),
            };
            if result.is_ok() {
                self.wrappers.called(key);
            }
            self.ran(key, &code, syntax, result.is_ok(), None, iopub);
            return result;
        }
        self.run_cell(key, &code, syntax, area, None, iopub)
    }

    /// Whether the runtime holds a wrapper of `key` for its current signature (the types of
    /// the variables it reads and writes may have changed since it was wrapped).
    fn runs_wrapped(&self, key: &str) -> bool {
        let (Some(engine), Some(node)) = (self.engine.as_ref(), self.graph.get(key)) else {
            return false;
        };
        self.wrappers
            .plan(node, &engine.variables(), engine.generation())
            .is_ok_and(|s| self.wrappers.is_current(key, &s))
    }

    /// `:deps` — the dataflow graph as a table.
    fn show_graph(&self, ctx: &ExecuteContext) {
        let compiles = self.engine.as_ref().map_or(0, Engine::compiles);
        let wrappers = &self.wrappers;
        let (mut html, mut text) = self
            .graph
            .render(|key, node| wrappers.describe(key, &node.code));
        let summary = format!("evcxr has compiled {compiles} cell(s) since the kernel started");
        html.push_str(&format!("<p>{summary}.</p>"));
        text.push_str(&format!("{summary}\n"));
        let mut bundle = MimeBundle::new();
        bundle.insert("text/html".into(), html.into());
        bundle.insert("text/plain".into(), text.into());
        ctx.iopub
            .execute_result(ctx.execution_count, bundle, MimeBundle::new());
    }
}

/// While a rerun chain runs: asks the running cell to stop (cooperatively) as soon as a newer
/// update of the same widget arrives, so that the chain for that one starts sooner.
struct StaleWatch {
    done: Arc<AtomicBool>,
}

impl StaleWatch {
    fn start(superseded: qplay_kernel::jupyter::backend::Superseded, stop: Interrupter) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        std::thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                if superseded.check() {
                    stop.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        StaleWatch { done }
    }
}

impl Drop for StaleWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Publishes a running cell's outputs on IOPub, with the execute request as parent.
struct IopubSink(Iopub);

impl OutputSink for IopubSink {
    fn stream(&self, name: &str, text: &str) {
        self.0.stream(name, text);
    }
    fn display(&self, data: MimeBundle, display_id: Option<String>, update: bool) {
        match (update, display_id) {
            (true, Some(id)) => self.0.update_display_data(data, MimeBundle::new(), &id),
            (_, id) => self.0.display_data(data, MimeBundle::new(), id.as_deref()),
        }
    }
    fn clear_output(&self, wait: bool) {
        self.0.clear_output(wait);
    }
    fn comm(&self, msg_type: &str, content: Value, metadata: Value) {
        self.0.send(msg_type, content, metadata);
    }
}

/// A cell's key in the graph: JupyterLab's cell id, else (nbclient, consoles) its code.
fn cell_key(ctx: &ExecuteContext, code: &str) -> String {
    match ctx.cell_id() {
        Some(id) => id.to_string(),
        None => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            code.hash(&mut h);
            format!("code-{:016x}", h.finish())
        }
    }
}

impl Backend for QplayBackend {
    fn kernel_info(&self) -> KernelInfo {
        KernelInfo {
            language_version: self.language_version.clone(),
            banner: format!(
                "qplay {} — Rust cells on evcxr, with `use qplay::prelude::*;` in scope",
                env!("CARGO_PKG_VERSION")
            ),
            help_links: Vec::new(),
        }
    }

    fn execute(&mut self, code: &str, ctx: &ExecuteContext) -> ExecuteOutcome {
        self.widgets.set_detached(ctx.iopub.clone());
        for deleted in ctx.deleted_cells() {
            self.graph.forget(deleted);
            self.wrappers.forget(deleted);
            let models = self.widgets.cell_models(deleted);
            self.widgets.close(&models, &ctx.iopub);
        }
        if code.trim() == ":deps" {
            self.show_graph(ctx);
            return ExecuteOutcome::ok();
        }
        let key = cell_key(ctx, code);
        let syntax = analyze(code);
        self.wrappers.ran_by_hand(&syntax);
        // A cell that depends on a widget gets an output area that reruns can redraw — when
        // some frontend can move widgets later: JupyterLab (it sends `cellId`, and opens the
        // widget control comm), a Voilà app (which starts the kernel with `VOILA_*`
        // variables). A batch run (nbclient, nbconvert, papermill) keeps ordinary outputs,
        // which any renderer shows.
        let live = ctx.cell_id().is_some() || self.app || self.widgets.manager_seen();
        let reactive = !ctx.silent && live && self.graph.is_reactive(&key, &syntax);
        let result = if reactive {
            self.execute_reactive(&key, code, syntax, ctx)
        } else {
            let sink = Arc::new(IopubSink(ctx.iopub.clone()));
            self.run_cell(&key, code, syntax, sink, None, &ctx.iopub)
        };
        match result {
            Ok(Some(bundle)) => {
                if !ctx.silent {
                    ctx.iopub
                        .execute_result(ctx.execution_count, bundle, MimeBundle::new());
                }
                ExecuteOutcome::ok()
            }
            Ok(None) => ExecuteOutcome::ok(),
            Err(e) => ExecuteOutcome::error(e.ename, e.evalue, e.traceback),
        }
    }

    /// Completions wait for an engine that is still starting (the first seconds of a kernel)
    /// rather than answering with nothing.
    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completion {
        let (matches, cursor_start, cursor_end) = match self.engine(true) {
            Ok(engine) => engine.complete(code, cursor_pos),
            Err(_) => (Vec::new(), cursor_pos, cursor_pos),
        };
        Completion {
            matches,
            cursor_start,
            cursor_end,
            metadata: MimeBundle::new(),
        }
    }

    fn inspect(&mut self, code: &str, cursor_pos: usize, _detail_level: u8) -> Option<MimeBundle> {
        let (plain, html) = self.engine(true).ok()?.inspect(code, cursor_pos)?;
        let mut bundle = MimeBundle::new();
        bundle.insert("text/plain".into(), plain.into());
        if !html.is_empty() {
            bundle.insert("text/html".into(), html.into());
        }
        Some(bundle)
    }

    /// Once the engine runs and the kernel has nothing to do, wrap the reactive cells that ran
    /// since (so the next widget change compiles nothing).
    fn idle(&mut self) {
        if self.engine(false).is_err() {
            return;
        }
        let reactive = self.graph.reactive_cells();
        self.prepare_wrappers(&reactive);
    }

    fn is_complete(&mut self, code: &str) -> IsComplete {
        match completeness(code) {
            Completeness::Complete => IsComplete::Complete,
            Completeness::Incomplete => IsComplete::Incomplete {
                indent: "    ".into(),
            },
            Completeness::Invalid => IsComplete::Invalid,
        }
    }

    fn comm_open(&mut self, comm_id: &str, target_name: &str, _data: Value, ctx: &CommContext) {
        self.widgets.frontend_open(comm_id, target_name, &ctx.iopub);
    }

    fn comm_msg(&mut self, comm_id: &str, data: Value, ctx: &CommContext) {
        let apply = self.widgets.frontend_message(comm_id, &data, &ctx.iopub);
        if apply == Apply::default() {
            return;
        }
        let sink: Arc<dyn OutputSink> = Arc::new(IopubSink(ctx.iopub.clone()));
        let widgets = self.widgets.clone();
        let applied = match self.engine(true) {
            Ok(engine) => engine.with_sink(sink, false, |_| widgets.forward(&apply)),
            Err(_) => false,
        };
        if applied && !ctx.superseded.check() {
            self.rerun_dependents(&apply, ctx);
        }
    }

    fn comm_close(&mut self, comm_id: &str, _data: Value, _ctx: &CommContext) {
        self.widgets.frontend_close(comm_id);
    }

    fn comm_info(&self, target_name: Option<&str>) -> std::collections::HashMap<String, String> {
        self.widgets.comm_info(target_name)
    }
}
