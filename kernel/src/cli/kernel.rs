//! `qplay kernel -f <connection_file>`: runs the Jupyter kernel — the protocol layer
//! (`qplay_kernel::jupyter`) serving a [`Session`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use qplay_kernel::jupyter;

use crate::engine::slots;
use crate::session::Session;

/// Arguments of `qplay kernel`.
#[derive(Args)]
pub struct KernelArgs {
    /// The connection file written by the Jupyter client.
    #[arg(short = 'f', long = "connection-file")]
    connection_file: PathBuf,
}

/// Serves the kernel until a shutdown request.
pub fn run(args: KernelArgs) -> Result<()> {
    let slot = slots::acquire()?;
    let session = Session::start(&slot.dir)?;
    let stopper = session.stopper();
    jupyter::serve(&args.connection_file, session, move || stopper.interrupt())
}
