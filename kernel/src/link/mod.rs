//! The kernel's two channels to the evcxr runtime, besides the stdout and stderr evcxr reads:
//!
//! - [`socket`]: a Unix socket that carries [`qplay::protocol::ToRuntime`] requests (widget
//!   changes from the browser, calls of wrapped cells); the runtime answers on its stdout and
//!   stderr, in order with the rest of its output;
//! - [`flag`]: one word of shared memory, raised to stop the running cell.
//!
//! Both live in the kernel's build slot, which no other live kernel uses.

pub mod flag;
pub mod socket;

pub use socket::RuntimeLink;
