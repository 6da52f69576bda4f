//! In the evcxr runtime: one output per evcxr content block.
//!
//! Crates with an evcxr feature (plotters, …) show values by printing `EVCXR_BEGIN_CONTENT
//! <mime>` … `EVCXR_END_CONTENT` blocks on stdout, and may do so several times in one cell
//! (`chart.evcxr_display()` in a loop). evcxr keeps only the last block of each MIME type, for
//! the cell's result. So that each shown value becomes its own output, the runtime's stdout
//! goes through a pipe read by [`relay`]: consecutive blocks of different MIME types form one
//! value; a value followed by more output is turned into a `display()` message (a
//! `display_data` of its own), and only the value printed last, just before evcxr's
//! end-of-cell marker, is passed on as blocks, to become the cell's `execute_result`.
//!
//! The relay also sends the answers to the kernel's requests on the link
//! (`qplay::runtime::link`): what the runtime prints while it answers one — a wrapped cell's
//! text, displays and widget messages, a live view's redraw — which evcxr would not read.
//! Between the runtime's `Begin` and `Done` everything goes to the link as [`FromRuntime`]
//! messages instead — text as `Stream`, the last value before `Done` as `Result`, then `Done`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;

use qplay::runtime::protocol::{FromRuntime, MimeBundle, PREFIX};
use serde_json::Value;

use super::trim::{malloc_trim, Trimmer, QUIET};

const BEGIN: &str = "EVCXR_BEGIN_CONTENT ";
const END: &str = "EVCXR_END_CONTENT";
const COMPLETE: &str = "EVCXR_EXECUTION_COMPLETE";
/// The variable with which evcxr starts its runtime.
const RUNTIME_VAR: &str = "EVCXR_IS_RUNTIME";

/// In the runtime process, routes stdout through the relay; elsewhere does nothing. Must run
/// before `evcxr::runtime_hook`.
pub fn install_in_runtime() {
    if std::env::var_os(RUNTIME_VAR).is_none() {
        return;
    }
    let mut fds = [0; 2];
    // SAFETY: plain fd syscalls on descriptors this function owns; on any failure stdout is
    // left as it was.
    unsafe {
        let original = libc::dup(1);
        if original < 0 || libc::pipe(fds.as_mut_ptr()) != 0 {
            return;
        }
        if libc::dup2(fds[1], 1) < 0 {
            return;
        }
        libc::close(fds[1]);
        let input = File::from_raw_fd(fds[0]);
        let output = File::from_raw_fd(original);
        let trimmer = Trimmer::start(QUIET, malloc_trim);
        std::thread::spawn(move || {
            let link = qplay::runtime::link::link();
            relay(
                BufReader::new(input),
                output,
                |line| link.send_line(line),
                || trimmer.ended(),
            )
        });
    }
}

/// A value being collected: its blocks by MIME type, in order.
#[derive(Default)]
struct Shown {
    blocks: Vec<(String, String)>,
}

/// Whether `line` is the runtime's `Begin` or `Done` of an answer (short lines only: a
/// display's JSON can be large, and is never one of these).
fn marker(line: &str) -> Option<FromRuntime> {
    if line.len() > 256 || !line.starts_with(PREFIX) {
        return None;
    }
    FromRuntime::parse(line)
        .filter(|m| matches!(m, FromRuntime::Begin { .. } | FromRuntime::Done { .. }))
}

/// Where a line goes: to evcxr (stdout), or to the kernel on the link (while answering).
enum To<'a, W: Write, A: FnMut(&str)> {
    Evcxr(&'a mut W),
    Link(&'a mut A),
}

impl<W: Write, A: FnMut(&str)> To<'_, W, A> {
    fn write(&mut self, line: &str) {
        match self {
            To::Evcxr(out) => {
                let _ = out.write_all(format!("{line}\n").as_bytes());
                let _ = out.flush();
            }
            To::Link(answer) => answer(line),
        }
    }
}

/// Copies `input` to `output` line by line, rewriting content blocks as described above; while
/// the runtime answers a request, lines go to `answer` (the link) instead. `ended` is told when
/// a cell or an answer ends.
pub fn relay(
    input: impl BufRead,
    mut output: impl Write,
    mut answer: impl FnMut(&str),
    mut ended: impl FnMut(),
) {
    let mut value = Shown::default();
    let mut block: Option<(String, Vec<String>)> = None;
    let mut shown = 0u64;
    let mut in_call = false;
    for line in input.lines() {
        let Ok(line) = line else { break };
        if let Some((mime, lines)) = block.as_mut() {
            if line == END {
                let (mime, lines) = (std::mem::take(mime), std::mem::take(lines));
                value.blocks.push((mime, lines.join("\n")));
                block = None;
            } else {
                lines.push(line);
            }
            continue;
        }
        let mut out = if in_call {
            To::Link(&mut answer)
        } else {
            To::Evcxr(&mut output)
        };
        if let Some(mime) = line.strip_prefix(BEGIN) {
            let mime = mime.trim().to_string();
            if value.blocks.iter().any(|(m, _)| *m == mime) {
                shown += 1;
                out.write(&display_line(&std::mem::take(&mut value), shown));
            }
            block = Some((mime, Vec::new()));
            continue;
        }
        let marker = marker(&line);
        if !value.blocks.is_empty() {
            let v = std::mem::take(&mut value);
            if !in_call && line == COMPLETE {
                for (mime, content) in v.blocks {
                    out.write(&format!("{BEGIN}{mime}\n{content}\n{END}"));
                }
            } else if in_call && matches!(marker, Some(FromRuntime::Done { .. })) {
                out.write(&FromRuntime::Result { data: bundle(&v) }.line());
            } else {
                shown += 1;
                out.write(&display_line(&v, shown));
            }
        }
        if line == COMPLETE {
            ended();
        }
        match marker {
            Some(FromRuntime::Begin { .. }) => in_call = true,
            Some(FromRuntime::Done { .. }) if in_call => {
                out.write(&line);
                in_call = false;
                ended();
            }
            _ if in_call && !line.starts_with(PREFIX) => {
                let text = FromRuntime::Stream {
                    name: "stdout".into(),
                    text: line + "\n",
                };
                out.write(&text.line());
            }
            _ => out.write(&line),
        }
    }
}

/// A value's blocks as a MIME bundle.
fn bundle(value: &Shown) -> MimeBundle {
    let mut data = MimeBundle::new();
    for (mime, content) in &value.blocks {
        let v = if mime.ends_with("json") {
            serde_json::from_str(content).unwrap_or_else(|_| Value::String(content.clone()))
        } else {
            Value::String(content.clone())
        };
        data.insert(mime.clone(), v);
    }
    data
}

/// A `display()` message carrying a value's blocks.
fn display_line(value: &Shown, n: u64) -> String {
    FromRuntime::Display {
        data: bundle(value),
        display_id: format!("qplay-block-{}-{n}", std::process::id()),
    }
    .line()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> String {
        let mut out = Vec::new();
        relay(input.as_bytes(), &mut out, |_| {}, || {});
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_answer_goes_to_the_link_as_messages() {
        let begin = FromRuntime::Begin { seq: 7 }.line();
        let done = FromRuntime::Done {
            seq: 7,
            outcome: Default::default(),
        }
        .line();
        let display = FromRuntime::Clear { wait: true }.line();
        let input = format!(
            "before\n{begin}\nprinted\n{display}\n\
             EVCXR_BEGIN_CONTENT text/plain\n42\nEVCXR_END_CONTENT\n{done}\nafter\n\
             EVCXR_EXECUTION_COMPLETE\n"
        );
        let (mut out, mut link) = (Vec::new(), Vec::<String>::new());
        let mut ends = 0;
        relay(
            input.as_bytes(),
            &mut out,
            |line| link.push(line.to_string()),
            || ends += 1,
        );
        // The answer's end and the compiled cell's.
        assert_eq!(ends, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "before\nafter\nEVCXR_EXECUTION_COMPLETE\n"
        );
        let messages: Vec<FromRuntime> =
            link.iter().filter_map(|l| FromRuntime::parse(l)).collect();
        assert_eq!(messages.len(), link.len(), "{link:?}");
        assert_eq!(
            messages[0],
            FromRuntime::Stream {
                name: "stdout".into(),
                text: "printed\n".into()
            }
        );
        assert_eq!(messages[1], FromRuntime::Clear { wait: true });
        let FromRuntime::Result { data } = &messages[2] else {
            panic!("{messages:?}")
        };
        assert_eq!(data["text/plain"], "42");
        assert!(matches!(messages[3], FromRuntime::Done { seq: 7, .. }));
    }

    #[test]
    fn the_last_value_stays_blocks_for_the_result() {
        let input = "hello\nEVCXR_BEGIN_CONTENT text/html\n<b>x</b>\nEVCXR_END_CONTENT\n\
                     EVCXR_BEGIN_CONTENT text/plain\nx\nEVCXR_END_CONTENT\nEVCXR_EXECUTION_COMPLETE\n";
        assert_eq!(
            run(input),
            "hello\nEVCXR_BEGIN_CONTENT text/html\n<b>x</b>\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT text/plain\nx\nEVCXR_END_CONTENT\nEVCXR_EXECUTION_COMPLETE\n"
        );
    }

    #[test]
    fn earlier_values_become_displays_each() {
        let input = "EVCXR_BEGIN_CONTENT image/svg+xml\n<svg>1</svg>\nEVCXR_END_CONTENT\n\
                     EVCXR_BEGIN_CONTENT image/svg+xml\n<svg>2</svg>\nEVCXR_END_CONTENT\n\
                     between\n\
                     EVCXR_BEGIN_CONTENT image/svg+xml\n<svg>3</svg>\nEVCXR_END_CONTENT\n\
                     EVCXR_EXECUTION_COMPLETE\n";
        let out = run(input);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with(PREFIX) && lines[0].contains("<svg>1</svg>"));
        assert!(lines[1].starts_with(PREFIX) && lines[1].contains("<svg>2</svg>"));
        assert_eq!(lines[2], "between");
        assert_eq!(
            &lines[3..],
            [
                "EVCXR_BEGIN_CONTENT image/svg+xml",
                "<svg>3</svg>",
                "EVCXR_END_CONTENT",
                "EVCXR_EXECUTION_COMPLETE"
            ]
        );
        let Some(FromRuntime::Display { data, .. }) = FromRuntime::parse(lines[0]) else {
            panic!("{}", lines[0])
        };
        assert_eq!(data["image/svg+xml"], "<svg>1</svg>");
    }
}
