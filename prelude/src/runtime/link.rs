//! The runtime's end of the link: one Unix socket (its path in [`LINK_ENV`], the kernel's end
//! is the kernel's `link` module) that carries the kernel's requests in and every answer out.
//!
//! - A reader thread takes the kernel's [`ToRuntime`] lines. `opened` (the state a new widget
//!   starts from) goes straight to the widget that waits for it; `update` (the browser's
//!   changes: live views redraw), `close` and `run` (call a wrapped cell, see
//!   [`super::wrapped`]) go to the executor thread, one at a time, between evcxr's cells.
//! - The executor answers each of those with the function given at connection (the widgets'
//!   `answer`, which knows what each request means): it prints `Begin`, does it, and prints
//!   `Done` — on
//!   stdout, like everything the work itself prints. The runtime's stdout relay (in the `qplay`
//!   executable) sends what is printed between the two to the kernel on this link, as
//!   [`FromRuntime`] messages, in order; meanwhile the executor captures stderr (a pipe in
//!   place of fd 2) and sends it too, before `Done`. So a request gets one stream of answers
//!   back, ending with its `Done`.
//! - Compiled cells keep evcxr's stdout: their displays and widget messages are printed there,
//!   in order with their text, and the kernel's engine reads them.
//!
//! Without [`LINK_ENV`] (qplay used as a plain library) nothing connects, and widgets are
//! ordinary values that print nothing. The link lives in a process slot, so every cell's copy
//! of this crate and the executable's relay share it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::protocol::{FromRuntime, Outcome, State, ToRuntime};
use crate::display::emit;

/// Environment variable naming the kernel's Unix socket.
pub const LINK_ENV: &str = "QPLAY_LINK";

/// How long the executor waits for its captured stderr to reach the kernel before `Done`.
const STDERR_WAIT: Duration = Duration::from_secs(2);

/// Ends a request's captured stderr (never printed by anything else: it starts with a NUL).
const STDERR_END: &[u8] = b"\0qplay-stderr-end\n";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime's end of the link.
#[derive(Default)]
pub struct Link {
    /// Whether the socket was looked for; the connection's writing end once connected.
    connection: Mutex<(bool, Option<UnixStream>)>,
    /// New widgets waiting for the kernel's `opened`, by model id.
    waiters: Mutex<HashMap<String, mpsc::Sender<State>>>,
    /// Requests for the executor.
    executor: Mutex<Option<mpsc::Sender<ToRuntime>>>,
}

/// The process's link.
pub fn link() -> &'static Link {
    super::process::shared(super::process::Slot::Link, Link::default)
}

/// What the executor does for a request (`update`, `close`, `run`), and how it ended.
pub type Answer = fn(ToRuntime) -> Outcome;

impl Link {
    /// Whether a kernel listens; connects on first use, with `answer` for its requests.
    pub fn connected(&self, answer: Answer) -> bool {
        let mut connection = lock(&self.connection);
        if !connection.0 {
            connection.0 = true;
            connection.1 = self.connect(answer);
        }
        connection.1.is_some()
    }

    /// Connects to the kernel's socket and starts the reader and the executor.
    fn connect(&self, answer: Answer) -> Option<UnixStream> {
        let path = std::env::var_os(LINK_ENV)?;
        let stream = match UnixStream::connect(&path) {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!(
                    "qplay: widgets will not reach the kernel ({}: {e})",
                    std::path::Path::new(&path).display()
                );
                return None;
            }
        };
        let reader = stream.try_clone().ok()?;
        let capture = Capture::new();
        let (tx, rx) = mpsc::channel();
        *lock(&self.executor) = Some(tx);
        std::thread::Builder::new()
            .name("qplay-link".into())
            .spawn(move || read_requests(reader))
            .ok()?;
        std::thread::Builder::new()
            .name("qplay-cells".into())
            .spawn(move || execute(rx, answer, capture))
            .ok()?;
        Some(stream)
    }

    /// Sends one line (a [`FromRuntime`] message) to the kernel. The runtime's stdout relay
    /// sends a request's answers with it.
    pub fn send_line(&self, line: &str) {
        let mut connection = lock(&self.connection);
        if let Some(stream) = connection.1.as_mut() {
            let mut bytes = Vec::with_capacity(line.len() + 1);
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            if stream.write_all(&bytes).is_err() {
                // The kernel has gone: nothing reads the answers any more.
                connection.1 = None;
            }
        }
    }

    /// Announces a widget model with `open` (a `CommOpen` message, printed by `emit`) and, with
    /// `wait`, returns the state the kernel answers with (up to `timeout`).
    pub(crate) fn open(
        &self,
        id: &str,
        wait: bool,
        timeout: Duration,
        open: impl FnOnce(),
    ) -> Option<State> {
        let answer = wait.then(|| {
            let (tx, rx) = mpsc::channel();
            lock(&self.waiters).insert(id.to_string(), tx);
            rx
        });
        open();
        let state = answer.and_then(|rx| rx.recv_timeout(timeout).ok());
        lock(&self.waiters).remove(id);
        state
    }
}

/// Takes the kernel's requests until the socket closes.
fn read_requests(stream: UnixStream) {
    let link = link();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Some(request) = ToRuntime::parse(&line) else {
            eprintln!("qplay: ignoring a malformed request from the kernel");
            continue;
        };
        if let ToRuntime::Opened { comm_id, state } = request {
            if let Some(tx) = lock(&link.waiters).remove(&comm_id) {
                let _ = tx.send(state);
            }
            continue;
        }
        let seq = request.seq();
        let sent = lock(&link.executor)
            .as_ref()
            .is_some_and(|tx| tx.send(request).is_ok());
        if !sent {
            link.send_line(
                &FromRuntime::Done {
                    seq,
                    outcome: Outcome::Unknown,
                }
                .line(),
            );
        }
    }
}

/// Answers requests one at a time: `Begin`, the work with stderr captured (when the pipe could
/// be made), `Done`.
fn execute(requests: mpsc::Receiver<ToRuntime>, answer: Answer, mut capture: Option<Capture>) {
    for request in requests {
        let seq = request.seq();
        emit(&FromRuntime::Begin { seq });
        let saved = capture.as_ref().map(Capture::begin);
        let outcome = answer(request);
        let _ = std::io::stdout().flush();
        if let (Some(capture), Some(saved)) = (capture.as_mut(), saved) {
            capture.end(saved);
        }
        emit(&FromRuntime::Done { seq, outcome });
    }
}

/// The pipe that takes stderr's place while a request is answered, and the thread that sends
/// what comes through it to the kernel.
struct Capture {
    /// The pipe's writing end (fd 2 points to it during a request).
    input: std::fs::File,
    /// How many requests' stderr was captured, and how many of those the sending thread has
    /// passed the end of.
    ended: u64,
    sent: Arc<(Mutex<u64>, Condvar)>,
}

impl Capture {
    fn new() -> Option<Capture> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills two new descriptors, owned below.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: both descriptors are new and owned by nothing else.
        let (output, input) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let sent: Arc<(Mutex<u64>, Condvar)> = Arc::default();
        let counted = sent.clone();
        std::thread::Builder::new()
            .name("qplay-stderr".into())
            .spawn(move || send_captured(std::fs::File::from(output), &counted))
            .ok()?;
        Some(Capture {
            input: std::fs::File::from(input),
            ended: 0,
            sent,
        })
    }

    /// Points fd 2 at the pipe; returns a copy of the real stderr.
    fn begin(&self) -> Option<OwnedFd> {
        let _ = std::io::stderr().flush();
        // SAFETY: dup and dup2 on descriptors this process owns; on failure fd 2 stays.
        unsafe {
            let saved = libc::dup(2);
            if saved < 0 {
                return None;
            }
            if libc::dup2(self.input.as_raw_fd(), 2) < 0 {
                libc::close(saved);
                return None;
            }
            Some(OwnedFd::from_raw_fd(saved))
        }
    }

    /// Puts the real stderr back, marks the end of what this request wrote, and waits until
    /// all of it has been sent to the kernel.
    fn end(&mut self, saved: Option<OwnedFd>) {
        if let Some(saved) = saved {
            // SAFETY: dup2 onto fd 2 of a descriptor we own.
            unsafe { libc::dup2(saved.as_raw_fd(), 2) };
        }
        let _ = (&self.input).write_all(STDERR_END);
        self.ended += 1;
        let (sent, cv) = &*self.sent;
        let _ = cv.wait_timeout_while(lock(sent), STDERR_WAIT, |s| *s < self.ended);
    }
}

/// Sends each captured stderr line to the kernel; counts (in `sent`) the requests whose end it
/// has passed.
fn send_captured(pipe: std::fs::File, sent: &(Mutex<u64>, Condvar)) {
    let link = link();
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let end = line.ends_with(STDERR_END);
        let text = if end {
            &line[..line.len() - STDERR_END.len()]
        } else {
            &line[..]
        };
        if !text.is_empty() {
            let message = FromRuntime::Stream {
                name: "stderr".into(),
                text: String::from_utf8_lossy(text).into_owned(),
            };
            link.send_line(&message.line());
        }
        if end {
            let (count, cv) = sent;
            *lock(count) += 1;
            cv.notify_all();
        }
    }
}
