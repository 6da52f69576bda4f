//! The Jupyter side of the qplay kernel: messaging protocol 5.3 over ZeroMQ.
//!
//! - [`connection`]: the connection file (ports, key, signature scheme);
//! - [`wire`]: framing, HMAC-SHA256 signing and verification;
//! - [`iopub`]: the [`Iopub`] publisher handle;
//! - [`backend`]: the [`Backend`] and [`Interrupter`] traits an engine implements;
//! - [`server`]: [`serve`], the sockets and the control loop;
//! - `shell`: the backend thread, shell requests handed to the backend by a table of handlers.

pub mod backend;
pub mod connection;
pub mod history;
pub mod iopub;
pub mod server;
mod shared;
mod shell;
pub mod wire;

pub use backend::{
    rustc_version, Backend, CommContext, Completion, ExecuteContext, ExecuteOutcome, Interrupter,
    IsComplete, KernelInfo,
};
pub use iopub::{CapturedIopub, Iopub, MimeBundle};
pub use server::{kernelspec, serve, serve_connection};
