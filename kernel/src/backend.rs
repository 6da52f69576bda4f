//! The qplay backend: the protocol layer's [`Backend`] served by the evcxr [`Engine`].
//!
//! The engine starts on a thread of its own while the kernel already answers `kernel_info`
//! and heartbeats, so a slow first start (a cold build directory) never looks like a dead
//! kernel; the first cell waits for it.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use crate::completeness::{completeness, Completeness};
use crate::engine::{Engine, Interrupter, OutputSink};
use qplay_kernel::jupyter::backend::{
    Backend, Completion, ExecuteContext, ExecuteOutcome, Iopub, IsComplete, KernelInfo, MimeBundle,
};

/// The kernel's backend.
pub struct QplayBackend {
    engine: Option<Engine>,
    starting: Option<Receiver<anyhow::Result<Engine>>>,
    language_version: String,
    analyzer_warm: bool,
    /// Why the engine failed to start, kept for every later request.
    start_error: Option<String>,
}

impl QplayBackend {
    /// Starts the engine in the background; `interrupter` reaches it once it runs.
    pub fn start(interrupter: Interrupter) -> QplayBackend {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Engine::start(interrupter));
        });
        QplayBackend {
            engine: None,
            starting: Some(rx),
            language_version: qplay_kernel::jupyter::rustc_version(),
            analyzer_warm: false,
            start_error: None,
        }
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
        let engine = match self.engine(true) {
            Ok(engine) => engine,
            Err(e) => return ExecuteOutcome::error("KernelStartError", &e, vec![e.clone()]),
        };
        let sink = Arc::new(IopubSink(ctx.iopub.clone()));
        match engine.execute(code, sink) {
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

    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completion {
        let (matches, cursor_start, cursor_end) = match self.engine(false) {
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
        let (plain, html) = self.engine(false).ok()?.inspect(code, cursor_pos)?;
        let mut bundle = MimeBundle::new();
        bundle.insert("text/plain".into(), plain.into());
        if !html.is_empty() {
            bundle.insert("text/html".into(), html.into());
        }
        Some(bundle)
    }

    /// Once the engine runs and the kernel first has nothing to do, warm rust-analyzer up.
    fn idle(&mut self) {
        if self.analyzer_warm {
            return;
        }
        if let Ok(engine) = self.engine(false) {
            engine.warm_up_analyzer();
            self.analyzer_warm = true;
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
}
