//! The kernel's two channels to the evcxr runtime, besides the stdout and stderr evcxr reads:
//!
//! - [`socket`]: a Unix socket that carries [`qplay::runtime::protocol::ToRuntime`] requests
//!   (widget changes from the browser, closed widgets, calls of wrapped cells) out and each
//!   request's answers back, in order, ending with its `Done`;
//! - [`flag`]: one word of shared memory, raised to stop the running cell.
//!
//! Both live in the kernel's build slot, which no other live kernel uses.

pub mod flag;
pub mod socket;

pub use socket::{RuntimeLink, WidgetMessages};
