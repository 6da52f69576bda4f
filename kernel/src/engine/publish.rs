//! The publishers: threads that read the runtime's stdout and stderr (as evcxr passes them on)
//! line by line while a compiled cell runs, and turn each line into an output of the cell, or
//! hand a runtime message ([`qplay::runtime::protocol::FromRuntime`]: a display, a widget
//! message) to the link, which routes it; and notice panics on stderr.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use qplay::runtime::protocol::FromRuntime;

use crate::link::RuntimeLink;
use crate::output::OutputSink;

/// The running cell's outputs, while one runs.
pub type Sink = Arc<Mutex<Option<Arc<dyn OutputSink>>>>;

/// libtorch prints this deprecation notice (through its own logger, which ignores
/// TORCH_CPP_LOG_LEVEL when not started from Python) the first time a quantized model runs;
/// users can do nothing about it, so it is not shown.
fn is_noise(line: &str) -> bool {
    line.contains("Quantizer.cpp") && line.contains("are deprecated")
}

/// Panics the runtime reported on stderr since the last reset, with the first one's message.
#[derive(Default)]
pub struct Panics {
    happened: AtomicBool,
    /// The first panic's message; `collecting` while its lines are still coming.
    message: Mutex<(String, bool)>,
}

impl Panics {
    pub fn reset(&self) {
        self.happened.store(false, Ordering::SeqCst);
        *self.message.lock().unwrap_or_else(|e| e.into_inner()) = (String::new(), false);
    }

    /// Looks at one stderr line: Rust prints `thread '…' panicked at FILE:LINE:COL:`, then the
    /// message (one or more lines), then a `note:` about backtraces.
    pub fn see(&self, line: &str) {
        let mut m = self.message.lock().unwrap_or_else(|e| e.into_inner());
        if is_panic_line(line) {
            if !self.happened.swap(true, Ordering::SeqCst) {
                *m = (String::new(), true);
            }
        } else if m.1 {
            if line.starts_with("note:") || line.starts_with("stack backtrace") {
                m.1 = false;
            } else {
                if !m.0.is_empty() {
                    m.0.push(' ');
                }
                m.0.push_str(line.trim());
            }
        }
    }

    pub fn happened(&self) -> bool {
        self.happened.load(Ordering::SeqCst)
    }

    pub fn message(&self) -> String {
        self.message
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

/// The first line of Rust's panic message on stderr: `thread 'main' (…) panicked at …`.
fn is_panic_line(line: &str) -> bool {
    line.starts_with("thread '") && line.contains("panicked at")
}

/// Publishes one line of the runtime's `name` stream: a message goes to the link, which
/// routes it, other text to the running cell's outputs (or the kernel's log between cells).
pub fn publish_line(sink: Option<&dyn OutputSink>, name: &str, line: String, link: &RuntimeLink) {
    match FromRuntime::parse(&line) {
        Some(message) => link.deliver(message, sink),
        None if is_noise(&line) => {}
        None => match sink {
            Some(sink) => sink.stream(name, &(line + "\n")),
            None => eprintln!("[runtime {name}] {line}"),
        },
    }
}

/// Publishes lines as they come. The receiver's lock is held only while waiting a few
/// milliseconds for a line and while publishing it, and not taken again while `flushing` is
/// set, so that [`Engine::flush`] gets it at once.
pub fn publish_loop(
    rx: &Mutex<Receiver<String>>,
    sink: &Sink,
    name: &str,
    flushing: &AtomicBool,
    link: &RuntimeLink,
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
                publish_line(sink.as_deref(), name, line, link);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
