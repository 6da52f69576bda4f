//! `qplay`: the command-line entry point. In the evcxr runtime child it is the runtime
//! ([`runtime`]); everywhere else it runs a subcommand ([`cli`]), the Jupyter kernel among them
//! ([`session`]).
//!
//! - [`cli`]: one file per subcommand;
//! - [`session`]: the kernel's `Backend` for the protocol layer (`qplay_kernel::jupyter`), a thin
//!   adapter over the parts below;
//! - [`engine`]: the evcxr driver — cells, build slots, interrupts;
//! - [`output`]: where a cell's outputs go, and how a cell fails (shared by the parts);
//! - [`link`]: the kernel's two channels to the runtime (the socket, the interrupt flag);
//! - [`reactive`]: the dataflow graph, wrapped cells and the rerun scheduler;
//! - [`widgets`]: the kernel's record of widget models and the comm protocols;
//! - [`runtime`]: what runs in the evcxr child.

mod cli;
mod engine;
mod link;
mod output;
mod reactive;
mod runtime;
mod session;
mod widgets;

use std::process::ExitCode;

fn main() -> ExitCode {
    runtime::enter();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        // Errors with their causes on one line, without a backtrace: these are user errors.
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
