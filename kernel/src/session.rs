//! The kernel's session: the protocol layer's [`Backend`] served by the evcxr [`Engine`], with
//! widgets and reactive reruns on top. A thin adapter (as evcxr_jupyter's core is): it wires
//! the parts together once per kernel and hands each request to the part that owns it —
//! cells and reruns to the [`Scheduler`], comms to the [`Widgets`], completion and hover to the
//! engine.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::engine::completeness::{completeness, Completeness};
use crate::engine::interrupt::Stopper;
use crate::engine::start::Starting;
use crate::engine::Engine;
use crate::link::RuntimeLink;
use crate::output::{IopubSink, OutputSink};
use crate::reactive::Scheduler;
use crate::widgets::{FromBrowser, Widgets};
use qplay_kernel::jupyter::backend::{
    Backend, CommContext, Completion, ExecuteContext, ExecuteOutcome, IsComplete, KernelInfo,
    MimeBundle,
};

/// One kernel's state behind the Jupyter protocol.
pub struct Session {
    engine: Starting,
    language_version: String,
    widgets: Arc<Widgets>,
    scheduler: Scheduler,
    stopper: Stopper,
    /// Started by Voilà: the page moves widgets after the notebook has run.
    app: bool,
}

impl Session {
    /// Wires a session in build slot `slot` — the runtime link, the widgets, the interrupt
    /// flag — and starts its engine in the background.
    pub fn start(slot: &Path) -> anyhow::Result<Session> {
        let link = Arc::new(RuntimeLink::listen(slot)?);
        let widgets = Widgets::new(link.clone());
        let stopper = Stopper::new(slot)?;
        let (slot, for_start) = (slot.to_path_buf(), stopper.clone());
        let engine = Starting::spawn(move || Engine::start(for_start, link, &slot));
        Ok(Session {
            engine,
            language_version: qplay_kernel::jupyter::rustc_version(),
            scheduler: Scheduler::new(widgets.clone(), stopper.clone()),
            widgets,
            stopper,
            app: std::env::var_os("VOILA_BASE_URL").is_some()
                || std::env::var_os("VOILA_PREHEAT").is_some(),
        })
    }

    /// What stops the running cell (for the protocol layer's interrupt requests).
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// The engine, once started (waits for it).
    pub fn engine(&mut self) -> Result<&mut Engine, String> {
        self.engine.get(true)
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

impl Backend for Session {
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
            self.scheduler.forget(deleted, &ctx.iopub);
        }
        if code.trim() == ":deps" {
            self.scheduler.show_graph(&self.engine, ctx);
            return ExecuteOutcome::ok();
        }
        // A cell that depends on a widget gets an output area that reruns can redraw — when
        // some frontend can move widgets later: JupyterLab (it sends `cellId`, and opens the
        // widget control comm), a Voilà app (which starts the kernel with `VOILA_*`
        // variables). A batch run (nbclient, nbconvert, papermill) keeps ordinary outputs,
        // which any renderer shows.
        let live = ctx.cell_id().is_some() || self.app || self.widgets.manager_seen();
        let key = cell_key(ctx, code);
        let result = self
            .scheduler
            .execute(&mut self.engine, &key, code, ctx, live);
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
        let (matches, cursor_start, cursor_end) = match self.engine.get(true) {
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
        let (plain, html) = self.engine.get(true).ok()?.inspect(code, cursor_pos)?;
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
        if self.engine.get(false).is_ok() {
            self.scheduler.wrap_reactive_cells(&mut self.engine);
        }
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

    /// A widget changed in the browser: the runtime applies the change (redrawing its live
    /// views, whose outputs go to IOPub), then the cells that depend on it rerun.
    fn comm_msg(&mut self, comm_id: &str, data: Value, ctx: &CommContext) {
        let changes = self.widgets.frontend_message(comm_id, &data, &ctx.iopub);
        if changes == FromBrowser::default() {
            return;
        }
        let sink: Arc<dyn OutputSink> = Arc::new(IopubSink(ctx.iopub.clone()));
        let widgets = &self.widgets;
        let applied = match self.engine.get(true) {
            Ok(engine) => engine.interruptible(|| widgets.forward(&changes, sink)),
            Err(_) => false,
        };
        if applied && !ctx.superseded.check() {
            self.scheduler
                .rerun_dependents(&mut self.engine, &changes, ctx);
        }
    }

    fn comm_close(&mut self, comm_id: &str, _data: Value, _ctx: &CommContext) {
        self.widgets.frontend_close(comm_id);
    }

    fn comm_info(&self, target_name: Option<&str>) -> std::collections::HashMap<String, String> {
        self.widgets.comm_info(target_name)
    }
}
