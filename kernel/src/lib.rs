//! Library part of the `qplay` binary, shared with its integration tests: the Jupyter kernel
//! protocol layer.

pub mod jupyter;
