//! The rerun scheduler: runs the user's cells and reruns those that depend on a widget.
//!
//! Every executed cell is recorded in the [`Graph`]. A cell that depends on a widget (directly
//! or through other cells) shows its outputs in a kernel-owned output widget, so that when the
//! widget changes the kernel can rerun it and replace its outputs in place, in its own cell.
//! Such a cell is wrapped into a function once ([`super::wrap`]), so that its reruns call it
//! instead of compiling it again; cells that cannot be wrapped rerun compiled.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::wrap::{registration, Signature, Wrappers};
use super::{analyze, CellSyntax, Graph};
use crate::engine::interrupt::Stopper;
use crate::engine::start::Starting;
use crate::engine::Engine;
use crate::output::{CellError, Collect, IopubSink, OutputSink};
use crate::widgets::{FromBrowser, OutputArea, Widgets};
use qplay::runtime::protocol::Outcome;
use qplay::widgets::models;
use qplay_kernel::jupyter::backend::{CommContext, ExecuteContext, Iopub, MimeBundle, Superseded};

/// The notebook's dataflow graph and wrapped cells, and the runs that keep them up to date.
pub struct Scheduler {
    graph: Graph,
    wrappers: Wrappers,
    widgets: Arc<Widgets>,
    stopper: Stopper,
}

impl Scheduler {
    pub fn new(widgets: Arc<Widgets>, stopper: Stopper) -> Scheduler {
        Scheduler {
            graph: Graph::default(),
            wrappers: Wrappers::from_env(),
            widgets,
            stopper,
        }
    }

    /// A user's execute of cell `key`: into an output area that reruns redraw when the cell
    /// depends on a widget and a frontend can move widgets later (`live`), else straight to
    /// IOPub. The result bundle, if any, is returned.
    pub fn execute(
        &mut self,
        engine: &mut Starting,
        key: &str,
        code: &str,
        ctx: &ExecuteContext,
        live: bool,
    ) -> Result<Option<MimeBundle>, CellError> {
        let syntax = analyze(code);
        self.wrappers.ran_by_hand(&syntax);
        if !ctx.silent && live && self.graph.is_reactive(key, &syntax) {
            self.execute_reactive(engine, key, code, syntax, ctx)
        } else {
            let sink = Arc::new(IopubSink(ctx.iopub.clone()));
            self.run_cell(engine, key, code, syntax, sink, None, &ctx.iopub)
        }
    }

    /// A deleted cell: out of the graph, its wrapper and its widgets gone.
    pub fn forget(&mut self, key: &str, iopub: &Iopub) {
        self.graph.forget(key);
        self.wrappers.forget(key);
        let models = self.widgets.cell_models(key);
        self.widgets.close(&models, iopub);
    }

    /// Runs one cell compiled (a user's execute, or a rerun of a cell that is not wrapped),
    /// keeping the graph and the cell's widgets up to date; `syntax` is `code` analyzed. Outputs
    /// go to `sink`; the result bundle, if any, is returned.
    #[allow(clippy::too_many_arguments)]
    fn run_cell(
        &mut self,
        engine: &mut Starting,
        key: &str,
        code: &str,
        syntax: CellSyntax,
        sink: Arc<dyn OutputSink>,
        output: Option<String>,
        iopub: &Iopub,
    ) -> Result<Option<MimeBundle>, CellError> {
        self.widgets.begin_cell(key, code);
        let result = match engine.get(true) {
            Ok(engine) => {
                let generation = engine.generation();
                let result = engine.execute(code, key, sink);
                if engine.generation() != generation {
                    result.map_err(|e| self.runtime_replaced(e))
                } else {
                    result
                }
            }
            Err(e) => Err(CellError {
                ename: "KernelStartError".into(),
                evalue: e.clone(),
                traceback: vec![e],
            }),
        };
        self.ran(key, code, syntax, result.is_ok(), output, iopub);
        result
    }

    /// `e` ended a cell in a runtime that evcxr then replaced: the old runtime's widgets no
    /// longer respond; they are shown disabled, and the error says so.
    fn runtime_replaced(&self, mut e: CellError) -> CellError {
        let orphans = self.widgets.disable_orphans();
        if !orphans.is_empty() {
            let note = format!(
                " Its widgets no longer respond and are shown disabled ({}): run their cells \
                 again.",
                orphans.join(", ")
            );
            e.evalue.push_str(&note);
            if let Some(first) = e.traceback.first_mut() {
                first.push_str(&note);
            }
        }
        e
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

    /// Wraps the reactive cells that ran since they were last wrapped (the kernel is idle).
    pub fn wrap_reactive_cells(&mut self, engine: &mut Starting) {
        let reactive = self.graph.reactive_cells();
        self.prepare_wrappers(engine, &reactive);
    }

    /// The signatures `keys` need with the notebook's variables as they are now, for those
    /// that can be wrapped; each is current or not (the runtime holds that wrapper or not).
    fn plans(&mut self, engine: &Engine, keys: &[String]) -> Vec<(String, Signature, bool)> {
        let (variables, generation) = (engine.variables(), engine.generation());
        let mut plans = Vec::new();
        for key in keys {
            let Some(node) = self.graph.get(key).filter(|n| n.output.is_some()) else {
                continue;
            };
            if self.wrappers.known_obstacle(key, &node.code).is_some() {
                continue;
            }
            match self.wrappers.plan(node, &variables, generation) {
                Ok(signature) => {
                    let current = self.wrappers.is_current(key, &signature);
                    plans.push((key.clone(), signature, current));
                }
                Err(reason) => self.wrappers.unwrappable(key, &node.code, reason),
            }
        }
        plans
    }

    /// Those of `keys` whose wrappers the runtime holds for the variables as they are now.
    fn wrapped_now(&mut self, engine: &Starting, keys: &[String]) -> BTreeSet<String> {
        let Some(engine) = engine.started() else {
            return BTreeSet::new();
        };
        let plans = self.plans(engine, keys);
        plans.into_iter().filter(|p| p.2).map(|p| p.0).collect()
    }

    /// Wraps those of `keys` that are reactive, wrappable and not wrapped for their current
    /// signature: one evcxr compile registers them all; if it fails, each is tried alone, and
    /// those that fail are recorded with the compiler's reason (they rerun compiled). Returns
    /// those of `keys` that the runtime then holds wrapped for their current signature.
    fn prepare_wrappers(&mut self, engine: &mut Starting, keys: &[String]) -> BTreeSet<String> {
        let Ok(engine) = engine.get(true) else {
            return BTreeSet::new();
        };
        let plans = self.plans(engine, keys);
        let mut ready: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<(String, Signature)> = Vec::new();
        for (key, signature, current) in plans {
            if current {
                ready.insert(key);
            } else {
                todo.push((key, signature));
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
                        ready.insert(key);
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
        ready
    }

    /// A user's execute of a cell that depends on widgets: its outputs go into an output widget.
    fn execute_reactive(
        &mut self,
        engine: &mut Starting,
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
            engine,
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
    pub fn rerun_dependents(
        &mut self,
        engine: &mut Starting,
        changes: &FromBrowser,
        ctx: &CommContext,
    ) {
        let changed: Vec<(String, BTreeSet<String>)> = changes
            .sources()
            .iter()
            .filter_map(|id| self.graph.widget_owner(id))
            .map(|(cell, names)| (cell.to_string(), names.clone()))
            .collect();
        let chain = self.graph.dependents(&changed);
        let mut wrapped = self.prepare_wrappers(engine, &chain);
        let _watch = StaleWatch::start(ctx.superseded.clone(), self.stopper.clone());
        let widgets = self.widgets.clone();
        for (i, key) in chain.iter().enumerate() {
            let key = key.clone();
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
            let call = wrapped.contains(&key);
            let result = self.rerun_cell(engine, &key, call, area.clone(), &ctx.iopub);
            if !call {
                // A compiled cell may have given variables other types: the wrappers after it
                // are checked again.
                wrapped = self.wrapped_now(engine, &chain[i + 1..]);
            }
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

    /// Reruns one cell into `area`: a call of its wrapper when `call` (the runtime holds one
    /// for its current signature), else compiled.
    fn rerun_cell(
        &mut self,
        engine: &mut Starting,
        key: &str,
        call: bool,
        area: Arc<OutputArea>,
        iopub: &Iopub,
    ) -> Result<Option<MimeBundle>, CellError> {
        let Some(node) = self.graph.get(key) else {
            return Ok(None);
        };
        let (code, syntax) = (node.code.clone(), node.syntax.clone());
        if call && engine.get(true).is_ok() {
            self.widgets.begin_cell(key, &code);
            let running = engine.get(true).expect("started above");
            let outcome = running.call(key, area.clone());
            let result = match outcome {
                Ok(Outcome::Ok) => Ok(None),
                Ok(Outcome::Panicked { message }) => Err(running.panic_error(&message, "")),
                Ok(Outcome::Unknown) => {
                    self.widgets.end_cell(false);
                    self.wrappers.invalidate(key);
                    return self.run_cell(engine, key, &code, syntax, area, None, iopub);
                }
                Err(e) => Err(e),
            };
            if result.is_ok() {
                self.wrappers.called(key);
            }
            self.ran(key, &code, syntax, result.is_ok(), None, iopub);
            return result;
        }
        self.run_cell(engine, key, &code, syntax, area, None, iopub)
    }

    /// `:deps` — the dataflow graph as a picture, a table and text.
    pub fn show_graph(&self, engine: &Starting, ctx: &ExecuteContext) {
        let compiles = engine.started().map_or(0, Engine::compiles);
        let wrappers = &self.wrappers;
        let (table, mut text) = self
            .graph
            .render(|key, node| wrappers.describe(key, &node.code));
        let picture = self.graph.picture();
        let summary = format!("evcxr has compiled {compiles} cell(s) since the kernel started");
        let html = format!("<div class=\"qplay-deps\">{picture}{table}<p>{summary}.</p></div>");
        text.push_str(&format!("{summary}\n"));
        let mut bundle = MimeBundle::new();
        bundle.insert("text/html".into(), html.into());
        bundle.insert("image/svg+xml".into(), picture.into());
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
    fn start(superseded: Superseded, stop: Stopper) -> Self {
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
