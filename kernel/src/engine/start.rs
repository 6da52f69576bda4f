//! An engine starting on a thread of its own: the kernel already answers `kernel_info` and
//! heartbeats meanwhile, so a slow first start (a cold build directory) never looks like a dead
//! kernel; whatever needs the engine waits for it.

use std::sync::mpsc::{Receiver, TryRecvError};

use super::Engine;

/// The engine once started, or why it did not start.
pub struct Starting {
    engine: Option<Engine>,
    pending: Option<Receiver<anyhow::Result<Engine>>>,
    /// Why the engine failed to start, kept for every later request.
    error: Option<String>,
}

impl Starting {
    /// Starts `start` on a new thread.
    pub fn spawn(start: impl FnOnce() -> anyhow::Result<Engine> + Send + 'static) -> Starting {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(start());
        });
        Starting {
            engine: None,
            pending: Some(rx),
            error: None,
        }
    }

    /// The engine, waiting for it to start if needed (`block`); else why there is none.
    pub fn get(&mut self, block: bool) -> Result<&mut Engine, String> {
        if let Some(rx) = &self.pending {
            let started = if block {
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                rx.try_recv()
            };
            match started {
                Ok(Ok(engine)) => {
                    self.engine = Some(engine);
                    self.pending = None;
                }
                Ok(Err(e)) => {
                    self.pending = None;
                    self.error = Some(format!("{e:#}"));
                }
                Err(TryRecvError::Empty) => return Err("the engine is still starting".into()),
                Err(TryRecvError::Disconnected) => {
                    self.pending = None;
                    self.error = Some("the engine thread ended".into());
                }
            }
        }
        let error = &self.error;
        self.engine.as_mut().ok_or_else(|| {
            format!(
                "the engine failed to start: {}",
                error.as_deref().unwrap_or("unknown error")
            )
        })
    }

    /// The engine if it has started (never waits).
    pub fn started(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }
}
