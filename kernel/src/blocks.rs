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

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;

use serde_json::{json, Map, Value};

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
        std::thread::spawn(move || relay(BufReader::new(input), output));
    }
}

/// A value being collected: its blocks by MIME type, in order.
#[derive(Default)]
struct Shown {
    blocks: Vec<(String, String)>,
}

/// Copies `input` to `output` line by line, rewriting content blocks as described above.
pub fn relay(input: impl BufRead, mut output: impl Write) {
    let mut value = Shown::default();
    let mut block: Option<(String, Vec<String>)> = None;
    let mut shown = 0u64;
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
        if let Some(mime) = line.strip_prefix(BEGIN) {
            let mime = mime.trim().to_string();
            if value.blocks.iter().any(|(m, _)| *m == mime) {
                shown += 1;
                write(
                    &mut output,
                    &display_line(&std::mem::take(&mut value), shown),
                );
            }
            block = Some((mime, Vec::new()));
            continue;
        }
        if !value.blocks.is_empty() {
            let v = std::mem::take(&mut value);
            if line == COMPLETE {
                for (mime, content) in v.blocks {
                    write(&mut output, &format!("{BEGIN}{mime}\n{content}\n{END}"));
                }
            } else {
                shown += 1;
                write(&mut output, &display_line(&v, shown));
            }
        }
        write(&mut output, &line);
    }
}

fn write(out: &mut dyn Write, line: &str) {
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// A `display()` message carrying a value's blocks.
fn display_line(value: &Shown, n: u64) -> String {
    let mut data = Map::new();
    for (mime, content) in &value.blocks {
        let v = if mime.ends_with("json") {
            serde_json::from_str(content).unwrap_or_else(|_| Value::String(content.clone()))
        } else {
            Value::String(content.clone())
        };
        data.insert(mime.clone(), v);
    }
    let id = format!("qplay-block-{}-{n}", std::process::id());
    qplay::display::message_line(&json!({"kind": "display", "data": data, "display_id": id}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> String {
        let mut out = Vec::new();
        relay(input.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
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
        assert!(lines[0].starts_with("QPLAY_DISPLAY ") && lines[0].contains("<svg>1</svg>"));
        assert!(lines[1].starts_with("QPLAY_DISPLAY ") && lines[1].contains("<svg>2</svg>"));
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
        let message: Value =
            serde_json::from_str(lines[0].strip_prefix("QPLAY_DISPLAY ").unwrap()).unwrap();
        assert_eq!(message["kind"], "display");
        assert_eq!(message["data"]["image/svg+xml"], "<svg>1</svg>");
    }
}
