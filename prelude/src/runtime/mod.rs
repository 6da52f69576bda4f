//! The plumbing between the kernel and the evcxr runtime, apart from the library's domain:
//! what the cells of a notebook share in one process, and how the runtime talks to its kernel.
//!
//! - [`protocol`]: the messages both ways, defined once for the kernel and the runtime;
//! - [`link`]: the runtime's end of the link, the Unix socket that carries the kernel's
//!   requests in and the answers out;
//! - [`wrapped`]: cells compiled once into functions that the kernel calls again on the link;
//! - [`interrupt`]: the flag the kernel raises to stop a running cell;
//! - [`process`]: state shared by every copy of this crate in the runtime process.

pub mod interrupt;
pub mod link;
pub mod process;
pub mod protocol;
pub mod wrapped;
