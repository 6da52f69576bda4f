//! `qplay kernel -f <connection_file>`: runs the Jupyter kernel — the protocol layer
//! (`qplay_kernel::jupyter`) serving the evcxr-backed [`QplayBackend`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use qplay_kernel::jupyter;

use crate::backend::QplayBackend;
use crate::interrupt::Interrupter;

/// Arguments of `qplay kernel`.
#[derive(Args)]
pub struct KernelArgs {
    /// The connection file written by the Jupyter client.
    #[arg(short = 'f', long = "connection-file")]
    connection_file: PathBuf,
}

/// Serves the kernel until a shutdown request.
pub fn run(args: KernelArgs) -> Result<()> {
    let slot = crate::slots::acquire()?;
    let interrupter = Interrupter::new(&slot.dir)?;
    let backend = QplayBackend::start(interrupter.clone(), &slot.dir)?;
    jupyter::serve(&args.connection_file, backend, move || {
        interrupter.interrupt()
    })
}
